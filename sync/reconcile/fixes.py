"""One-click fixes for reconciliation rows, one function per action, registered like the flows.

A fix runs in the admin request only as far as the database goes: it re-checks the current state (a stale
row, fixed meanwhile or clicked twice, never causes a second re-sync) and queues work; the workers make
every Zuora and Kommo call. A queued fix is *requested*; the row is fixed when its record succeeds
(sync.tasks.cause_gone) or the worker's re-link is done, and the report shows where it stands meanwhile.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from sync.clients.errors import ApiError
from sync.clients.kommo import KommoClient
from sync.flows.deal_won import lead_field_values
from sync.models import SyncRecord
from sync.reconcile.models import Discrepancy
from sync.records import ensure_record, hand_to_workers, requeue

Action = Discrepancy.Action
PROBLEM = (SyncRecord.Status.NEEDS_ATTENTION, SyncRecord.Status.FAILED)


class Outcome(enum.StrEnum):
    QUEUED = "queued"  # work handed to the workers; the row is fixed when it succeeds
    DONE = "done"
    SKIPPED = "skipped"  # the state changed since the report: nothing to do, or not now
    FAILED = "failed"
    ALREADY = "already fixed"
    MANUAL = "needs a person"  # no automatic fix for this kind of row


@dataclass(frozen=True)
class FixResult:
    outcome: Outcome
    text: str

    def __str__(self) -> str:
        return self.text


FIXES: dict[str, Callable[[Discrepancy], FixResult]] = {}


def fixer(action: str):
    def register(function: Callable[[Discrepancy], FixResult]):
        FIXES[action] = function
        return function

    return register


def fix(row: Discrepancy, user: str = "staff") -> FixResult:
    """Apply the row's one-click fix; says what happened. Rows need a person otherwise."""
    row.refresh_from_db(fields=["fixed_at", "fix_requested_at", "fix_result", "sync_record"])
    if row.fixed_at:
        return FixResult(Outcome.ALREADY, f"already fixed: {row.fix_result}")
    handler = FIXES.get(row.action)
    if handler is None:
        return FixResult(Outcome.MANUAL, "no automatic fix: " + row.get_action_display().lower())
    # One transaction: the row is saved before the queued work can run (it is enqueued on commit), so a
    # record that succeeds at once still finds the row and marks it fixed.
    with transaction.atomic():
        result = handler(row)
        if result.outcome == Outcome.QUEUED:
            row.fix_requested_at = timezone.now()
            if row.sync_record_id is None and row.kommo_lead_id is not None:
                row.sync_record = SyncRecord.objects.filter(key=SyncRecord.deal_key(row.kommo_lead_id)).first()
        row.fix_result = f"{result.text} (by {user})"[:300]
        row.save(update_fields=["fix_requested_at", "fix_result", "sync_record"])
    return result


def outcome(row: Discrepancy) -> str:
    """The report's words for where a row's fix stands."""
    if row.fixed_at:
        return f"fixed at {timezone.localtime(row.fixed_at):%Y-%m-%d %H:%M}: {row.fix_result}"
    if not row.fix_result:
        return ""
    record = row.sync_record
    if row.fix_requested_at is None or record is None or row.action == Action.RELINK:
        return row.fix_result
    state = record.get_status_display().lower()
    if record.status in PROBLEM:
        return f"{row.fix_result} → {state} again: {record.reason}"
    return f"{row.fix_result} → {state}"


@fixer(Action.RETRY)
def retry(row: Discrepancy) -> FixResult:
    record = row.sync_record
    if record is None:
        return FixResult(Outcome.SKIPPED, "skipped: no sync record to retry")
    if requeue([record.id], "retry from the reconciliation report", only=PROBLEM):
        return FixResult(Outcome.QUEUED, "retry queued")
    record.refresh_from_db()
    return FixResult(Outcome.SKIPPED, f"skipped: the record is '{record.status}' now")


@fixer(Action.RESYNC)
def resync(row: Discrepancy) -> FixResult:
    if row.kommo_lead_id is None:
        return FixResult(Outcome.SKIPPED, "skipped: the row names no Kommo lead")
    record = SyncRecord.objects.filter(key=SyncRecord.deal_key(row.kommo_lead_id)).first()
    if record is None:
        ensure_record(
            SyncRecord.Kind.DEAL_WON,
            SyncRecord.deal_key(row.kommo_lead_id),
            kommo_lead_id=row.kommo_lead_id,
            payload={"id": row.kommo_lead_id, "found_by": "reconciliation"},
        )
        return FixResult(Outcome.QUEUED, "sync queued")
    # Zuora has no subscription although the record finished: run the whole flow again (new keys).
    if requeue([record.id], "re-sync from the reconciliation report", rerun=True):
        return FixResult(Outcome.QUEUED, "re-sync queued")
    return FixResult(Outcome.SKIPPED, f"skipped: the record is '{record.status}' (already in progress)")


