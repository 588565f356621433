"""Retention: old API call bodies and web hook payloads are blanked (the rows, and sync records, stay)."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from sync.models import ApiCall, WebhookEvent


def prune(days: int | None = None) -> dict[str, int]:
    """Blank API call bodies and inbox payloads older than the retention; rows and sync records stay."""
    cutoff = timezone.now() - dt.timedelta(days=days or settings.ZKBRIDGE_RETENTION_DAYS)
    calls = (
        ApiCall.objects.filter(at__lt=cutoff)
        .filter(~Q(request_body="") | ~Q(response_body=""))
        .update(request_body="", response_body="")
    )
    events = WebhookEvent.objects.filter(received_at__lt=cutoff).exclude(body="").update(body="", headers={})
    return {"api_calls": calls, "webhook_events": events}
