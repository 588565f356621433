"""The dispatcher: hands due retries and abandoned records to the workers within a second or two.

django-q2's scheduler looks at its schedules about twice a minute, too late for a retry due in 30 seconds
or for a deal whose worker just died. So every `qcluster` runs this loop in its main process (after the
worker processes have been started): each second, records whose lease lapsed are taken back, and due
retries are enqueued, each exactly once per due time (a conditional update decides which cluster does it
when several run). The minute schedule (sync.tasks.dispatch_due) calls the same pass as a safety net.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from django.db import DatabaseError, connection
from django.db.models import Q
from django.utils import timezone

from sync import records
from sync.models import SyncRecord

log = logging.getLogger("zkbridge.sync")
# Records claimed before leases existed have none: taken back when they have run this long.
UNLEASED_LIMIT = dt.timedelta(minutes=10)
BATCH = 200
# At most this many tasks wait in the broker: a backlog (a migration run, a burst of deals) stays in the
# sync records, ordered, rather than in the broker, where a record still waiting after REDISPATCH would be
# handed over a second time and the workers would spend themselves on duplicates.
QUEUE_ROOM = 100
_broker = None


def queue_room() -> int:
    """How many more tasks the broker should take now (BATCH when its size cannot be read)."""
    global _broker
    try:
        if _broker is None:
            from django_q.brokers import get_broker

            _broker = get_broker()
        return max(QUEUE_ROOM - int(_broker.queue_size() or 0), 0)
    except Exception:  # the brokers' own errors vary; never stop dispatching over a gauge
        _broker = None
        return BATCH


def rescue_abandoned(now: dt.datetime) -> int:
    """Running records whose worker stopped renewing its lease: resume them from the last completed step."""
    return SyncRecord.objects.filter(
        Q(lease_until__lt=now) | Q(lease_until__isnull=True, started_at__lt=now - UNLEASED_LIMIT)
    ).transition("rescue", next_attempt_at=now, reason="the worker running it stopped; resuming")


def dispatch_once(now: dt.datetime | None = None) -> int:
    """One pass: take back abandoned records, hand every due record no task is on its way for to the workers
    (SyncRecord.objects.to_hand_over: due retries, paced records, lost enqueues), once. Returns how many."""
    now = now or timezone.now()
    rescued = rescue_abandoned(now)
    if rescued:
        log.warning("%s record(s) abandoned by a stopped worker resume now", rescued)
    return hand_over(SyncRecord.objects.to_hand_over(now).order_by("next_attempt_at", "id"), now)


def hand_over(candidates, now: dt.datetime) -> int:
    """Enqueue each record of `candidates` (an ordered queryset), marked dispatched by a conditional update
    that re-checks the whole condition, so one cluster wins each; no more than the broker has room for.
    Returns how many were handed over."""
    handed = 0
    room = min(BATCH, queue_room())
    if room <= 0:
        return 0
    for record_id in candidates.values_list("id", flat=True)[:room]:
        if candidates.filter(id=record_id).update(dispatched_at=now):
            records.enqueue_record(record_id)
            handed += 1
    return handed


def run(keep_going: Callable[[], bool], interval: float = 1.0) -> None:
    """The loop `qcluster` runs beside its workers until the cluster stops."""
    while keep_going():
        try:
            dispatch_once()
        except DatabaseError as exc:  # the database is away: try again next second, on a new connection
            log.error("dispatcher: %s", exc)
            connection.close()
        time.sleep(interval)
    connection.close()
