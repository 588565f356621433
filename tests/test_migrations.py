"""Moving subscribers off a retired plan, over real HTTP against the Zuora emulator (which keeps versions,
charged-through dates, communication profiles, credits and prorations as Zuora does): exactly the due
subscriptions move, on their term end or charged-through date, with no proration and no credit."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
import requests
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from catalog.models import ProductRatePlan
from sandbox.models import ZAccount, ZOrder, ZSubscription
from sync.migration import run as migration_run
from sync.migration.models import MigrationRule, MigrationRun
from sync.migration.rules import validate
from sync.migration.run import run_migrations as run_only
from sync.models import SyncRecord
from sync.tasks import dispatch_due
from sync.usage.models import UsageRecord

SCALE, STARTER, GROWTH, API = "Scale (retiring)", "Starter", "Growth", "API calls (tiered)"
DAY = dt.date(2026, 12, 19)  # the run's date: tomorrow, 2026-12-20, is the moment of the due subscriptions


def run_migrations(day: dt.date, **options) -> MigrationRun:
    """The run, then the workers' dispatcher hands its records over (django-q2 runs them at once here)."""
    run = run_only(day, **options)
    while dispatch_due():
        pass
    return run


@pytest.fixture
def zuora(catalog):
    token = requests.post(
        f"{catalog.zuora}/oauth/token",
        data={
            "client_id": django_settings.SANDBOX_ZUORA_CLIENT_ID,
            "client_secret": django_settings.SANDBOX_ZUORA_CLIENT_SECRET,
            "grant_type": "client_credentials",
        },
        timeout=10,
    ).json()["access_token"]
    catalog.headers = {"Authorization": f"Bearer {token}"}
    return catalog


def plan(name: str) -> ProductRatePlan:
    return ProductRatePlan.objects.get(name=name)


def subscribe(env, plan_name: str, contract: dt.date, *, evergreen=False, currency="USD", custom=None) -> str:
    """A subscriber made in Zuora before the refresh (as Zuora's UI would): its own account."""
    terms = (
        {"initialTerm": {"termType": "EVERGREEN"}, "autoRenew": False}
        if evergreen
        else {"initialTerm": {"termType": "TERMED", "period": 12, "periodType": "Month"}, "autoRenew": True}
    )
    answer = requests.post(
        f"{env.zuora}/v1/orders",
        json={
            "orderDate": contract.isoformat(),
            "newAccount": {
                "name": f"Legacy customer {ZAccount.objects.count() + 1}",
                "currency": currency,
                "billCycleDay": 0,
                "billToContact": {"firstName": "Lee", "lastName": "Gacy", "workEmail": "lee@example.com"},
            },
            "subscriptions": [
                {
                    "orderActions": [
                        {
                            "type": "CreateSubscription",
                            "triggerDates": [{"name": "ContractEffective", "triggerDate": contract.isoformat()}],
                            "createSubscription": {
                                "terms": terms,
                                "subscribeToRatePlans": [{"productRatePlanId": plan(plan_name).zuora_id}],
                            },
                        }
                    ],
                    "customFields": custom or {},
                }
            ],
        },
        headers=env.headers,
        timeout=10,
    ).json()
    assert answer["success"], answer
    return answer["subscriptions"][0]["subscriptionNumber"]


def bill(env, number: str, through: dt.date) -> None:
    requests.post(
        f"{env.url}/sandbox/control/zuora/subscriptions/{number}/bill",
        data=json.dumps({"through": through.isoformat()}),
        timeout=10,
    ).raise_for_status()


def current(number: str) -> ZSubscription:
    return ZSubscription.objects.filter(subscription_number=number).order_by("-version").first()


def plans_of(number: str) -> list[str]:
    return [p["ratePlanName"] for p in current(number).billed_plans]


def move_orders(number: str) -> list[ZOrder]:
    return [o for o in ZOrder.objects.order_by("id") if any(a.get("subscription") == number for a in o.actions)]


def rule(**fields) -> MigrationRule:
    values = {
        "source_plan": plan(SCALE),
        "target_plan": plan(STARTER),
        "starts_on": dt.date(2026, 11, 1),
        **fields,
    }
    found = MigrationRule(**values)
    found.full_clean()
    validate(found)  # as the admin's form does
    found.save()
    return found


