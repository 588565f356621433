"""Cross-process locks for shared provider state (tokens, the Kommo throttle).

PostgreSQL: a row lock (SELECT … FOR UPDATE) inside a transaction, so workers on many machines queue
up. SQLite (the embedded default, one machine): a file lock instead, because holding SQLite's single
write lock while calling an HTTP API would block every other writer — including the built-in
emulators, which share the database file.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction

M = TypeVar("M", bound=models.Model)
_thread_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def _thread_lock(name: str) -> threading.Lock:
    with _guard:
        return _thread_locks.setdefault(name, threading.Lock())


@contextlib.contextmanager
def locked_row(model: type[M], **lookup) -> Iterator[M]:
    """Yield the row matching `lookup` (created if missing), held exclusively until the block ends."""
    try:
        model._default_manager.get_or_create(**lookup)
    except IntegrityError:  # another worker created it a moment ago
        pass
    name = f"{model._meta.label_lower}-" + "-".join(f"{k}={v}" for k, v in sorted(lookup.items()))
    if connection.vendor == "postgresql":
        with transaction.atomic():
            yield model._default_manager.select_for_update().get(**lookup)
        return
    lock_dir = Path(settings.BASE_DIR) / ".zkbridge" / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with _thread_lock(name), open(lock_dir / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield model._default_manager.get(**lookup)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
