"""How a flow ends other than by succeeding: a person must act, not now, or nothing to do. sync.tasks turns
each into its state; nothing here knows any flow."""

from __future__ import annotations

import datetime as dt


class NeedsAttention(Exception):
    """A person must act (fix a mapping, add an e-mail…). `task` is what the salesperson should do."""

    def __init__(self, reason: str, task: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.task = task


class Waiting(Exception):
    """Not now: an earlier change to the same subscription goes first. The record is retried after
    `delay` without using up an attempt."""

    def __init__(self, reason: str, delay: dt.timedelta):
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class Ignored(Exception):
    """Nothing to do (e.g. a billing event type with no rule): kept, listed, not an error."""
