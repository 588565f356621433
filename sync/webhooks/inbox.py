"""The inbox: a web hook or callout stored exactly as it arrived, de-duplicated by a database constraint,
before anything else happens."""

from __future__ import annotations

import hashlib

from django.db import IntegrityError, transaction
from django.db.models import F

from sync.models import WebhookEvent

KEPT_HEADERS = (
    "Content-Type",
    "User-Agent",
    "Content-Length",
    "Zuora-Notification-Id",
    "Zuora-Request-Id",
    "X-Forwarded-For",
)


def body_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def store_event(source: str, request, dedup_key: str, body: bytes) -> tuple[WebhookEvent, bool]:
    """Store a delivery as it arrived. Returns (event, created); a duplicate returns the first one."""
    headers = {h: request.headers[h][:500] for h in KEPT_HEADERS if h in request.headers}
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                source=source,
                dedup_key=dedup_key[:200],
                body=body.decode("utf-8", "replace"),
                headers=headers,
                remote_addr=request.META.get("REMOTE_ADDR") or None,
            )
            return event, True
    except IntegrityError:
        WebhookEvent.objects.filter(source=source, dedup_key=dedup_key[:200]).update(duplicates=F("duplicates") + 1)
        return WebhookEvent.objects.get(source=source, dedup_key=dedup_key[:200]), False
