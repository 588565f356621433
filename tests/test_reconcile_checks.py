"""Each reconciliation check on a hand-made snapshot of Kommo, zkbridge and Zuora: the right kind, the
right action, and nothing where nothing differs. No database, no HTTP: the checks are pure."""

from __future__ import annotations

import datetime as dt

import pytest

from catalog.models import Product, ProductRatePlan
from sync.models import SyncRecord
from sync.reconcile import checks
from sync.reconcile.snapshot import Snapshot

PLAN_FIELD, ACCOUNT_FIELD, SUB_FIELD = 1, 2, 3
DAY = dt.date(2026, 11, 27)
PRODUCT = Product(name="Platform", effective_start=dt.date(2020, 1, 1), effective_end=dt.date(2099, 12, 31))
GROWTH = ProductRatePlan(
    zuora_id="p-growth",
    name="Growth",
    product=PRODUCT,
    effective_start=dt.date(2026, 7, 1),
    effective_end=PRODUCT.effective_end,
)
LEGACY = ProductRatePlan(
    zuora_id="p-legacy",
    name="Growth (2024)",
    product=PRODUCT,
    effective_start=dt.date(2024, 1, 1),
    effective_end=dt.date(2026, 6, 30),
)
FUTURE = ProductRatePlan(
    zuora_id="p-future",
    name="Next",
    product=PRODUCT,
    effective_start=dt.date(2027, 1, 1),
    effective_end=PRODUCT.effective_end,
)


@pytest.fixture(autouse=True)
def fields(settings):
    settings.KOMMO_PLAN_FIELD_ID = PLAN_FIELD
    settings.KOMMO_ACCOUNT_FIELD_ID = ACCOUNT_FIELD
    settings.KOMMO_SUBSCRIPTION_FIELD_ID = SUB_FIELD
    settings.ZUORA_ACCOUNT_CRM_FIELD = "KommoId__c"


def lead(lead_id: int, plan: str = "Growth", account: str = "A001", subscription: str = "A-S001") -> dict:
    values = {PLAN_FIELD: plan, ACCOUNT_FIELD: account, SUB_FIELD: subscription}
    return {
        "id": lead_id,
        "custom_fields_values": [{"field_id": f, "values": [{"value": v}]} for f, v in values.items() if v],
    }


def record(lead_id: int, status: str = "succeeded", subscription: str = "A-S001", kind: str = "deal_won"):
    return SyncRecord(
        kind=kind,
        key=f"{kind}:{lead_id}",
        kommo_lead_id=lead_id,
        status=status,
        zuora_account_number="A001" if subscription else "",
        zuora_subscription_number=subscription,
        reason="" if status == "succeeded" else "something went wrong",
    )


def sub(lead_id: int, name: str = "A-S001", sub_id: str = "s1", account_id: str = "a1") -> dict:
    return {"Id": sub_id, "Name": name, "AccountId": account_id, "Status": "Active", "KommoLeadId__c": str(lead_id)}


def billed(lead_id: int = 10, **changes) -> Snapshot:
    """One won deal, synced and billed as mapped: the state with nothing to report."""
    snap = Snapshot(
        won={lead_id: lead(lead_id)},
        accounts={"a1": {"Id": "a1", "AccountNumber": "A001", "KommoId__c": "company:1"}},
        subscriptions=[sub(lead_id)],
        plans_of={"s1": ["p-growth"]},
        records={lead_id: record(lead_id)},
        plan_map={(None, "growth"): {"p-growth"}},
        catalog={p.zuora_id: p for p in (GROWTH, LEGACY, FUTURE)},
        day=DAY,
    )
    for name, value in changes.items():
        setattr(snap, name, value)
    return snap


def kinds(snap: Snapshot) -> list[tuple[str, str]]:
    return [(row.kind, row.action) for row in checks.compare(snap)]


def test_a_deal_billed_as_sold_has_no_finding():
    assert kinds(billed()) == []


def test_every_check_is_registered_once():
    names = [check.__name__ for check in checks.CHECKS]
    assert len(names) == len(set(names)) >= 10


@pytest.mark.parametrize("status", [None, "succeeded", "cancelled"])
def test_won_without_subscription_is_resynced(status):
    records = {} if status is None else {10: record(10, status=status, subscription="")}
    [row] = checks.compare(billed(subscriptions=[], records=records))
    assert (row.kind, row.action, row.kommo_lead_id) == ("won_no_subscription", "resync", 10)
    assert ("lost web hook" in row.detail) == (status is None)


