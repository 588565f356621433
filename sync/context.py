"""The sync record the current flow works on: API calls and log lines are tagged with it, without the
clients or the logging setup knowing about deals. (No model imports here: logging loads this early.)"""

from __future__ import annotations

import contextvars

current_record_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("current_record_id", default=None)