@pytest.fixture
def legacy(zuora):
    """Three subscribers of the retiring Scale plan: two due tomorrow (a termed one at its term end, an
    evergreen one at its charged-through date), one due later."""
    zuora.termed = subscribe(zuora, SCALE, dt.date(2025, 12, 20))  # term ends 2026-12-20
    zuora.later = subscribe(zuora, SCALE, dt.date(2025, 12, 24))  # term ends 2026-12-24
    zuora.evergreen = subscribe(zuora, SCALE, dt.date(2025, 6, 20), evergreen=True)
    bill(zuora, zuora.evergreen, dt.date(2026, 12, 20))
    return zuora


def test_a_rule_moves_exactly_the_due_subscriptions_on_their_date_with_no_proration_or_credit(legacy):
    rule()
    run = run_migrations(DAY)
    assert run.ok, run.error
    assert sorted((r["subscription"], r["outcome"]) for r in run.rows) == sorted(
        [(legacy.termed, "moved"), (legacy.evergreen, "moved")]
    )
    for number in (legacy.termed, legacy.evergreen):
        assert plans_of(number) == [STARTER]
        [order] = move_orders(number)
        assert order.actions[0]["effective"] == "2026-12-20"  # term end / charged-through date
        assert order.credit == Decimal(0) and not order.prorated
        record = SyncRecord.objects.get(kind="plan_migration", zuora_subscription_number=number)
        assert record.status == "succeeded", record.reason
    assert plans_of(legacy.later) == [SCALE] and move_orders(legacy.later) == []
    assert current(legacy.termed).version == 2
    assert ZSubscription.objects.get(subscription_number=legacy.termed, version=1).status == "Expired"


def test_the_dry_run_lists_what_the_run_then_does_and_changes_nothing(legacy):
    rule()
    dry = run_migrations(DAY, dry_run=True)
    assert dry.ok and dry.summary["moved"] == 2 and SyncRecord.objects.filter(kind="plan_migration").count() == 0
    assert plans_of(legacy.termed) == [SCALE]
    real = run_migrations(DAY)
    listed = {(r["subscription"], r["target"], r["effective"]) for r in dry.rows}
    assert listed == {(r["subscription"], r["target"], r["effective"]) for r in real.rows}
    assert dry.summary["zuora_reads"] <= 6  # bulk: a handful of ZOQL pages, not one call per subscription


def test_a_second_run_moves_no_one_twice(legacy):
    rule()
    run_migrations(DAY)
    again = run_migrations(DAY)
    assert {r["outcome"] for r in again.rows} == {"scheduled"} or {r["outcome"] for r in again.rows} == set()
    assert len(move_orders(legacy.termed)) == 1 and len(move_orders(legacy.evergreen)) == 1


def test_a_run_killed_half_way_resumes_without_a_duplicate_move(legacy, monkeypatch):
    rule()
    monkeypatch.setattr(migration_run, "SCHEDULE_BATCH", 1)  # one insert per subscription
    real_new_record = migration_run.new_record
    calls = []

    def dies_on_the_second(*args):
        calls.append(args)
        if len(calls) == 2:
            raise SystemError("the worker was killed")
        return real_new_record(*args)

    monkeypatch.setattr(migration_run, "new_record", dies_on_the_second)
    killed = run_migrations(DAY)
    assert not killed.ok and "killed" in killed.error
    assert SyncRecord.objects.filter(kind="plan_migration").count() == 1
    monkeypatch.setattr(migration_run, "new_record", real_new_record)
    resumed = run_migrations(DAY)
    assert [r["outcome"] for r in resumed.rows] == ["moved"]  # the first one had moved before the kill
    assert len(move_orders(legacy.termed)) == 1 and len(move_orders(legacy.evergreen)) == 1


def test_the_customers_choice_and_the_discount_are_honoured_and_the_field_cleared(zuora):
    chooser = subscribe(zuora, SCALE, dt.date(2025, 12, 20), custom={"UpgradePlan__c": "Growth"})
    plain = subscribe(zuora, SCALE, dt.date(2025, 12, 20))
    rule(
        alternative_plan=plan(GROWTH),
        discount_plan=plan("Onboarding"),
        choice_source="zuora",
        choice_field="UpgradePlan__c",
    )
    run = run_migrations(DAY)
    assert run.ok, run.error
    assert sorted(plans_of(chooser)) == sorted([GROWTH, "Onboarding"]) and plans_of(plain) == [STARTER]
    assert current(chooser).custom_fields["UpgradePlan__c"] == ""  # cleared, so it can be used again
    record = SyncRecord.objects.get(zuora_subscription_number=chooser)
    assert record.step_data("order")["chosen"] and record.step_done("clear_choice")


