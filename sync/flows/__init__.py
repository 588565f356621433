"""Flows: plain functions, one per business operation, resumable step by step.

A flow registers itself for a SyncRecord kind with @flow(kind). It raises NeedsAttention when a person
must act; transient client errors propagate to sync.tasks, which schedules the retry.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from django.utils import timezone

from sync.clients.errors import ApiError
from sync.models import SyncRecord

log = logging.getLogger("zkbridge.sync")
FLOWS: dict[str, Callable[[SyncRecord], None]] = {}


class NeedsAttention(Exception):
    """A person must act (fix a mapping, add an e-mail…). `task` is what the salesperson should do."""

    def __init__(self, reason: str, task: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.task = task


class Ignored(Exception):
    """Nothing to do (e.g. a billing event type with no rule): kept, listed, not an error."""


def flow(kind: str):
    def register(function: Callable[[SyncRecord], None]):
        FLOWS[kind] = function
        return function

    return register


def notify_attention(record: SyncRecord, exc: NeedsAttention) -> None:
    """Open a Kommo task on the deal so the salesperson sees the problem where they work (once per reason)."""
    if not record.kommo_lead_id or record.step_data("attention_task").get("reason") == exc.reason:
        return
    from sync.clients.kommo import KommoClient

    text = exc.task or f"zkbridge could not bill this deal in Zuora: {exc.reason}. Fix it, then ask RevOps to retry."
    responsible = record.step_data("lead").get("responsible_user_id")
    try:
        task_id = KommoClient.from_settings().add_task(
            record.kommo_lead_id,
            text[:1000],
            due=timezone.now() + dt.timedelta(days=1),
            responsible_user_id=responsible,
        )
    except ApiError as err:  # the record already says what is wrong; the task is a courtesy
        log.warning("sync_record=%s could not open the Kommo task: %s", record.id, err)
        return
    record.mark_step("attention_task", reason=exc.reason, task_id=task_id)


def write_note_once(record: SyncRecord, kommo, entity: str, entity_id: int, text: str, step: str = "note") -> None:
    """Add a note, exactly once across retries: an earlier attempt may have written it before its answer
    was lost (timeout, dropped connection, 5xx after commit), so a retry looks before writing again."""
    if record.step_data(step).get("attempted"):
        if any((n.get("params") or {}).get("text") == text for n in kommo.notes(entity, entity_id)):
            record.mark_step(step, text=text, entity=entity, entity_id=entity_id)
            return
    record.mark_step(step, done=False, attempted=True)
    note_id = kommo.add_note(entity, entity_id, text)
    record.mark_step(step, text=text, entity=entity, entity_id=entity_id, note_id=note_id)


# Register the flows.
from sync.flows import billing_event, deal_won, usage_batch  # noqa: E402,F401
