"""Reconciliation: every kind of discrepancy, built in the emulators, shows up with the right action;
the one-click fixes work and re-check first; reads stay paged; a failed run keeps the last report."""

from __future__ import annotations

import csv
import time

import pytest
import requests
from django.core.management import CommandError, call_command

from sandbox.demo import zuora_id
from sandbox.models import KLead, KWebhook, ZAccount
from sync.models import SyncRecord
from sync.reconcile import latest_report, run_reconciliation
from sync.reconcile.fixes import Outcome, fix
from sync.reconcile.models import Discrepancy
from tests import builders
from tests.conftest import map_plan

ACME, ACME_EXPANSION, UMBRELLA, SOLO = 24312345, 24312346, 24312350, 24312349


@pytest.fixture
def billed(catalog):
    catalog.win(ACME_EXPANSION)
    catalog.win(SOLO)
    assert SyncRecord.objects.filter(status="succeeded").count() == 2
    return catalog


def rows(kind: str) -> list[Discrepancy]:
    run = latest_report()
    return list(run.discrepancies.filter(kind=kind)) if run else []


def test_a_clean_state_has_no_discrepancies(billed):
    run = run_reconciliation()
    assert run.ok and run.summary["won_deals"] == 2 and run.summary["discrepancies"] == 0


def test_won_without_a_subscription_is_resynced_in_one_click(billed):
    KWebhook.objects.all().delete()  # the web hook is lost
    billed.win(ACME)
    run_reconciliation()
    [row] = rows("won_no_subscription")
    assert row.kommo_lead_id == ACME and row.action == "resync" and "lost web hook" in row.detail
    assert fix(row).text == "sync queued"
    assert SyncRecord.objects.get(key=f"deal_won:{ACME}").status == "succeeded"
    assert fix(row).outcome == Outcome.ALREADY  # a second click does nothing
    assert len(billed.subscriptions(ACME)) == 1


def test_a_failed_sync_shows_its_reason_and_retries(billed):
    billed.win(UMBRELLA)
    run_reconciliation()
    [row] = rows("sync_failed")
    assert row.action == "retry" and "no plan mapping for plan 'Platinum'" in row.detail
    map_plan("Platinum", "Starter")
    assert fix(row).outcome == Outcome.QUEUED
    assert SyncRecord.objects.get(key=f"deal_won:{UMBRELLA}").status == "succeeded"


def test_a_retry_on_a_stale_row_is_skipped(billed):
    billed.win(UMBRELLA)
    run_reconciliation()
    [row] = rows("sync_failed")
    SyncRecord.objects.filter(key=f"deal_won:{UMBRELLA}").update(status="running")
    result = fix(row)
    assert result.outcome == Outcome.SKIPPED and result.text == "skipped: the record is 'running' now"
    assert Discrepancy.objects.get(id=row.id).fixed_at is None


def test_a_subscription_on_another_plan_than_the_mapping(billed):
    sub = billed.subscriptions(ACME_EXPANSION)[0]
    sub.rate_plans = [
        {"productRatePlanId": zuora_id("Growth"), "ratePlanName": "Growth", "productName": "x", "charges": []}
    ]
    sub.save()
    run_reconciliation()
    [row] = rows("wrong_plan")
    assert row.kommo_lead_id == ACME_EXPANSION and row.action == "apply_plan"
    assert "Starter" in row.detail and "Growth" in row.detail


def test_deal_fields_that_differ_from_zuora_are_relinked(billed):
    lead = KLead.objects.get(id=ACME_EXPANSION)
    lead.custom_fields_values = [f for f in lead.custom_fields_values if f["field_id"] != 881251] + [
        {"field_id": 881251, "field_name": "Zuora subscription", "values": [{"value": "A-S-WRONG"}]}
    ]
    lead.save()
    run_reconciliation()
    [row] = rows("fields_mismatch")
    assert "A-S-WRONG" in row.detail and row.action == "relink"
    assert fix(row, "rita").text == "re-link queued"  # the worker writes to Kommo (sync mode: done by now)
    row.refresh_from_db()
    assert row.fixed_at is not None and row.fix_result == "re-link queued (by rita) → re-linked"
    fields = {f["field_id"]: f["values"][0]["value"] for f in KLead.objects.get(id=ACME_EXPANSION).custom_fields_values}
    assert fields[881251] == billed.subscriptions(ACME_EXPANSION)[0].subscription_number
    assert run_reconciliation().summary["discrepancies"] == 0


def test_several_accounts_for_one_company(billed):
    ZAccount.objects.create(
        account_number="A09999999",
        name="ACME dup",
        currency="USD",
        crm_id="company:5550001",
        custom_fields={"KommoId__c": "company:5550001"},
    )
    run_reconciliation()
    [row] = rows("duplicate_accounts")
    assert "company:5550001 has 2 Zuora accounts" in row.detail and "A09999999" in row.detail


def test_a_subscription_for_a_deal_that_is_not_won_is_an_orphan(billed):
    KLead.objects.filter(id=SOLO).update(status_id=39402112)  # back in negotiation after billing
    run_reconciliation()
    [row] = rows("orphan_subscription")
    assert row.kommo_lead_id == SOLO and row.action == "open_kommo"


