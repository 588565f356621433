"""A worker's lease on the record it runs: taken when it claims the record, renewed by a heartbeat while
the flow runs, given up when the outcome is recorded. A lease that lapses means the worker died (SIGKILL,
a lost machine): the dispatcher resumes the record elsewhere from its last completed step, within seconds.
A worker that cannot renew its lease (the database unreachable, or the record taken over) stops before its
next write (sync.context.check_lease), never after it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Iterator

from django.db import DatabaseError, connection
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from sync.context import Lease, current_lease
from sync.models import SyncRecord

log = logging.getLogger("zkbridge.sync")
LEASE = dt.timedelta(seconds=30)
HEARTBEAT_SECONDS = 5.0


def worker_id() -> str:
    """This process's name in leases (a forked worker process has its own pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def claim(
    candidates: QuerySet[SyncRecord], limit: int, *, worker: str | None = None, not_run_since: dt.datetime | None = None
) -> list[SyncRecord]:
    """The claim, the only one: take up to `limit` of `candidates` (oldest first) that are due and may start,
    for `worker` (this process by default), each with a lease and its attempt counted. The conditional UPDATE
    re-checks the state, so two workers never both win a record; the claimed ones are read back by this claim's
    moment. `not_run_since`: leave out records started since then (a deal a burst ran and put back in the queue
    is not taken up again by the same task)."""
    now, worker = timezone.now(), worker or worker_id()
    due = candidates.due(now)  # type: ignore[attr-defined]
    if not_run_since is not None:
        due = due.filter(Q(started_at__isnull=True) | Q(started_at__lt=not_run_since))
    ids = list(due.movable("start").order_by("id").values_list("id", flat=True)[:limit])
    if not ids:
        return []
    due.filter(id__in=ids).transition(
        "start", attempts=F("attempts") + 1, started_at=now, worker=worker, lease_until=now + LEASE
    )
    mine = SyncRecord.objects.filter(id__in=ids, status=SyncRecord.Status.RUNNING, worker=worker, started_at=now)
    return list(mine.order_by("id"))


def renew(lease: Lease) -> bool:
    """Extend the lease; False when it is no longer this worker's (or the database cannot be reached)."""
    try:
        renewed = SyncRecord.objects.filter(
            id=lease.record_id, status=SyncRecord.Status.RUNNING, worker=lease.worker
        ).update(lease_until=timezone.now() + LEASE)
    except DatabaseError as exc:
        lease.why = f"the database did not answer: {exc}"[:200]
        return False
    if not renewed:
        lease.why = "another worker took the record over"
    return bool(renewed)


class Heartbeat(threading.Thread):
    def __init__(self, lease: Lease):
        super().__init__(name=f"lease-{lease.record_id}", daemon=True)
        self.lease = lease
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.wait(HEARTBEAT_SECONDS):
                if not renew(self.lease):
                    log.error("sync_record=%s lease lost: %s", self.lease.record_id, self.lease.why)
                    self.lease.lost.set()
                    return
        finally:
            connection.close()  # this thread's own connection


@contextlib.contextmanager
def held(record: SyncRecord) -> Iterator[Lease]:
    """Keep the record's lease alive while the block runs."""
    lease = Lease(record.id, record.worker)
    beat = Heartbeat(lease)
    token = current_lease.set(lease)
    beat.start()
    try:
        yield lease
    finally:
        beat.done.set()
        beat.join(timeout=HEARTBEAT_SECONDS * 2)
        current_lease.reset(token)


def renew_all(leases: dict[int, Lease], worker: str) -> None:
    """Extend the leases of a burst's records still running here; mark the others lost."""
    live = [record_id for record_id, lease in leases.items() if not lease.lost.is_set()]
    if not live:
        return
    mine = SyncRecord.objects.filter(id__in=live, status=SyncRecord.Status.RUNNING, worker=worker)
    try:
        kept = set(mine.values_list("id", flat=True))
        mine.filter(id__in=kept).update(lease_until=timezone.now() + LEASE)
    except DatabaseError as exc:
        kept, why = set(), f"the database did not answer: {exc}"[:200]
    else:
        why = "another worker took the record over"
    for record_id in set(live) - kept:
        leases[record_id].why = why
        leases[record_id].lost.set()


class GroupHeartbeat(threading.Thread):
    """One heartbeat for every record of a burst (one UPDATE, not a thread and a connection per record)."""

    def __init__(self, leases: dict[int, Lease], worker: str):
        super().__init__(name="lease-burst", daemon=True)
        self.leases = leases
        self.worker = worker
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.wait(HEARTBEAT_SECONDS):
                renew_all(self.leases, self.worker)
        finally:
            connection.close()


@contextlib.contextmanager
def held_all(records: list[SyncRecord]) -> Iterator[dict[int, Lease]]:
    """Keep the leases of a burst's records alive while the block runs; record id → its Lease (a record
    finished meanwhile is reported lost at the next beat, which no longer matters to it)."""
    worker = records[0].worker
    leases = {record.id: Lease(record.id, worker) for record in records}
    beat = GroupHeartbeat(leases, worker)
    beat.start()
    try:
        yield leases
    finally:
        beat.done.set()
        beat.join(timeout=HEARTBEAT_SECONDS * 2)
