"""The inbox: a web hook or callout stored exactly as it arrived, de-duplicated by a database constraint,
before anything else happens."""

from __future__ import annotations

import hashlib

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from sync.models import WebhookEvent
from zkbridge.network import client_address

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


def storable(body: bytes) -> str:
    """The body as text a database column holds whatever arrived: undecodable bytes become U+FFFD and a
    NUL is written as the two characters \\0 (PostgreSQL refuses NUL in text)."""
    return body.decode("utf-8", "replace").replace("\x00", "\\0")


def store_event(
    source: str,
    request,
    dedup_key: str,
    body: bytes,
    *,
    problem: str = "",
    processed: bool = False,
    savepoint: bool = True,
) -> tuple[WebhookEvent, bool]:
    """Store a delivery as it arrived, before it is judged: `problem` marks one zkbridge refuses (kept,
    visible in the admin's inbox). Returns (event, created); a duplicate returns the first one. `processed`:
    the caller acts on it in the same transaction (stamped now, no second write). `savepoint=False`: the
    caller redoes its whole transaction on IntegrityError (see ensure_record)."""
    headers = {
        h: storable(request.headers[h][:500].encode("latin-1", "replace")) for h in KEPT_HEADERS if h in request.headers
    }

    def create() -> WebhookEvent:
        return WebhookEvent.objects.create(
            source=source,
            dedup_key=dedup_key[:200],
            body=storable(body),
            headers=headers,
            remote_addr=client_address(request) or None,
            valid=not problem,
            error=problem.replace("\x00", "\\0")[:2000],  # a refusal may quote the body (a NUL in a CSV header)
            processed_at=timezone.now() if processed else None,
        )

    if not savepoint:
        return create(), True
    try:
        with transaction.atomic():
            return create(), True
    except IntegrityError:
        WebhookEvent.objects.filter(source=source, dedup_key=dedup_key[:200]).update(duplicates=F("duplicates") + 1)
        return WebhookEvent.objects.get(source=source, dedup_key=dedup_key[:200]), False
