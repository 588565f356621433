"""Cross-process locks that are held across HTTP calls without holding a database transaction.

No database transaction spans an HTTP call (a transaction open while Zuora takes its time holds locks
and connections, and its rollback would erase the API call log, the evidence RevOps needs). So a lock
that must outlive a call is:
- on PostgreSQL, a session advisory lock (`pg_advisory_lock`): shared by every worker on every machine,
  released by PostgreSQL when the process holding it dies;
- on SQLite (the embedded default, one machine), an exclusive file lock, released by the kernel when the
  process dies.
Waiting is bounded: a lock not had within `timeout` seconds raises LockBusy, a transient error the
record retries later.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from django.conf import settings
from django.db import IntegrityError, connection, models

from sync.clients.errors import TransientError

M = TypeVar("M", bound=models.Model)
_thread_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()
POLL = 0.05


class LockBusy(TransientError):
    """Another worker held the lock for longer than we wait."""


def _thread_lock(name: str) -> threading.Lock:
    with _guard:
        return _thread_locks.setdefault(name, threading.Lock())


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def named_lock(name: str, timeout: float = 60) -> Iterator[None]:
    """Hold the lock called `name` for the block, across any HTTP calls in it, with no transaction."""
    deadline = time.monotonic() + timeout
    if connection.vendor == "postgresql":
        key = lock_key(name)
        with connection.cursor() as cursor:
            while True:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
                if cursor.fetchone()[0]:
                    break
                if time.monotonic() > deadline:
                    raise LockBusy(f"another worker has held '{name}' for over {timeout:.0f} s")
                time.sleep(POLL)
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        return
    lock_dir = Path(settings.ZKBRIDGE_STATE_DIR) / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    safe = hashlib.sha256(name.encode()).hexdigest()[:32]
    thread_lock = _thread_lock(name)
    if not thread_lock.acquire(timeout=timeout):
        raise LockBusy(f"another worker has held '{name}' for over {timeout:.0f} s")
    try:
        with open(lock_dir / f"{safe}.lock", "w") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LockBusy(f"another worker has held '{name}' for over {timeout:.0f} s") from None
                    time.sleep(POLL)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        thread_lock.release()


@contextlib.contextmanager
def locked_row(model: type[M], timeout: float = 60, **lookup) -> Iterator[M]:
    """Yield the row matching `lookup` (created if missing), held exclusively until the block ends. The
    row is read and saved in short transactions of its own; the lock, not a transaction, excludes others."""
    try:
        model._default_manager.get_or_create(**lookup)
    except IntegrityError:  # another worker created it a moment ago
        pass
    name = f"{model._meta.label_lower}:" + ",".join(f"{k}={v}" for k, v in sorted(lookup.items()))
    with named_lock(name, timeout):
        yield model._default_manager.get(**lookup)
