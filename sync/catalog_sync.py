"""Pulling Zuora's catalog into the mirror: read every page first, then apply in one transaction, so a
page that fails half-way leaves the previous mirror intact."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from catalog.mirror import CatalogError, apply_catalog
from catalog.models import CatalogSyncRun, ZuoraEntity
from sync.clients.errors import ApiError, AuthError, BusinessError, NotFoundError
from sync.clients.zuora import ZuoraClient
from sync.models import SyncRecord
from sync.offering.models import PlanFieldRun
from sync.offering.run import run as plan_field_run

log = logging.getLogger("zkbridge.catalog")


def sync_catalog(
    page_size: int = 40, progress: Callable[[int, int], None] | None = None, entity: ZuoraEntity | None = None
) -> CatalogSyncRun:
    """Mirror one entity's catalog (none: the tenant's, when no entities are listed)."""
    run = CatalogSyncRun.objects.create(entity=entity)
    products: list[dict] = []
    zuora = ZuoraClient.for_entity(entity)
    try:
        for page in zuora.catalog_pages(page_size=page_size):
            products.extend(page)
            run.pages += 1
            if progress:
                progress(run.pages, len(products))
        run.counts = apply_catalog(products, read_units(zuora), entity)
        run.ok = True
    except (ApiError, CatalogError) as exc:
        run.error = str(exc)
        where = f" ({entity})" if entity else ""
        log.error("catalog sync%s failed on page %s: %s", where, run.pages + 1, exc)
    run.finished_at = timezone.now()
    run.save()
    return run


def catalogs_to_sync() -> list[ZuoraEntity | None]:
    """Every active entity's catalog; the tenant's when no entities are listed."""
    entities: list[ZuoraEntity | None] = list(ZuoraEntity.objects.filter(active=True))
    return entities or [None]


UNITS_QUERY = "select Id, UomName, DecimalPlaces, RoundingMode, Active from UnitOfMeasure"


def read_units(zuora: ZuoraClient) -> list[dict] | None:
    """Zuora's units of measure (their decimal places convert negotiated tiers). A tenant whose API user may
    not query them keeps the units mirrored before, and ZKBRIDGE_UOM_DECIMAL_PLACES fills the gaps."""
    try:
        return list(zuora.zoql(UNITS_QUERY))
    except (BusinessError, NotFoundError, AuthError) as exc:  # refused, not failed: a transient error fails the run
        log.warning("catalog sync: units of measure not read (%s); keeping the mirrored ones", exc)
        return None


def start_in_background(requested_by: str) -> None:
    """The catalog admin's "sync now" (contributed to the catalog: it knows nothing of sync)."""
    from django_q.tasks import async_task

    async_task("sync.catalog_sync.scheduled_sync", task_name=f"catalog sync by {requested_by}")


def deals_billed() -> Count:
    """Deals billed through a ProductRatePlan or PlanMapping row: succeeded deal records (the catalog
    admin's "deals synced" and the legacy report; sync owns the join and its status words)."""
    return Count(
        "sync_records",
        filter=Q(sync_records__status=SyncRecord.Status.SUCCEEDED, sync_records__kind=SyncRecord.Kind.DEAL_WON),
        distinct=True,
    )


def scheduled_sync() -> str:
    """django-q2 entry point for the nightly schedule (and the admin's "sync now"): every entity's catalog."""
    runs = [sync_catalog(entity=entity) for entity in catalogs_to_sync()]
    failed = [f"{run.entity or 'catalog'}: {run.error}" for run in runs if not run.ok]
    offered = offer_in_kommo("after the catalog sync")
    if offered is not None and offered.error:
        failed.append(f"Kommo's plan field: {offered.error}")
    return "ok" if not failed else "failed: " + "; ".join(failed)


def offer_in_kommo(requested_by: str) -> PlanFieldRun | None:
    """After a catalog sync: Kommo's plan field and products list offer what the mirror now says is sellable today
    (None when neither is configured)."""
    if not (settings.KOMMO_PLAN_FIELD_ID or settings.KOMMO_PRODUCTS_CATALOG_ID):
        return None
    return plan_field_run(requested_by=requested_by)
