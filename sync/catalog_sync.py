"""Pulling Zuora's catalog into the mirror: read every page first, then apply in one transaction, so a
page that fails half-way leaves the previous mirror intact."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db.models import Count, Q
from django.utils import timezone

from catalog.mirror import CatalogError, apply_catalog
from catalog.models import CatalogSyncRun
from sync.clients.errors import ApiError
from sync.clients.zuora import ZuoraClient
from sync.models import SyncRecord

log = logging.getLogger("zkbridge.catalog")


def sync_catalog(page_size: int = 40, progress: Callable[[int, int], None] | None = None) -> CatalogSyncRun:
    run = CatalogSyncRun.objects.create()
    products: list[dict] = []
    try:
        for page in ZuoraClient.from_settings().catalog_pages(page_size=page_size):
            products.extend(page)
            run.pages += 1
            if progress:
                progress(run.pages, len(products))
        run.counts = apply_catalog(products)
        run.ok = True
    except (ApiError, CatalogError) as exc:
        run.error = str(exc)
        log.error("catalog sync failed on page %s: %s", run.pages + 1, exc)
    run.finished_at = timezone.now()
    run.save()
    return run


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
    """django-q2 entry point for the nightly schedule."""
    run = sync_catalog()
    return "ok" if run.ok else f"failed: {run.error}"