def test_a_quiet_move_runs_under_the_silent_profile_and_restores_it(legacy):
    rule(quiet=True)
    run_migrations(DAY)
    [order] = move_orders(legacy.termed)
    assert order.communication_profile_id == "CP-SILENT"  # no notifications went out for the change
    assert current(legacy.termed).account.communication_profile_id == "CP-STANDARD"


def test_the_silent_profile_is_restored_even_after_a_failed_order(legacy):
    rule(quiet=True)
    legacy.fault("zuora", "success_false", "/v1/orders$", method="POST", reason_message="Invalid subscription")
    run_migrations(DAY)
    record = SyncRecord.objects.get(kind="plan_migration", zuora_subscription_number=legacy.termed)
    assert record.status == "needs_attention" and "Invalid subscription" in record.reason
    assert record.step_done("restore")
    assert current(legacy.termed).account.communication_profile_id == "CP-STANDARD"
    assert plans_of(legacy.termed) == [SCALE]


def test_a_usage_plan_waits_for_its_final_usage(zuora):
    number = subscribe(zuora, API, dt.date(2025, 6, 20), evergreen=True)
    bill(zuora, number, dt.date(2026, 12, 20))
    rule(source_plan=plan(API), moment="charged_through")
    waiting = run_migrations(DAY)
    [row] = waiting.rows
    assert row["outcome"] == "skipped" and "waiting for the final period's usage" in row["reason"]
    assert plans_of(number) == [API]
    UsageRecord.objects.create(
        unique_key="final-day",
        subscription_number=number,
        uom="API call",
        quantity=10,
        start_date=dt.date(2026, 12, 19),
    )
    moved = run_migrations(DAY)
    assert [r["outcome"] for r in moved.rows] == ["moved"] and plans_of(number) == [STARTER]


def test_subscriptions_that_must_not_move_are_skipped_with_the_reason(legacy, settings):
    rule()
    cancelled_by_hand = subscribe(legacy, SCALE, dt.date(2025, 12, 20))
    account = current(cancelled_by_hand).account.account_number
    requests.post(
        f"{legacy.zuora}/v1/orders",
        json={
            "orderDate": "2026-11-27",
            "existingAccountNumber": account,
            "subscriptions": [
                {
                    "subscriptionNumber": cancelled_by_hand,
                    "orderActions": [
                        {"type": "CancelSubscription", "cancelSubscription": {"cancellationPolicy": "EndOfCurrentTerm"}}
                    ],
                }
            ],
        },
        headers=legacy.headers,
        timeout=10,
    ).raise_for_status()
    SyncRecord.objects.create(
        kind="plan_change",
        key="plan_change:x",
        status="succeeded",
        zuora_subscription_number=legacy.evergreen,
        steps={"order": {"done": True, "effective": "2027-01-01"}},
    )
    run = run_migrations(DAY, dry_run=True)
    reasons = {r["subscription"]: r["reason"] for r in run.rows}
    assert reasons[cancelled_by_hand].startswith("pending cancellation")
    assert "a change dated 2027-01-01 is already queued" in reasons[legacy.evergreen]
    assert reasons[legacy.termed] == ""