@fixer(Action.RELINK)
def relink(row: Discrepancy) -> FixResult:
    """Make Kommo and zkbridge name the subscription Zuora has for the deal: the worker writes to Kommo."""
    if row.kommo_lead_id is None:
        return FixResult(Outcome.SKIPPED, "skipped: the row names no Kommo lead")
    record = SyncRecord.objects.filter(key=SyncRecord.deal_key(row.kommo_lead_id)).first()
    if record is not None and record.status == SyncRecord.Status.RUNNING:
        return FixResult(Outcome.SKIPPED, "skipped: the record is running right now")
    transaction.on_commit(lambda: enqueue_relink(row.id))
    return FixResult(Outcome.QUEUED, "re-link queued")


def enqueue_relink(row_id: int) -> None:
    hand_to_workers(
        "sync.reconcile.fixes.relink_deal", row_id, recovery="the row stays requested; click again", group="reconcile"
    )


def relink_deal(row_id: int) -> str:
    """Worker: write Zuora's numbers into the lead's fields, then make the deal's record name them."""
    row = Discrepancy.objects.filter(id=row_id, fixed_at__isnull=True).first()
    if row is None or row.kommo_lead_id is None:
        return "nothing to re-link"
    values = lead_field_values(row.zuora_account_number, row.zuora_subscription_number)
    if values:
        try:
            KommoClient.from_settings().update_lead_fields(row.kommo_lead_id, values)
        except ApiError as exc:
            ended(row, f"failed: Kommo refused the fields ({exc})")
            return "failed"
    record, _ = ensure_record(
        SyncRecord.Kind.DEAL_WON,
        SyncRecord.deal_key(row.kommo_lead_id),
        enqueue=False,
        kommo_lead_id=row.kommo_lead_id,
        status=SyncRecord.Status.SUCCEEDED,
    )
    moved = SyncRecord.objects.filter(id=record.id).transition(
        "relink",
        zuora_account_number=row.zuora_account_number,
        zuora_subscription_number=row.zuora_subscription_number,
        finished_at=timezone.now(),
        reason="re-linked to Zuora's subscription from the reconciliation report",
    )
    if not moved:
        ended(row, "skipped: the record was running; click again")
        return "skipped"
    ended(row, "re-linked", fixed_at=timezone.now(), sync_record=record)
    return "re-linked"


def ended(row: Discrepancy, outcome: str, **fields) -> None:
    """How the worker's re-link ended, appended to what the report says of the row."""
    Discrepancy.objects.filter(id=row.id).update(fix_result=f"{row.fix_result} → {outcome}"[:300], **fields)


def lifecycle_fix(row: Discrepancy, kind: str, queued: str) -> FixResult:
    """Queue the lifecycle record that applies Kommo's state to the subscription; the row is fixed when
    it succeeds (its flow re-reads the lead and the current Zuora version before writing anything)."""
    if row.kommo_lead_id is None:
        return FixResult(Outcome.SKIPPED, "skipped: the row names no Kommo lead")
    waiting = SyncRecord.objects.filter(kind=kind, kommo_lead_id=row.kommo_lead_id, status__in=SyncRecord.OPEN)
    if waiting.exists():
        return FixResult(Outcome.SKIPPED, f"skipped: a {kind.replace('_', ' ')} of this deal is already queued")
    record, _ = ensure_record(
        kind,
        f"{kind}:{row.kommo_lead_id}:reconcile:{row.id}",
        kommo_lead_id=row.kommo_lead_id,
        zuora_account_number=row.zuora_account_number,
        zuora_subscription_number=row.zuora_subscription_number,
        payload={"id": row.kommo_lead_id, "found_by": "reconciliation"},
    )
    row.sync_record = record
    return FixResult(Outcome.QUEUED, queued)


@fixer(Action.APPLY_PLAN)
def apply_plan(row: Discrepancy) -> FixResult:
    return lifecycle_fix(row, SyncRecord.Kind.PLAN_CHANGE, "plan change queued")


@fixer(Action.CANCEL_PER_POLICY)
def cancel_per_policy(row: Discrepancy) -> FixResult:
    return lifecycle_fix(row, SyncRecord.Kind.CANCELLATION, "cancellation queued")
