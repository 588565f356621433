"""Retention: old API call bodies, web hook payloads and usage bodies are blanked (the rows, and sync
records, stay); the workers' results of successful tasks are trimmed to the newest KEEP_TASK_RESULTS."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from sync.models import ApiCall, WebhookEvent
from sync.usage.models import UsageDelivery

# django-q2 would trim its successful-task rows itself after every task (save_limit), but it does so by
# loading and locking all of them each time: 1,000 rows read per task, which cost a burst of 1,000 won deals
# about 16 s of a worker's CPU. Q_CLUSTER keeps them all (save_limit 0) and the daily prune trims them here.
KEEP_TASK_RESULTS = 1000


def prune(days: int | None = None) -> dict[str, int]:
    """Blank API call bodies and inbox payloads older than the retention; rows and sync records stay."""
    cutoff = timezone.now() - dt.timedelta(days=days or settings.ZKBRIDGE_RETENTION_DAYS)
    calls = (
        ApiCall.objects.filter(at__lt=cutoff)
        .filter(~Q(request_body="") | ~Q(response_body=""))
        .update(request_body="", response_body="")
    )
    events = WebhookEvent.objects.filter(received_at__lt=cutoff).exclude(body="").update(body="", headers={})
    usage = UsageDelivery.objects.filter(received_at__lt=cutoff, body_gzip__isnull=False).update(body_gzip=None)
    return {
        "api_calls": calls,
        "webhook_events": events,
        "usage_bodies": usage,
        "task_results": trim_task_results(),
    }


def trim_task_results(keep: int = KEEP_TASK_RESULTS) -> int:
    """Delete the workers' successful-task rows beyond the newest `keep` (failures are kept: they are rare and
    each one is evidence)."""
    from django_q.models import Success

    newest = Success.objects.order_by("-stopped").values_list("stopped", flat=True)[keep - 1 : keep]
    if not newest:
        return 0
    deleted, _ = Success.objects.filter(stopped__lt=newest[0]).delete()
    return deleted