def test_lost_in_kommo_still_active_in_zuora_is_cancelled_per_policy_in_one_click(billed):
    KLead.objects.filter(id=SOLO).update(status_id=143)  # lost after billing; the web hook never came
    run_reconciliation()
    assert rows("orphan_subscription") == []
    [row] = rows("lost_still_active")
    assert row.kommo_lead_id == SOLO and row.action == "cancel_per_policy" and "Lost in Kommo" in row.detail
    assert fix(row).text == "cancellation queued"
    record = SyncRecord.objects.get(kind="cancellation", kommo_lead_id=SOLO)
    assert record.status == "succeeded", record.reason
    current = max(billed.subscriptions(SOLO), key=lambda s: s.version)
    assert current.status == "Cancelled" and current.subscription_end_date == current.term_end_date
    assert Discrepancy.objects.get(id=row.id).fixed_at is not None
    assert fix(row).outcome == Outcome.ALREADY
    assert run_reconciliation().summary["discrepancies"] == 0  # a cancelled subscription of a lost deal is right


def test_deals_still_on_retired_plans(billed):
    sub = billed.subscriptions(ACME_EXPANSION)[0]
    sub.rate_plans = [
        {
            "productRatePlanId": zuora_id("Growth (2024)"),
            "ratePlanName": "Growth (2024)",
            "productName": "x",
            "charges": [],
        }
    ]
    sub.save()
    run_reconciliation()
    [row] = rows("retired_plan")
    assert "retired on 2026-06-30" in row.detail and row.action == "plan_migration"


def test_billing_events_zuora_could_not_place(billed, settings):
    settings.ZUORA_CALLOUT_USERNAME = settings.ZUORA_CALLOUT_PASSWORD = None
    requests.post(
        f"{billed.url}/webhooks/zuora/",
        json={"eventType": "PaymentProcessed", "accountNumber": "A77777777"},
        timeout=30,
    )
    run_reconciliation()
    [row] = rows("unplaced_event")
    assert "A77777777" in row.detail


def test_a_run_that_loses_zuora_half_way_keeps_the_previous_report(billed):
    billed.win(UMBRELLA)
    good = run_reconciliation()
    billed.fault("zuora", "http500", "/v1/action/query")
    failed = run_reconciliation()
    assert not failed.ok and "the previous report stays in force" in failed.error and "500" in failed.error
    assert latest_report() == good and good.discrepancies.count() == 1


def test_the_command_prints_and_writes_csv(billed, tmp_path, capsys):
    billed.win(UMBRELLA)
    call_command("reconcile", "--csv", str(tmp_path / "report.csv"))
    out = capsys.readouterr().out
    assert "2 won deals" not in out and "3 won deals" in out and "sync_failed" in out
    with open(tmp_path / "report.csv") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["kind"] == "sync_failed" and row["kommo_lead_id"] == str(UMBRELLA)
    with pytest.raises(CommandError, match="folder does not exist"):
        call_command("reconcile", "--csv", str(tmp_path / "missing" / "r.csv"))


def test_reads_stay_paged_for_thousands_of_deals(billed):
    """3,000 won deals with subscriptions: a handful of list calls, never one per deal."""
    deals = range(50_000_000, 50_003_000)
    builders.won_leads(deals, fields=False)
    builders.billed_in_zuora(deals)
    started = time.monotonic()
    run = run_reconciliation()
    assert run.ok and run.summary["won_deals"] == 3002
    assert run.summary["zuora_calls"] <= 8, run.summary  # 3 ZOQL queries, ≤ 2000 records a page
    assert run.summary["kommo_calls"] <= 16, run.summary  # 250 leads a page
    assert run.summary["unrecorded_subscription"] == 3000  # zkbridge never synced them: re-link offered
    assert time.monotonic() - started < 60


def test_the_report_pages_in_the_admin(billed, admin_client):
    billed.win(UMBRELLA)
    run_reconciliation()
    page = admin_client.get("/admin/sync/discrepancy/").content.decode()
    assert "no plan mapping for plan" in page and "Retry the sync" in page
    runs = admin_client.get("/admin/sync/reconciliationrun/").content.decode()
    assert "Run reconciliation now" in runs
    run = latest_report()
    export = admin_client.get(f"/admin/sync/reconciliationrun/{run.id}/csv/")
    assert export["Content-Type"].startswith("text/csv") and str(UMBRELLA) in export.content.decode()


def test_a_report_of_50000_rows_pages(admin_client, db, django_assert_max_num_queries):
    from sync.reconcile.models import ReconciliationRun

    run = ReconciliationRun.objects.create(ok=True, summary={"discrepancies": 50_000})
    Discrepancy.objects.bulk_create(
        [
            Discrepancy(run=run, kind="fields_mismatch", action="relink", kommo_lead_id=n, detail=f"row {n}")
            for n in range(50_000)
        ],
        batch_size=5000,
    )
    with django_assert_max_num_queries(15):
        page = admin_client.get("/admin/sync/discrepancy/").content.decode()
    assert page.count('name="_selected_action"') == 100 and "?p=2" in page
    last = admin_client.get("/admin/sync/discrepancy/", {"p": 499}).content.decode()
    assert last.count('name="_selected_action"') == 100