def test_a_currency_the_target_lacks_is_skipped(zuora):
    number = subscribe(zuora, GROWTH, dt.date(2026, 7, 20), currency="EUR")  # its term ends 2027-07-20
    rule(source_plan=plan(GROWTH), target_plan=plan(STARTER))
    starter = plan(STARTER)
    for charge in starter.charges.all():  # the catalog changed since the rule was saved
        charge.pricing = [p for p in charge.pricing if p["currency"] != "EUR"]
        charge.save()
    [row] = run_migrations(dt.date(2027, 7, 19), dry_run=True).rows
    assert row["subscription"] == number and row["outcome"] == "skipped" and "no price in EUR" in row["reason"]


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"target_plan": SCALE}, "the target is the legacy plan itself"),
        ({"target_plan": "Growth (2024)"}, "retired on 2026-06-30"),
        ({"source_plan": STARTER, "target_plan": SCALE}, "no price in EUR"),
        ({"alternative_plan": GROWTH}, "needs the field where the customer"),
    ],
)
def test_a_rule_zuora_would_bill_wrongly_is_refused_on_save(catalog, admin_client, fields, words):
    form = {
        "name": "",
        "source_plan": plan(fields.get("source_plan", SCALE)).pk,
        "target_plan": plan(fields.get("target_plan", STARTER)).pk,
        "alternative_plan": plan(fields["alternative_plan"]).pk if "alternative_plan" in fields else "",
        "discount_plan": "",
        "choice_source": "",
        "choice_field": "",
        "moment": "term_end",
        "days_ahead": 1,
        "usage_grace_days": 0,
        "starts_on": "2026-11-01",
        "active": "on",
    }
    answer = admin_client.post("/admin/sync/migrationrule/add/", form)
    assert answer.status_code == 200 and words in answer.content.decode()
    assert not MigrationRule.objects.exists()


def test_a_target_retiring_before_the_rules_last_move_and_a_second_active_rule_are_refused(catalog):
    scale = plan(SCALE)
    for charge in scale.charges.all():
        charge.pricing = charge.pricing + [{"currency": "EUR", "price": "2300"}]
        charge.save()
    with pytest.raises(Exception, match="before the rule's last move"):
        rule(source_plan=plan(STARTER), target_plan=scale)
    rule()
    with pytest.raises(Exception, match="another active rule already moves subscribers"):
        rule(target_plan=plan(GROWTH))


def test_the_legacy_report_is_the_migration_dashboard(legacy, admin_client):
    rule()
    legacy.fault("zuora", "success_false", "/v1/orders$", method="POST", remaining=1)
    run_migrations(DAY)
    page = admin_client.get("/admin/catalog/productrateplan/legacy/?days=365").content.decode()
    assert "Scheduled" in page and "Moved this month" in page and "Retry" in page
    assert "3 <small>(2026-12-19)</small>" in page  # subscribers Zuora had on the plan when the run looked
    for garbage in ("abc", "9" * 30, "-5"):
        assert admin_client.get(f"/admin/catalog/productrateplan/legacy/?days={garbage}").status_code == 200
    failed = SyncRecord.objects.get(kind="plan_migration", status="needs_attention")
    answer = admin_client.post(f"/admin/sync/syncrecord/{failed.id}/repair/retry/")
    assert answer.status_code == 302
    failed.refresh_from_db()
    assert failed.status == "succeeded"  # one click: retried and moved


def test_migrate_plans_command_and_its_bad_input(legacy, capsys):
    found = rule()
    call_command("migrate_plans", "--dry-run", "--date", DAY.isoformat())
    out = capsys.readouterr().out
    assert "would move 2" in out and legacy.termed in out and "2026-12-20" in out
    for args, words in (
        (["--date", "tomorrow"], "expected YYYY-MM-DD"),
        (["--rule", "999"], "no such migration rule"),
    ):
        with pytest.raises(CommandError, match=words):
            call_command("migrate_plans", *args)
    MigrationRule.objects.filter(id=found.id).update(active=False)
    with pytest.raises(CommandError, match="paused"):
        call_command("migrate_plans", "--rule", str(found.id))


def test_the_admin_hands_a_dry_run_to_the_workers_and_exports_it(legacy, admin_client):
    found = rule()
    answer = admin_client.post(
        "/admin/sync/migrationrule/", {"action": "dry_run", "_selected_action": [found.id]}, follow=True
    )
    assert answer.status_code == 200
    run = MigrationRun.objects.get(dry_run=True)
    assert run.ok
    page = admin_client.get(f"/admin/sync/migrationrun/{run.id}/change/").content.decode()
    assert "outcome" in page
    exported = admin_client.get(f"/admin/sync/migrationrun/{run.id}/csv/")
    assert exported.status_code == 200 and exported.content.decode().startswith("outcome,subscription")


