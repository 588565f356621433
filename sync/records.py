"""Sync records: one per business operation, created once whatever the concurrency, queued for the workers,
and put back in the queue at a person's request."""

from __future__ import annotations

import datetime as dt
import logging
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from sync import counters
from sync.models import SyncRecord

log = logging.getLogger("zkbridge.sync")


def ensure_record(
    kind: str, key: str, *, enqueue: bool = True, savepoint: bool = True, **fields: Any
) -> tuple[SyncRecord, bool]:
    """The one SyncRecord for a business operation: created once, whatever the concurrency.

    The unique key, not a check-then-insert, guarantees it. New records reach the workers with their commit
    (enqueue_with_commit). `savepoint=False`: a caller that redoes its whole transaction on IntegrityError
    saves the two round trips of a savepoint (the web hook's fast path).
    """
    if not savepoint:
        record = SyncRecord.objects.create(kind=kind, key=key, **fields)
    else:
        try:
            with transaction.atomic():
                record = SyncRecord.objects.create(kind=kind, key=key, **fields)
        except IntegrityError:
            return SyncRecord.objects.get(key=key), False
    if enqueue:
        enqueue_with_commit(record.id)
    return record, True


def enqueue_with_commit(record_id: int) -> None:
    """Hand a record to the workers when the transaction that wrote it commits. On the database broker the
    task row is written in that very transaction: one commit instead of two, and the task becomes visible
    with the record, never without it. Other brokers (Redis), and django-q2's sync mode (which would run the
    flow inside the transaction), are handed the task after the commit."""
    from django_q.conf import Conf

    if Conf.ORM and not Conf.SYNC and transaction.get_connection().in_atomic_block:
        enqueue_record(record_id)
    else:
        transaction.on_commit(lambda: enqueue_record(record_id))


def pace(record: SyncRecord, source: str) -> None:
    """Hand a new record to the workers now, or, past ZKBRIDGE_MAX_RECORDS_PER_MINUTE from one source this
    minute, later: it waits (pending, due a minute on for each budget's worth ahead of it) and the dispatcher
    hands it over in order. A flood of leads from one source cannot take every worker at once."""
    now = timezone.now()
    minute = now.replace(second=0, microsecond=0)
    count = counters.bump(f"zkbridge:records:{source}:{minute:%Y%m%d%H%M}", 120)
    budget = settings.ZKBRIDGE_MAX_RECORDS_PER_MINUTE
    if count <= budget:
        enqueue_with_commit(record.id)
        return
    due = minute + dt.timedelta(minutes=(count - 1) // budget)
    SyncRecord.objects.filter(id=record.id).update(next_attempt_at=due)


def hand_to_workers(func: str, *args: Any, recovery: str, **options: Any) -> bool:
    """Enqueue `func(*args)` for the workers. A broker outage must not fail the request that asked: what
    it recorded is committed, and `recovery` says what takes the work up later (logged with the error)."""
    from django_q.tasks import async_task

    try:
        async_task(func, *args, **options)
    except Exception:  # the brokers' own exception types vary (Redis, ORM, pickling)
        log.exception("%s%s could not be enqueued; %s", func, args, recovery)
        return False
    return True


def enqueue_record(record_id: int) -> None:
    """Hand a record to the workers."""
    name = f"sync-{record_id}-{timezone.now():%H%M%S%f}"
    hand_to_workers(
        "sync.tasks.run_sync", record_id, recovery="dispatch_due will pick it up", task_name=name, group="sync"
    )


def enqueue_task_close(record_id: int) -> None:
    """After staff resolved or cancelled a record: a worker completes its Kommo task (never the web request)."""
    hand_to_workers("sync.tasks.close_task_of", record_id, recovery="dispatch_due's sweep closes it", group="sync")


def requeue(ids: list[int], reason: str, *, rerun: bool = False, only: tuple[str, ...] | None = None) -> int:
    """Put records back in the queue at a person's request: attempts reset and a new generation, so
    Zuora writes get fresh Idempotency-Keys (the old key would replay the old failure). `rerun` starts the
    flow from scratch (every step forgotten but the open Kommo task); `only` narrows the states a record
    may move from. The state is re-checked inside the UPDATE. Returns how many moved."""
    transition = "rerun" if rerun else "requeue"
    changes: dict[str, Any] = {
        "attempts": 0,
        "next_attempt_at": None,
        "generation": F("generation") + 1,
        "reason": reason,
    }
    with transaction.atomic():
        movable = SyncRecord.objects.filter(id__in=ids).movable(transition)
        if only is not None:
            movable = movable.filter(status__in=only)
        if rerun:
            for record in movable.select_for_update():
                kept = {k: v for k, v in record.steps.items() if k == "attention_task"}
                SyncRecord.objects.filter(id=record.id).update(steps=kept)
        count = movable.transition(transition, **changes)
        if count:
            for record_id in ids:  # claim() skips any that did not move
                transaction.on_commit(partial(enqueue_record, record_id))
    return count
