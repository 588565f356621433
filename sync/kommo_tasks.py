"""What a flow leaves on the Kommo deal besides its fields: the task that tells the salesperson what stops
billing (one open at a time, completed with how it ended) and notes written exactly once across retries.
The texts are sync/kommo_texts.py's; nothing here knows any flow."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.utils import timezone

from sync import kommo_texts
from sync.clients.errors import ApiError
from sync.models import SyncRecord
from sync.outcomes import NeedsAttention

log = logging.getLogger("zkbridge.sync")

ATTENTION_TASK = "attention_task"


def open_attention_task(record: SyncRecord) -> dict:
    """The Kommo task zkbridge opened on the deal and has not completed yet ({} when none)."""
    task = record.step_data(ATTENTION_TASK)
    return task if task.get("task_id") and not task.get("closed") else {}


def notify_attention(record: SyncRecord, exc: NeedsAttention) -> None:
    """Open a Kommo task on the deal so the salesperson sees the problem where they work: one task per
    reason, and never two open at once (a new reason completes the task of the old one first)."""
    if not record.kommo_lead_id:
        return
    current = open_attention_task(record)
    if current.get("reason") == exc.reason:
        return
    from sync.preview.models import QuotePreview

    if not current and (task_id := QuotePreview.hand_over_task(record.kommo_lead_id, exc.reason)) is not None:
        # The quote preview already told the salesperson this very problem: the deal takes that task over.
        record.mark_step(ATTENTION_TASK, reason=exc.reason, task_id=task_id, closed=False, result="")
        return
    from sync.clients.kommo import KommoClient

    kommo = KommoClient.from_settings()
    replaced = kommo_texts.result(f"replaced by a newer task: {exc.reason}")
    if current and not close_attention_task(record, replaced, kommo):
        return  # the old task is still open; the salesperson is told once the close goes through
    text = exc.task or kommo_texts.task(
        f"this deal could not be synced with Zuora: {exc.reason}", "ask RevOps to fix it and retry the deal"
    )
    responsible = record.responsible_user_id
    try:
        task_id = kommo.add_task(
            record.kommo_lead_id,
            text[:1000],
            due=timezone.now() + dt.timedelta(days=1),
            responsible_user_id=responsible,
        )
    except ApiError as err:  # the record already says what is wrong; the task is a courtesy
        log.warning("sync_record=%s could not open the Kommo task: %s", record.id, err)
        return
    record.mark_step(ATTENTION_TASK, reason=exc.reason, task_id=task_id, closed=False, result="")


def task_result(record: SyncRecord) -> str:
    """What the completed task says: how the problem ended."""
    if record.status == SyncRecord.Status.SUCCEEDED:
        if record.zuora_subscription_number:
            return kommo_texts.result(
                f"done: subscription {record.zuora_subscription_number} on account {record.zuora_account_number}"
            )
        return kommo_texts.result("done: the deal's sync finished")
    if record.status == SyncRecord.Status.RESOLVED:
        return kommo_texts.result(f"closed by RevOps: {record.reason}")
    if record.status == SyncRecord.Status.CANCELLED:
        return kommo_texts.result(f"cancelled by RevOps, nothing was billed: {record.reason}")
    return kommo_texts.result(f"closed: {record.get_status_display().lower()}")


def close_attention_task(record: SyncRecord, result: str | None = None, kommo=None) -> bool:
    """Complete the open Kommo task of a record whose cause is gone. Returns False when Kommo could not be
    reached (a later sweep, sync.tasks.dispatch_due, tries again); a task deleted in Kommo counts as closed."""
    task = open_attention_task(record)
    if not task:
        return True
    from sync.clients.errors import NotFoundError, TransientError
    from sync.clients.kommo import KommoClient

    result = result or task_result(record)
    try:
        (kommo or KommoClient.from_settings()).complete_task(task["task_id"], result)
    except NotFoundError:
        result = kommo_texts.amend(result, "the task was already deleted in Kommo")
    except TransientError as err:
        log.warning("sync_record=%s could not complete Kommo task %s yet: %s", record.id, task["task_id"], err)
        return False
    except ApiError as err:  # refused for good (e.g. no rights): say so on the record, do not loop
        result = kommo_texts.amend(result, f"Kommo refused to complete it ({err})")
    record.mark_step(ATTENTION_TASK, closed=True, result=result[:1000])
    return True


def write_note_once(record: SyncRecord, kommo, entity: str, entity_id: int, text: str, step: str = "note") -> None:
    """Add a note, exactly once across retries: an earlier attempt may have written it before its answer
    was lost (timeout, dropped connection, 5xx after commit), so a retry looks before writing again."""
    if record.step_data(step).get("attempted"):
        if any((n.get("params") or {}).get("text") == text for n in kommo.notes(entity, entity_id)):
            record.mark_step(step, text=text, entity=entity, entity_id=entity_id)
            return
    record.mark_step(step, done=False, attempted=True)
    note_written(record, step, text, entity, entity_id, kommo.add_note(entity, entity_id, text))


def note_written(record: SyncRecord, step: str, text: str, entity: str, entity_id: int, note_id: int | None) -> None:
    """The note step done: what was written where (a retry compares the text to find it)."""
    record.mark_step(step, **note_entry(text, entity, entity_id, note_id))


def note_entry(text: str, entity: str, entity_id: int, note_id: int | None) -> dict[str, Any]:
    return {"text": text, "entity": entity, "entity_id": entity_id, "note_id": note_id}
