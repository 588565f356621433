"""Pulling Zuora's catalog into the mirror: read every page first, then apply in one transaction, so a
page that fails half-way leaves the previous mirror intact."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.utils import timezone

from catalog.mirror import CatalogError, apply_catalog
from catalog.models import SyncRun
from sync.clients.errors import ApiError
from sync.clients.zuora import ZuoraClient

log = logging.getLogger("zkbridge.catalog")


def sync_catalog(page_size: int = 40, progress: Callable[[int, int], None] | None = None) -> SyncRun:
    run = SyncRun.objects.create()
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


def scheduled_sync() -> str:
    """django-q2 entry point for the nightly schedule."""
    run = sync_catalog()
    return "ok" if run.ok else f"failed: {run.error}"
