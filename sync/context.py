"""What the current flow works under: the sync record (API calls and log lines are tagged with it, without
the clients or the logging setup knowing about deals) and the worker's lease on it. No model imports here:
logging loads this early."""

from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field

from sync.clients.errors import TransientError

current_record_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("current_record_id", default=None)
# The web request being served: its id is on every log line it causes and in its X-Request-Id answer header.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_request_id", default=None)


class LeaseLost(TransientError):
    """This worker could not renew its lease on the record (the database was unreachable, or another worker
    took the record over): it stops before its next write; the record resumes elsewhere."""


@dataclass
class Lease:
    record_id: int
    worker: str
    lost: threading.Event = field(default_factory=threading.Event)
    why: str = ""


current_lease: contextvars.ContextVar[Lease | None] = contextvars.ContextVar("current_lease", default=None)


def check_lease(action: str) -> None:
    """Before a write (an API call that is not a read, or a step recorded): refuse when the lease is lost."""
    lease = current_lease.get()
    if lease is not None and lease.lost.is_set() and action != "GET":
        raise LeaseLost(f"lease on sync record {lease.record_id} lost ({lease.why}); stopping before the next write")