def test_a_choice_made_on_the_kommo_deal_is_honoured_noted_and_cleared(zuora):
    lead = 24312346
    requests.patch(
        f"{zuora.kommo}/api/v4/leads/{lead}",
        json={"custom_fields_values": [{"field_id": 881280, "values": [{"value": "Growth"}]}]},
        headers={"Authorization": f"Bearer {django_settings.SANDBOX_KOMMO_TOKEN}"},
        timeout=10,
    ).raise_for_status()
    number = subscribe(zuora, SCALE, dt.date(2025, 12, 20), custom={"KommoLeadId__c": str(lead)})
    rule(alternative_plan=plan(GROWTH), choice_source="kommo", choice_field="881280")
    [row] = run_only(DAY, dry_run=True).rows
    assert "if the customer chose it in Kommo" in row["target"]
    run_migrations(DAY)
    assert plans_of(number) == [GROWTH]
    fields = {f["field_id"]: f["values"][0]["value"] for f in zuora.lead(lead).custom_fields_values or []}
    assert 881280 not in fields  # cleared for the next refresh (Kommo clears with "values": null)
    assert f"{number} moves from Scale (retiring) to Growth on 2026-12-20" in zuora.notes(lead)[-1]
    assert "the customer's choice" in zuora.notes(lead)[-1]


def test_a_restore_zuora_refused_at_first_is_retried_by_the_sweep_until_done(legacy, settings, monkeypatch):
    from sync.clients.errors import TransientError
    from sync.clients.zuora import ZuoraClient
    from sync.tasks import run_sync

    settings.ZKBRIDGE_MAX_ATTEMPTS = 1
    rule(quiet=True)
    legacy.fault("zuora", "success_false", "/v1/orders$", method="POST")
    real_update = ZuoraClient.update_account

    def restore_fails(self, number, changes):  # Zuora is down just when the profile goes back
        if changes.get("communicationProfileId") == "CP-STANDARD":
            raise TransientError("Zuora server error (503)")
        return real_update(self, number, changes)

    monkeypatch.setattr(ZuoraClient, "update_account", restore_fails)
    run_only(DAY)
    record = SyncRecord.objects.get(kind="plan_migration", zuora_subscription_number=legacy.termed)
    run_sync(record.id)
    record.refresh_from_db()
    assert record.status == "failed" and record.step_data("silence")["switched"]
    assert not record.step_done("restore")
    assert current(legacy.termed).account.communication_profile_id == "CP-SILENT"
    monkeypatch.setattr(ZuoraClient, "update_account", real_update)
    dispatch_due()  # the minute sweep
    record.refresh_from_db()
    assert record.step_done("restore")
    assert current(legacy.termed).account.communication_profile_id == "CP-STANDARD"


def test_the_demos_legacy_subscriber_shows_in_the_dashboard_and_a_dry_run_moves_it(catalog, admin_client):
    """The README's walkthrough: Hooli, billed on "Growth (2024)" since 2025, is on the dashboard's
    retired-plans chart after the subscription refresh, and a rule's dry run today lists its move."""
    from sandbox.demo import seed_legacy_customer
    from sync.lifecycle.subscription import refresh_all
    from zkbridge.business_time import business_today

    hooli = seed_legacy_customer()
    assert refresh_all() == 1
    page = admin_client.get("/admin/").content.decode()
    legacy = page[page.index('id="zk-legacy"') : page.index('id="zk-renewals"')]
    assert 'data-label="zkbridge Platform / Growth (2024)" data-total="1"' in legacy
    rule = MigrationRule.objects.create(
        source_plan=plan("Growth (2024)"), target_plan=plan(GROWTH), moment=MigrationRule.Moment.CHARGED_THROUGH
    )
    assert rule.starts_on == business_today()  # "Starts on" defaults to today
    run = run_migrations(business_today(), rule_id=rule.id, dry_run=True)
    assert run.ok, run.error
    [row] = run.rows
    assert (row["subscription"], row["outcome"], row["target"]) == (
        hooli.subscription_number,
        "move",
        "zkbridge Platform / Growth",
    )
    assert row["effective"] == str(business_today() + dt.timedelta(days=1))
    shown = admin_client.get(f"/admin/sync/migrationrun/{run.id}/change/").content.decode()
    assert "1 would move · 0 skipped" in shown and "zkbridge Platform / Growth (2024): 1" in shown
    assert plan("Growth (2024)").zuora_id not in shown.split('id="content"')[1]  # names, not internal ids