def test_a_deal_still_being_worked_on_is_not_reported():
    assert kinds(billed(subscriptions=[], records={10: record(10, status="retrying", subscription="")})) == []


def test_a_failed_deal_is_retried_and_other_failures_keep_their_kind():
    problems = [
        record(10, status="needs_attention", subscription=""),
        record(77, status="failed", subscription="", kind="billing_event"),
        record(88, status="failed", subscription="", kind="usage_batch"),
    ]
    snap = billed(subscriptions=[], records={10: problems[0]}, problem_records=problems)
    assert sorted(kinds(snap)) == [("sync_failed", "retry"), ("sync_failed", "retry"), ("unplaced_event", "retry")]


@pytest.mark.parametrize("kind", ["plan_change", "cancellation", "reopening", "migration"])
def test_a_change_in_trouble_on_a_billed_deal_is_listed(kind):
    """The README promises every sync that failed or needs attention: a plan change refused on a deal Zuora
    bills is one (the dashboard and /healthz count it; so does the report)."""
    trouble = record(10, status="needs_attention", kind=kind)
    [row] = checks.compare(billed(problem_records=[trouble]))
    assert (row.kind, row.action, row.kommo_lead_id, row.detail) == (
        "sync_failed",
        "retry",
        10,
        "something went wrong",
    )


def test_a_won_record_in_trouble_that_zuora_bills_is_named_once():
    trouble = record(10, status="needs_attention")
    assert kinds(billed(records={10: trouble}, problem_records=[trouble])) == [("unrecorded_subscription", "relink")]


@pytest.mark.parametrize(
    "records, words",
    [({}, "zkbridge has no record"), ({10: record(10, subscription="A-S999")}, "record names A-S999")],
)
def test_a_subscription_zkbridge_does_not_name_is_relinked(records, words):
    [row] = checks.compare(billed(records=records))
    assert (row.kind, row.action) == ("unrecorded_subscription", "relink") and words in row.detail
    assert (row.zuora_account_number, row.zuora_subscription_number) == ("A001", "A-S001")


def test_deal_fields_that_differ_from_zuora_are_relinked():
    [row] = checks.compare(billed(won={10: lead(10, subscription="A-S-WRONG")}))
    assert (row.kind, row.action) == ("fields_mismatch", "relink")
    assert "subscription field says 'A-S-WRONG', Zuora says 'A-S001'" in row.detail


def test_fields_are_not_compared_when_not_configured(settings):
    settings.KOMMO_SUBSCRIPTION_FIELD_ID = None
    assert kinds(billed(won={10: lead(10, subscription="")})) == []


def test_another_plan_than_the_mapping_says():
    [row] = checks.compare(billed(plans_of={"s1": ["p-future"]}))
    assert (row.kind, row.action) == ("wrong_plan", "apply_plan")
    assert (
        row.detail == "the deal's plan maps to Platform / Growth; the current Zuora version (v1) bills Platform / Next"
    )


def test_a_retired_plan_is_reported_but_not_one_that_is_not_yet_effective():
    snap = billed(plans_of={"s1": ["p-growth", "p-legacy", "p-future"]})
    assert kinds(snap) == [("retired_plan", "plan_migration")]
    assert "retired on 2026-06-30" in checks.compare(snap)[0].detail


def test_several_subscriptions_for_one_deal_are_duplicates_not_orphans():
    snap = billed(subscriptions=[sub(10), sub(10, name="A-S002", sub_id="s2")])
    [row] = checks.compare(snap)
    assert (row.kind, row.action) == ("duplicate_subscriptions", "open_zuora")
    assert row.detail == "2 subscriptions carry this deal: A-S001, A-S002"


def test_a_subscription_for_a_lead_that_is_not_won_is_an_orphan():
    [row] = checks.compare(billed(won={}))
    assert (row.kind, row.action, row.kommo_lead_id) == ("orphan_subscription", "open_kommo", 10)


def test_several_accounts_for_one_customer():
    accounts = {
        "a1": {"Id": "a1", "AccountNumber": "A001", "KommoId__c": "company:1"},
        "a2": {"Id": "a2", "AccountNumber": "A002", "CrmId": "company:1"},
    }
    [row] = checks.compare(billed(accounts=accounts))
    assert (row.kind, row.zuora_account_number) == ("duplicate_accounts", "A001")
    assert row.detail == "Kommo company:1 has 2 Zuora accounts: A001, A002"
