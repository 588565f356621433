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
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from django.conf import settings
from django.db import IntegrityError, connection, models

from sync.clients.errors import TransientError

M = TypeVar("M", bound=models.Model)
_thread_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()
POLL = 0.05
# Locks held for milliseconds (the Kommo throttle's row) are asked again soon, then less and less often.
FIRST_PAUSE = 0.002
SLOT_POLL = 0.02


class LockBusy(TransientError):
    """Another worker held the lock for longer than we wait."""


def _thread_lock(name: str) -> threading.Lock:
    with _guard:
        return _thread_locks.setdefault(name, threading.Lock())


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@dataclass
class Held:
    name: str
    key: int = 0  # PostgreSQL
    handle: IO | None = None  # SQLite: the open lock file
    thread_lock: threading.Lock | None = None


def try_lock(name: str) -> Held | None:
    """Take the lock called `name` if it is free; None when another holds it."""
    if connection.vendor == "postgresql":
        key = lock_key(name)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            return Held(name, key=key) if cursor.fetchone()[0] else None
    thread_lock = _thread_lock(name)
    if not thread_lock.acquire(blocking=False):
        return None
    lock_dir = Path(settings.ZKBRIDGE_STATE_DIR) / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    handle = open(lock_dir / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.lock", "w")  # noqa: SIM115
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        thread_lock.release()
        return None
    return Held(name, handle=handle, thread_lock=thread_lock)


def release(held: Held) -> None:
    if held.handle is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [held.key])
        return
    try:
        fcntl.flock(held.handle, fcntl.LOCK_UN)
        held.handle.close()
    finally:
        if held.thread_lock is not None:
            held.thread_lock.release()


@contextlib.contextmanager
def named_lock(name: str, timeout: float = 60) -> Iterator[None]:
    """Hold the lock called `name` for the block, across any HTTP calls in it, with no transaction."""
    deadline = time.monotonic() + timeout
    pause = FIRST_PAUSE
    while (held := try_lock(name)) is None:
        if time.monotonic() > deadline:
            raise LockBusy(f"another worker has held '{name}' for over {timeout:.0f} s")
        time.sleep(pause)
        pause = min(pause * 2, POLL)
    try:
        yield
    finally:
        release(held)


class _Slots:
    """One process's view of a set of slots: the ones its threads hold, and whether one of its threads is
    already asking the database for a free one (the others wait here, without asking)."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.held: set[int] = set()
        self.asking = False


_slot_sets: dict[str, _Slots] = {}


def _slots_of(prefix: str) -> _Slots:
    with _guard:
        return _slot_sets.setdefault(prefix, _Slots())


@contextlib.contextmanager
def one_of(prefix: str, slots: int, timeout: float = 60) -> Iterator[int]:
    """Hold one of `slots` locks named prefix:0 … prefix:slots-1: a semaphore shared by every process on
    every machine (e.g. Zuora's concurrency limit). Yields the slot's number.

    Waiting costs little: in each process one waiting thread at a time asks the database, for every slot its
    process does not hold in one query (PostgreSQL); the process's other waiting threads sleep until it has
    one or a slot of the process is given back. Twenty threads polling ten slots each had cost a burst of
    won deals thousands of queries a second."""
    state = _slots_of(prefix)
    deadline = time.monotonic() + timeout
    with state.changed:
        while state.asking:
            if not state.changed.wait(max(deadline - time.monotonic(), 0)) and time.monotonic() > deadline:
                raise LockBusy(f"all {slots} '{prefix}' slots stayed busy for over {timeout:.0f} s")
        state.asking = True
    try:
        slot, held = _ask_for_slot(prefix, slots, state, deadline, timeout)
    finally:
        with state.changed:
            state.asking = False
            state.changed.notify_all()
    try:
        yield slot
    finally:
        try:
            release(held)
        finally:
            with state.changed:
                state.held.discard(slot)
                state.changed.notify_all()


def _ask_for_slot(prefix: str, slots: int, state: _Slots, deadline: float, timeout: float) -> tuple[int, Held]:
    pause = FIRST_PAUSE
    while True:
        with state.changed:
            free_here = [slot for slot in range(slots) if slot not in state.held]
        random.shuffle(free_here)  # processes start from different slots
        got = _try_slots(prefix, free_here) if free_here else None
        if got is not None:
            with state.changed:
                state.held.add(got[0])
            return got
        if time.monotonic() > deadline:
            raise LockBusy(f"all {slots} '{prefix}' slots stayed busy for over {timeout:.0f} s")
        # A slot this process gives back wakes us at once; one another process gives back is seen on the next
        # look (an idle slot is a call not made, so look again soon).
        with state.changed:
            state.changed.wait(pause)
        pause = min(pause * 2, SLOT_POLL)


def _try_slots(prefix: str, candidates: list[int]) -> tuple[int, Held] | None:
    """The first of `candidates` that is free, taken; None when every one is held elsewhere."""
    if connection.vendor != "postgresql":
        for slot in candidates:
            held = try_lock(f"{prefix}:{slot}")
            if held is not None:
                return slot, held
        return None
    keys = {lock_key(f"{prefix}:{slot}"): slot for slot in candidates}
    with connection.cursor() as cursor:
        # Every free one is taken in one statement, then all but one given back (a WHERE with LIMIT would
        # stop early only as an accident of the plan; a lock taken and not known would be held forever).
        cursor.execute("SELECT array_agg(k) FROM unnest(%s::bigint[]) AS k WHERE pg_try_advisory_lock(k)", [list(keys)])
        taken = cursor.fetchone()[0] or []
        if not taken:
            return None
        first = next(key for key in keys if key in taken)  # in the candidates' order
        extra = [key for key in taken if key != first]
        if extra:
            cursor.execute("SELECT pg_advisory_unlock(k) FROM unnest(%s::bigint[]) AS k", [extra])
    slot = keys[first]
    return slot, Held(f"{prefix}:{slot}", key=first)


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
