"""The inbox: a web hook or callout stored exactly as it arrived, de-duplicated by a database constraint,
in a transaction of its own before anything else happens; then its outcome written on it: processed (its
records made, in the transaction that claims it), refused (why), or the error that stopped it (the sender's
retry finds it unprocessed and acts on it again)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from sync.models import WebhookEvent
from zkbridge.network import client_address

log = logging.getLogger("zkbridge.webhooks")
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
    return storable_text(body.decode("utf-8", "replace"))


def storable_text(text: str, limit: int | None = None) -> str:
    """Text from outside (or quoting it: a refusal, an exception) as a text column holds it: a NUL written as
    the two characters \\0, cut to `limit`."""
    return text.replace("\x00", "\\0")[:limit]


def store_event(
    source: str,
    request,
    dedup_key: str,
    body: bytes,
    *,
    problem: str = "",
) -> tuple[WebhookEvent, bool]:
    """Store a delivery as it arrived, before it is judged: `problem` marks one zkbridge refuses (kept,
    visible in the admin's inbox). Returns (event, created); a duplicate returns the first one (counted)."""
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
            error=storable_text(problem, 2000),  # a refusal may quote the body (a NUL in a CSV header)
        )

    try:
        with transaction.atomic():
            return create(), True
    except IntegrityError:
        WebhookEvent.objects.filter(source=source, dedup_key=dedup_key[:200]).update(duplicates=F("duplicates") + 1)
        return WebhookEvent.objects.get(source=source, dedup_key=dedup_key[:200]), False


def claim_event(event: WebhookEvent) -> bool:
    """Inside the transaction that acts on a delivery: mark it processed, unless another request already did
    (the conditional UPDATE waits for a concurrent one to commit; False: leave it to that one)."""
    claimed = WebhookEvent.objects.filter(pk=event.pk, processed_at__isnull=True).update(
        processed_at=timezone.now(), error=""
    )
    return bool(claimed)


def refuse(event: WebhookEvent, problem: str) -> None:
    """A stored delivery zkbridge will not act on, and why (kept, visible in the admin's inbox)."""
    WebhookEvent.objects.filter(pk=event.pk, processed_at__isnull=True).update(
        valid=False, error=storable_text(problem, 2000)
    )


@contextlib.contextmanager
def outcome_written(event: WebhookEvent) -> Iterator[None]:
    """Acting on a stored delivery: an exception that stops it is written on the delivery (which stays
    unprocessed, so the sender's retry acts on it again), then raised."""
    try:
        yield
    except Exception as exc:
        text = storable_text(f"not processed: {type(exc).__name__}: {exc}", 2000)
        WebhookEvent.objects.filter(pk=event.pk, processed_at__isnull=True).update(error=text)
        log.exception("web hook delivery %s not processed", event.pk)
        raise
