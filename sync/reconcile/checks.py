"""The reconciliation's checks: one small function per kind of discrepancy, registered with @check.

Each is a pure function of a Snapshot (Kommo, zkbridge and Zuora as read in bulk) that yields the rows
of its kind; adding a kind is adding one function here. Checks are unit-tested on hand-made snapshots
(tests/test_reconcile_checks.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator

from django.conf import settings

from catalog.models import normalize
from catalog.sellable import sellable_on
from sync.flows.sale import field_value, plan_of
from sync.models import SyncRecord
from sync.reconcile.models import Discrepancy
from sync.reconcile.snapshot import Snapshot, active

Kind, Action = Discrepancy.Kind, Discrepancy.Action
Check = Callable[[Snapshot], Iterable[Discrepancy]]
CHECKS: list[Check] = []
FINISHED = (
    SyncRecord.Status.SUCCEEDED,
    SyncRecord.Status.RESOLVED,
    SyncRecord.Status.CANCELLED,
    SyncRecord.Status.IGNORED,
)


KINDS_CHECKED: dict[str, Check] = {}


def check(*kinds: str) -> Callable[[Check], Check]:
    """Register the decorated function as the check that finds `kinds` (it yields no other kind)."""

    def register(function: Check) -> Check:
        for kind in kinds:
            if KINDS_CHECKED.setdefault(kind, function) is not function:
                raise RuntimeError(f"two checks find {kind}: {KINDS_CHECKED[kind].__name__}, {function.__name__}")
        CHECKS.append(function)
        return function

    return register


def compare(snap: Snapshot) -> list[Discrepancy]:
    """Every difference the registered checks find, one row each."""
    found = [row for run_check in CHECKS for row in run_check(snap)]
    for row in found:  # a check finds only the kinds it declared: the registry says who finds what
        if KINDS_CHECKED.get(row.kind) is None:
            raise RuntimeError(f"a check found {row.kind}, which no check declares")
    return found


def finding(
    kind: str,
    action: str,
    lead_id: int | None,
    record: SyncRecord | None,
    *,
    detail: str,
    account: str = "",
    subscription: str = "",
) -> Discrepancy:
    return Discrepancy(
        kind=kind,
        action=action,
        kommo_lead_id=lead_id,
        sync_record=record,
        detail=detail[:2000],
        zuora_account_number=account or (record.zuora_account_number if record else ""),
        zuora_subscription_number=subscription or (record.zuora_subscription_number if record else ""),
    )


def billed_deals(snap: Snapshot) -> Iterator[tuple[int, dict, SyncRecord | None, dict, dict]]:
    """(lead id, lead, record, its first subscription, that subscription's account) of every won deal
    Zuora bills."""
    subscriptions = snap.subscriptions_of()
    for lead_id, lead in snap.won.items():
        subs = subscriptions.get(lead_id)
        if subs:
            yield lead_id, lead, snap.records.get(lead_id), subs[0], snap.account_of(subs[0])


def numbers(subscription: dict, account: dict) -> dict[str, str]:
    return {"account": account.get("AccountNumber") or "", "subscription": subscription.get("Name") or ""}


@check(Kind.WON_NO_SUBSCRIPTION)
def won_without_subscription(snap: Snapshot) -> Iterator[Discrepancy]:
    """Won in Kommo, nothing in Zuora, and zkbridge is not working on it (a lost web hook, or a record
    that finished without a subscription): re-sync."""
    subscriptions = snap.subscriptions_of()
    for lead_id in snap.won:
        record = snap.records.get(lead_id)
        if lead_id in subscriptions or (record is not None and record.status not in FINISHED):
            continue
        why = (
            "no sync record (a lost web hook?)"
            if record is None
            else f"sync record is '{record.status}' but Zuora has no subscription for the lead"
        )
        yield finding(Kind.WON_NO_SUBSCRIPTION, Action.RESYNC, lead_id, record, detail=why)


@check(Kind.SYNC_FAILED)
def failed_syncs(snap: Snapshot) -> Iterator[Discrepancy]:
    """Every record that needs attention or failed, whatever its kind — won deals, plan changes, cancellations,
    reopenings, migrations, usage batches — retried once fixed. Only a won deal's record that Zuora already
    bills is left to the record-level checks below (unrecorded_subscription names it better)."""
    subscriptions = snap.subscriptions_of()
    for record in snap.problem_records:
        if record.kind == SyncRecord.Kind.BILLING_EVENT:
            continue  # unplaced_events
        billed = record.kommo_lead_id in snap.won and record.kommo_lead_id in subscriptions
        if record.kind == SyncRecord.Kind.DEAL_WON and billed:
            continue
        yield finding(
            Kind.SYNC_FAILED, Action.RETRY, record.kommo_lead_id, record, detail=record.reason or record.status
        )


@check(Kind.UNPLACED_EVENT)
def unplaced_events(snap: Snapshot) -> Iterator[Discrepancy]:
    """Billing events zkbridge could not put on a deal."""
    for record in snap.problem_records:
        if record.kind == SyncRecord.Kind.BILLING_EVENT:
            yield finding(
                Kind.UNPLACED_EVENT, Action.RETRY, record.kommo_lead_id, record, detail=record.reason or record.status
            )


@check(Kind.UNRECORDED_SUBSCRIPTION)
def unrecorded_subscription(snap: Snapshot) -> Iterator[Discrepancy]:
    """Zuora bills the deal, but zkbridge has no successful record naming that subscription."""
    for lead_id, _lead, record, sub, account in billed_deals(snap):
        if record is not None and record.status == SyncRecord.Status.SUCCEEDED:
            if record.zuora_subscription_number == sub.get("Name"):
                continue
            why = f"zkbridge's record names {record.zuora_subscription_number or 'no subscription'}"
        elif record is None:
            why = "zkbridge has no record of this deal (billed by hand, or before zkbridge?)"
        else:
            why = f"zkbridge's record is '{record.status}'"
        yield finding(
            Kind.UNRECORDED_SUBSCRIPTION,
            Action.RELINK,
            lead_id,
            record,
            **numbers(sub, account),
            detail=f"Zuora bills {sub.get('Name')} for this deal; {why}",
        )


@check(Kind.FIELDS_MISMATCH)
def lead_fields_differ(snap: Snapshot) -> Iterator[Discrepancy]:
    """The deal's account and subscription fields in Kommo say something else than Zuora."""
    for lead_id, lead, record, sub, account in billed_deals(snap):
        if record is None or record.status != SyncRecord.Status.SUCCEEDED:
            continue  # unrecorded_subscription re-links those, fields included
        if record.zuora_subscription_number != sub.get("Name"):
            continue
        said = numbers(sub, account)
        problems = []
        for field_id, key, label in (
            (settings.KOMMO_ACCOUNT_FIELD_ID, "account", "account"),
            (settings.KOMMO_SUBSCRIPTION_FIELD_ID, "subscription", "subscription"),
        ):
            have = field_value(lead, field_id) if field_id else said[key]
            if have != said[key]:
                problems.append(f"the deal's {label} field says {have or '(empty)'!r}, Zuora says {said[key]!r}")
        if problems:
            yield finding(Kind.FIELDS_MISMATCH, Action.RELINK, lead_id, record, **said, detail="; ".join(problems))


@check(Kind.WRONG_PLAN)
def wrong_plan(snap: Snapshot) -> Iterator[Discrepancy]:
    """The current Zuora version does not bill the rate plans the deal's plan maps to (changed in Kommo
    and not applied, or changed in Zuora by hand): apply Kommo's plan."""
    for lead_id, lead, record, sub, account in billed_deals(snap):
        if not active(sub):
            continue
        billed = set(snap.plans_of.get(sub["Id"], []))
        entity = record.entity_id if record is not None else None  # the deal's entity's plan map
        wanted = snap.plan_map.get((entity, normalize(plan_of(lead))))
        if not (wanted and billed) or wanted <= billed:
            continue
        yield finding(
            Kind.WRONG_PLAN,
            Action.APPLY_PLAN,
            lead_id,
            record,
            **numbers(sub, account),
            detail=f"the deal's plan maps to {plan_names(snap, wanted)}; the current Zuora version "
            f"(v{sub.get('Version') or 1}) bills {plan_names(snap, billed)}",
        )


def plan_names(snap: Snapshot, plan_ids: set[str]) -> str:
    return ", ".join(sorted(str(snap.catalog.get(p, p)) for p in plan_ids))


@check(Kind.RETIRED_PLAN)
def retired_plans(snap: Snapshot) -> Iterator[Discrepancy]:
    """Deals still billed on a rate plan that retired or left the catalog: plan the move."""
    for lead_id, _lead, record, sub, account in billed_deals(snap):
        for plan_id in sorted(set(snap.plans_of.get(sub["Id"], []))):
            plan = snap.catalog.get(plan_id)
            if plan is None:
                continue
            verdict = sellable_on(plan, snap.day)
            if verdict.ended:
                yield finding(
                    Kind.RETIRED_PLAN,
                    Action.PLAN_MIGRATION,
                    lead_id,
                    record,
                    **numbers(sub, account),
                    detail=verdict.reason,
                )


@check(Kind.DUPLICATE_SUBSCRIPTIONS)
def several_subscriptions(snap: Snapshot) -> Iterator[Discrepancy]:
    """One deal, several Zuora subscriptions carrying its lead id: one is billed twice."""
    for lead_id, subs in sorted(snap.subscriptions_of().items()):
        distinct = sorted({s.get("Name") or "?" for s in subs})  # versions of one subscription are one
        if len(distinct) > 1 and lead_id in snap.won:
            names = ", ".join(distinct)
            yield finding(
                Kind.DUPLICATE_SUBSCRIPTIONS,
                Action.OPEN_ZUORA,
                lead_id,
                snap.records.get(lead_id),
                **numbers(subs[0], snap.account_of(subs[0])),
                detail=f"{len(subs)} subscriptions carry this deal: {names}",
            )


@check(Kind.LOST_STILL_ACTIVE, Kind.ORPHAN_SUBSCRIPTION)
def orphan_subscriptions(snap: Snapshot) -> Iterator[Discrepancy]:
    """Zuora bills a lead Kommo does not list as won (lost, reopened or deleted)."""
    for lead_id, subs in sorted(snap.subscriptions_of().items()):
        if lead_id in snap.won:
            continue
        for sub in subs:
            if not active(sub):
                continue  # cancelled: nothing billed wrongly
            if lead_id in snap.lost:
                yield finding(
                    Kind.LOST_STILL_ACTIVE,
                    Action.CANCEL_PER_POLICY,
                    lead_id,
                    snap.records.get(lead_id),
                    **numbers(sub, snap.account_of(sub)),
                    detail=f"the deal is Lost in Kommo (status {snap.lost[lead_id].get('status_id')}) but "
                    f"{sub.get('Name')} is {sub.get('Status') or 'active'} in Zuora",
                )
                continue
            yield finding(
                Kind.ORPHAN_SUBSCRIPTION,
                Action.OPEN_KOMMO,
                lead_id,
                snap.records.get(lead_id),
                **numbers(sub, snap.account_of(sub)),
                detail="Kommo does not list this lead as won (lost, reopened or deleted?)",
            )


@check(Kind.DUPLICATE_ACCOUNTS)
def duplicate_accounts(snap: Snapshot) -> Iterator[Discrepancy]:
    """Several Zuora accounts for one Kommo customer."""
    by_customer: dict[str, list[dict]] = defaultdict(list)
    for account in snap.accounts.values():
        key = account.get(settings.ZUORA_ACCOUNT_CRM_FIELD) or account.get("CrmId")
        if key:
            by_customer[key].append(account)
    for key, accounts in sorted(by_customer.items()):
        if len(accounts) > 1:
            numbers_ = sorted(a.get("AccountNumber") or "?" for a in accounts)
            yield finding(
                Kind.DUPLICATE_ACCOUNTS,
                Action.OPEN_ZUORA,
                None,
                None,
                account=numbers_[0],
                detail=f"Kommo {key} has {len(accounts)} Zuora accounts: {', '.join(numbers_)}",
            )
