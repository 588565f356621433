"""One-click fixes for reconciliation rows. Each re-checks the current state before acting, so a stale
row (fixed meanwhile, or clicked twice) never causes a second re-sync."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from sync.clients.errors import ApiError
from sync.clients.kommo import KommoClient
from sync.flows.deal_won import lead_field_values
from sync.inbox import ensure_record, requeue
from sync.models import Discrepancy, SyncRecord

A = Discrepancy.Action
PROBLEM = (SyncRecord.Status.NEEDS_ATTENTION, SyncRecord.Status.FAILED)
FINISHED = (
    SyncRecord.Status.SUCCEEDED,
    SyncRecord.Status.RESOLVED,
    SyncRecord.Status.CANCELLED,
    SyncRecord.Status.IGNORED,
)


QUEUED = ("retry queued", "re-sync queued", "sync queued")


def fix(row: Discrepancy, user: str = "staff") -> str:
    """Apply the row's one-click fix; returns what happened, in words. Rows need a person otherwise.

    A fix that queues work is only *requested*: the row is fixed when its record succeeds
    (sync.tasks.cause_gone), and the report shows the record's outcome meanwhile."""
    row.refresh_from_db(fields=["fixed_at", "fix_requested_at", "fix_result", "sync_record"])
    if row.fixed_at:
        return f"already fixed: {row.fix_result}"
    if row.action not in (A.RETRY, A.RESYNC, A.RELINK):
        return "no automatic fix: " + row.get_action_display().lower()
    if row.action == A.RELINK:
        result = relink(row)
        if not result.startswith(("skipped", "failed")):
            row.fixed_at = timezone.now()
        row.fix_result = f"{result} (by {user})"[:300]
        row.save(update_fields=["fixed_at", "fix_result"])
        return result
    # The row is saved before the queued work can run (it is enqueued when this transaction commits), so
    # a record that succeeds at once still finds the row and marks it fixed.
    with transaction.atomic():
        result = retry(row) if row.action == A.RETRY else resync(row)
        if result in QUEUED:
            row.fix_requested_at = timezone.now()
            if row.sync_record_id is None and row.kommo_lead_id is not None:
                row.sync_record = SyncRecord.objects.filter(key=f"deal_won:{row.kommo_lead_id}").first()
        row.fix_result = f"{result} (by {user})"[:300]
        row.save(update_fields=["fix_requested_at", "fix_result", "sync_record"])
    return result


def outcome(row: Discrepancy) -> str:
    """The report's words for where a row's fix stands."""
    if row.fixed_at:
        return f"fixed at {timezone.localtime(row.fixed_at):%Y-%m-%d %H:%M}: {row.fix_result}"
    if not row.fix_result:
        return ""
    record = row.sync_record
    if row.fix_requested_at is None or record is None:
        return row.fix_result
    state = record.get_status_display().lower()
    if record.status in PROBLEM:
        return f"{row.fix_result} → {state} again: {record.reason}"
    return f"{row.fix_result} → {state}"


def _requeue(record: SyncRecord, from_states, reason: str, reset_steps: bool = False) -> bool:
    return requeue([record.id], from_states, reason, reset_steps=reset_steps) > 0


def retry(row: Discrepancy) -> str:
    record = row.sync_record
    if record is None:
        return "skipped: no sync record to retry"
    if _requeue(record, PROBLEM, "retry from the reconciliation report"):
        return "retry queued"
    record.refresh_from_db()
    return f"skipped: the record is '{record.status}' now"


def resync(row: Discrepancy) -> str:
    record = SyncRecord.objects.filter(key=f"deal_won:{row.kommo_lead_id}").first()
    if record is None:
        ensure_record(
            SyncRecord.Kind.DEAL_WON,
            f"deal_won:{row.kommo_lead_id}",
            kommo_lead_id=row.kommo_lead_id,
            payload={"id": row.kommo_lead_id, "found_by": "reconciliation"},
        )
        return "sync queued"
    # Zuora has no subscription although the record finished: run the whole flow again (new keys).
    if _requeue(record, FINISHED + PROBLEM, "re-sync from the reconciliation report", reset_steps=True):
        return "re-sync queued"
    return f"skipped: the record is '{record.status}' (already in progress)"


def relink(row: Discrepancy) -> str:
    """Make Kommo and zkbridge name the subscription Zuora has for the deal."""
    if row.kommo_lead_id is None:
        return "skipped: the row names no Kommo lead"
    values = lead_field_values(row.zuora_account_number, row.zuora_subscription_number)
    if values:
        try:
            KommoClient.from_settings().update_lead_fields(row.kommo_lead_id, values)
        except ApiError as exc:
            return f"failed: Kommo refused the fields ({exc})"
    record, _ = ensure_record(
        SyncRecord.Kind.DEAL_WON,
        f"deal_won:{row.kommo_lead_id}",
        enqueue=False,
        kommo_lead_id=row.kommo_lead_id,
        status=SyncRecord.Status.SUCCEEDED,
    )
    if record.status == SyncRecord.Status.RUNNING:
        return "skipped: the record is running right now"
    SyncRecord.objects.filter(id=record.id).update(
        status=SyncRecord.Status.SUCCEEDED,
        zuora_account_number=row.zuora_account_number,
        zuora_subscription_number=row.zuora_subscription_number,
        finished_at=timezone.now(),
        reason="re-linked to Zuora's subscription from the reconciliation report",
    )
    return "re-linked"
