"""django-q2 entry points. Each is idempotent: delivery is at-least-once.

`run_sync` claims a record with a conditional UPDATE (two workers can never both win), runs its flow
and turns the outcome into a state: succeeded, retrying (transient, with backoff), failed (out of
attempts), or needs_attention (a person must act; the salesperson also gets a Kommo task).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from django.conf import settings
from django.utils import timezone

from sync import kommo_texts
from sync.clients.errors import ApiError, TransientError
from sync.context import current_record_id
from sync.kommo_tasks import close_attention_task, notify_attention
from sync.models import IllegalTransition, SyncRecord
from sync.outcomes import Ignored, NeedsAttention, Waiting
from sync.registry import BATCHES, FLOWS
from sync.workers import leases

log = logging.getLogger("zkbridge.sync")
MAX_BACKOFF = dt.timedelta(hours=1)


def backoff(attempts: int, retry_after: float | None) -> dt.timedelta:
    base = settings.ZKBRIDGE_RETRY_BASE_SECONDS * (2 ** max(attempts - 1, 0))
    return min(dt.timedelta(seconds=max(base, retry_after or 0)), MAX_BACKOFF)


def claim(record_id: int) -> SyncRecord | None:
    """Take a due record for this worker, with a lease (two workers can never both win)."""
    claimed = leases.claim(SyncRecord.objects.filter(id=record_id), 1)
    return claimed[0] if claimed else None


def run_sync(record_id: int) -> str:
    """Run one sync record's flow once; returns the resulting status."""
    record = claim(record_id)
    if record is None:
        return "not runnable"
    batching = BATCHES.get(record.kind)
    if batching is not None and batching(record, conclude):  # others of its kind were due: run together
        return record.status
    token = current_record_id.set(record.id)
    prefix = f"sync_record={record.id} key={record.key}"
    try:
        with leases.held(record):
            log.info("%s attempt %s started", prefix, record.attempts)
            run_flow(record, prefix)
    except IllegalTransition as exc:  # taken over meanwhile (this worker was thought dead): the new run decides
        log.warning("%s outcome not recorded: %s", prefix, exc)
    finally:
        current_record_id.reset(token)
    return record.status


def conclude(record: SyncRecord, body: Callable[[SyncRecord], None]) -> None:
    """Record the outcome of a record run in a burst (`body` raises what its flow raised)."""
    prefix = f"sync_record={record.id} key={record.key}"
    try:
        run_flow(record, prefix, body)
    except IllegalTransition as exc:  # taken over meanwhile (this worker was thought dead): the new run decides
        log.warning("%s outcome not recorded: %s", prefix, exc)


def run_flow(record: SyncRecord, prefix: str, body: Callable[[SyncRecord], None] | None = None) -> None:
    """Run the record's flow (or `body`) and record its outcome as a transition of the state machine."""
    try:
        (body or FLOWS[record.kind])(record)
    except Ignored as exc:
        record.finish(SyncRecord.Status.IGNORED, str(exc))
    except Waiting as exc:
        log.info("%s %s", prefix, exc.reason)
        record.wait(exc.reason, timezone.now() + exc.delay)
    except NeedsAttention as exc:
        log.warning("%s needs attention: %s", prefix, exc.reason)
        record.finish(SyncRecord.Status.NEEDS_ATTENTION, exc.reason)
        notify_attention(record, exc)
    except TransientError as exc:
        if record.attempts >= settings.ZKBRIDGE_MAX_ATTEMPTS:
            log.error("%s failed after %s attempts: %s", prefix, record.attempts, exc)
            record.finish(SyncRecord.Status.FAILED, f"gave up after {record.attempts} attempts: {exc}")
        else:
            at = timezone.now() + backoff(record.attempts, exc.retry_after)
            log.warning("%s will retry at %s: %s", prefix, at.isoformat(), exc)
            record.retry_later(f"retrying ({record.attempts}/{settings.ZKBRIDGE_MAX_ATTEMPTS}): {exc}", at)
    except ApiError as exc:  # auth, not found or a refusal the flow did not translate: a person must look
        log.error("%s needs attention after an API error: %s", prefix, exc)
        record.finish(SyncRecord.Status.NEEDS_ATTENTION, f"{exc.provider or 'API'} error: {exc}")
    except Exception as exc:  # a bug: keep the record visible rather than lose it
        log.exception("%s crashed", prefix)
        record.finish(SyncRecord.Status.FAILED, f"internal error: {exc!r}")
    else:
        record.finish(SyncRecord.Status.SUCCEEDED)
        log.info("%s succeeded", prefix)
        cause_gone(record)


def cause_gone(record: SyncRecord) -> None:
    """A record that succeeded: its Kommo task is completed, and reconciliation rows whose fix queued it
    are fixed now (not when the fix was only queued)."""
    from sync.reconcile.models import Discrepancy

    Discrepancy.objects.filter(sync_record=record, fixed_at__isnull=True, fix_requested_at__isnull=False).update(
        fixed_at=timezone.now()
    )
    close_attention_task(record)
    if record.kind in SyncRecord.LIFECYCLE:
        supersede(record)


def supersede(record: SyncRecord) -> None:
    """A later change of the same kind went through (it re-read the deal): earlier ones that needed
    attention are resolved by it, and their Kommo tasks completed, rather than left open forever."""
    if record.kind == SyncRecord.Kind.PLAN_MIGRATION or not record.zuora_subscription_number:
        return  # each migration is its own subscription's move; nothing earlier is covered by it
    stale = SyncRecord.objects.filter(
        zuora_subscription_number=record.zuora_subscription_number,
        kind=record.kind,
        id__lt=record.id,
        status__in=(SyncRecord.Status.NEEDS_ATTENTION, SyncRecord.Status.FAILED),
    )
    ids = list(stale.values_list("id", flat=True))
    reason = f"superseded by {record.key}, which applied the deal's current state"
    SyncRecord.objects.filter(id__in=ids).transition("resolve", finished_at=timezone.now(), reason=reason)
    for old in SyncRecord.objects.filter(id__in=ids, status=SyncRecord.Status.RESOLVED):
        later = record.get_kind_display().lower()
        close_attention_task(old, kommo_texts.result(f"resolved: a later {later} applied the deal's current state"))


FINAL = (SyncRecord.Status.SUCCEEDED, SyncRecord.Status.RESOLVED, SyncRecord.Status.CANCELLED)


def close_task_of(record_id: int) -> bool:
    """Enqueued when staff resolve or cancel a record: the worker, not the web request, talks to Kommo."""
    record = SyncRecord.objects.filter(id=record_id, status__in=FINAL).first()
    return close_attention_task(record) if record else True


def close_stale_tasks(limit: int = 50) -> int:
    """Tasks still open on records that finished (Kommo was down when they did): try again."""
    candidates = SyncRecord.objects.filter(status__in=FINAL, steps__attention_task__closed=False)
    return sum(close_attention_task(record) for record in candidates.order_by("updated_at")[:limit])


def dispatch_due() -> int:
    """Scheduled every minute, the safety net under the workers' own dispatcher (sync.workers.dispatcher,
    every second): its same pass (due retries, records whose worker died, records whose enqueue was lost),
    then Kommo tasks still open on finished records and migrations' stragglers."""
    from sync.migration.flow import restore_stragglers
    from sync.workers.dispatcher import dispatch_once

    handed = dispatch_once(timezone.now())
    close_stale_tasks()
    restore_stragglers()
    return handed
