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
from django.utils import timezone

from sync.context import Lease, current_lease
from sync.models import SyncRecord

log = logging.getLogger("zkbridge.sync")
LEASE = dt.timedelta(seconds=30)
HEARTBEAT_SECONDS = 5.0


def worker_id() -> str:
    """This process's name in leases (a forked worker process has its own pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


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
