"""GET /healthz: for load balancers and monitors."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from sync.models import SyncRecord, WebhookEvent

log = logging.getLogger("zkbridge.ops")


def healthz(request: HttpRequest) -> JsonResponse:
    """Database reachability, queue depth and age, last webhook and last successful sync."""
    from sync.ops.dashboard import queue_state

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # any driver error means: not healthy (its text names hosts and users: logged, not shown)
        log.exception("healthz: the database does not answer")
        return JsonResponse({"database": "error"}, status=503)
    last_ok = SyncRecord.objects.filter(status=SyncRecord.Status.SUCCEEDED).order_by("-finished_at").first()
    last_hook = WebhookEvent.objects.filter(source="kommo").order_by("-received_at").first()
    last_callout = WebhookEvent.objects.filter(source="zuora").order_by("-received_at").first()
    queue = queue_state()
    return JsonResponse(
        {
            "database": "ok",
            "queue": {"queued": queue["depth"], "oldest_waiting_seconds": queue["oldest_age_seconds"]},
            "last_successful_sync": last_ok.finished_at.isoformat() if last_ok and last_ok.finished_at else None,
            "last_kommo_webhook": last_hook.received_at.isoformat() if last_hook else None,
            "last_zuora_callout": last_callout.received_at.isoformat() if last_callout else None,
            "needs_attention": SyncRecord.objects.filter(status=SyncRecord.Status.NEEDS_ATTENTION).count(),
            "sandbox": settings.ZKBRIDGE_SANDBOX,
            **({"instance": settings.ZKBRIDGE_INSTANCE} if settings.ZKBRIDGE_INSTANCE else {}),
        }
    )
