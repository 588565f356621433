"""After Won, end to end over real HTTP: a salesperson edits a billed deal in the Kommo emulator, Kommo's
lead `update` / `status` web hooks reach zkbridge on a live server, and the flows change the existing
Zuora subscription in the Zuora emulator — which keeps versions, charged-through dates, credits and
prorations as Zuora does, so each test can prove what was (and was not) prorated."""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal

import pytest
import requests
from django.conf import settings as django_settings
from django.utils import timezone

from catalog.models import ProductRatePlan
from sandbox.models import Fault, KTask, KWebhookDelivery, ZIdempotency, ZOrder, ZSubscription
from sync.lifecycle.models import Subscription
from sync.locks import release, try_lock
from sync.models import SyncRecord
from sync.reconcile import run_reconciliation
from sync.reconcile.fixes import fix
from sync.reconcile.models import Discrepancy
from sync.records import ensure_record
from sync.tasks import dispatch_due, run_sync
from tests.builders import offered_in_kommo
from tests.conftest import map_plan, requires_postgres
from zkbridge.business_time import business_today, start_of_business_day

ACME_EXPANSION, SOLO = 24312346, 24312349
PLAN, CHANGE_DATE, CANCEL_DATE = 881234, 881271, 881270


def hear_edits(env) -> None:
    """Kommo's web hook for lead edits as well as stage changes (kommo_webhook --register does the same)."""
    requests.post(
        f"{env.kommo}/api/v4/webhooks",
        json={"destination": env.webhook_url, "settings": ["status_lead", "update_lead"]},
        headers={"Authorization": f"Bearer {django_settings.SANDBOX_KOMMO_TOKEN}"},
        timeout=10,
    ).raise_for_status()


@pytest.fixture
def billed(catalog):
    """ACME's expansion deal billed on Starter; Kommo's web hooks for lead edits and stage changes on."""
    hear_edits(catalog)
    catalog.win(ACME_EXPANSION)
    deal = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    assert deal.status == "succeeded", deal.reason
    return catalog


def after_own_write() -> None:
    """Kommo's times are whole seconds: an edit that keeps the billed plan, made in the same second as
    zkbridge's own field write, is indistinguishable from Kommo's report of that write. A person edits
    later; tests whose edits keep the plan wait for the next second as they would."""
    deal = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    time.sleep(max(0.0, deal.step_data("lead_fields")["updated_at"] + 1 - time.time()))


def edit_lead(env, lead_id: int, **fields) -> None:
    """A salesperson edits the deal in Kommo (through Kommo's API, which fires the update web hook)."""
    values = [{"field_id": fid, "values": [{"value": value}]} for fid, value in fields.pop("custom", {}).items()]
    body = {**fields, **({"custom_fields_values": values} if values else {})}
    requests.patch(
        f"{env.kommo}/api/v4/leads/{lead_id}",
        json=body,
        headers={"Authorization": f"Bearer {django_settings.SANDBOX_KOMMO_TOKEN}"},
        timeout=30,
    ).raise_for_status()


def versions(number: str) -> list[ZSubscription]:
    return list(ZSubscription.objects.filter(subscription_number=number).order_by("version"))


def current(number: str) -> ZSubscription:
    return versions(number)[-1]


def number() -> str:
    return SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}").zuora_subscription_number


def records(kind: str) -> list[SyncRecord]:
    return list(SyncRecord.objects.filter(kind=kind, kommo_lead_id=ACME_EXPANSION).order_by("id"))


def change_orders() -> list[ZOrder]:
    return [o for o in ZOrder.objects.order_by("id") if o.actions]


def bill_through(env, day: dt.date) -> None:
    requests.post(
        f"{env.url}/sandbox/control/zuora/subscriptions/{number()}/bill",
        data=json.dumps({"through": day.isoformat()}),
        timeout=10,
    ).raise_for_status()


def unix(day: dt.date) -> int:
    return int(start_of_business_day(day).timestamp()) + 12 * 3600


# --- the preview in Zuora's shape -------------------------------------------------------------------------
def test_the_won_note_reads_mrr_from_the_charges_of_zuoras_preview(billed):
    answer = requests.post(
        f"{billed.zuora}/v1/orders/preview",
        json={
            "orderDate": "2026-11-27",
            "previewAccountInfo": {"currency": "USD", "billCycleDay": 1},
            "subscriptions": [
                {
                    "orderActions": [
                        {
                            "type": "CreateSubscription",
                            "createSubscription": {
                                "subscribeToRatePlans": [
                                    {"productRatePlanId": current(number()).rate_plans[0]["productRatePlanId"]}
                                ]
                            },
                        }
                    ]
                }
            ],
        },
        headers=bearer(billed),
        timeout=10,
    ).json()
    [metric] = answer["previewResult"]["chargeMetrics"]
    assert "cmrr" not in metric and metric["charges"][0]["cmrr"]["regular"] == 300.0  # on each charge, as Zuora
    assert "$300.00 MRR" in billed.notes(ACME_EXPANSION)[0]


def bearer(env) -> dict[str, str]:
    token = requests.post(
        f"{env.zuora}/oauth/token",
        data={
            "client_id": django_settings.SANDBOX_ZUORA_CLIENT_ID,
            "client_secret": django_settings.SANDBOX_ZUORA_CLIENT_SECRET,
            "grant_type": "client_credentials",
        },
        timeout=10,
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


# --- plan changes ------------------------------------------------------------------------------------------
def test_an_upgrade_applies_immediately_as_one_change_plan_order_on_the_same_subscription(billed):
    edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Growth"})
    [record] = records("plan_change")
    assert record.status == "succeeded", record.reason
    [v1, v2] = versions(number())
    assert (v1.status, v2.status, v2.version) == ("Expired", "Active", 2)
    assert [p["ratePlanName"] for p in v1.rate_plans] == ["Starter"]  # the old version keeps its own plans
    assert [p["ratePlanName"] for p in v2.billed_plans] == ["Growth"]
    [order] = change_orders()
    assert order.actions[0]["type"] == "ChangePlan" and order.actions[0]["effective"] == str(business_today())
    assert len(billed.subscriptions(ACME_EXPANSION)) == 2 and ZSubscription.objects.count() == 2  # no new one
    note = billed.notes(ACME_EXPANSION)[-1]
    assert note == (
        f"Zuora: subscription {number()} changes from Starter to Growth on {business_today()} "
        f"(upgrade, immediately, prorated); MRR $300.00 → $1,200.00."
    )
    mirror = Subscription.objects.get(number=number())
    assert mirror.version == 2 and [p["name"] for p in mirror.rate_plans] == ["Growth"]
    deal = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    assert [p.name for p in deal.rate_plans.all()] == ["Growth"]  # the deal now names what it is billed on


def test_a_downgrade_waits_for_the_end_of_the_billing_period_with_no_proration_and_no_credit(billed):
    after_own_write()  # its second edit goes back to the billed plan
    edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Growth"})
    start = current(number()).term_start_date
    charged_through = dt.date(start.year + (start.month // 12), start.month % 12 + 1, min(start.day, 28))
    bill_through(billed, charged_through)
    edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Starter"})
    [_, downgrade] = records("plan_change")
    assert downgrade.status == "succeeded", downgrade.reason
    [_, order] = change_orders()
    assert order.actions[0]["effective"] == charged_through.isoformat()
    assert order.request["subscriptions"][0]["orderActions"][0]["changePlan"]["effectivePolicy"] == (
        "EffectiveEndOfBillingPeriod"
    )
    assert order.credit == 0 and not order.prorated  # aligned to the charged-through date
    assert "downgrade, at the end of the billing period, no proration, no credit)" in billed.notes(ACME_EXPANSION)[-1]
    assert [v.status for v in versions(number())] == ["Expired", "Expired", "Active"]
    # The Zuora emulator's page shows the pending downgrade with its date, and custom fields as fields.
    page = requests.get(f"{billed.url}/sandbox/zuora/", timeout=10).text
    latest = page[page.index(f'id="sub-{number()}-v3"') :].split("</tr>")[0]
    assert "change pending" in latest and f"Starter — <b>starts {charged_through}</b>" in latest
    assert f"Growth — <b>removed from {charged_through}</b>" in latest
    assert f"KommoLeadId: <b>{ACME_EXPANSION}</b>" in latest and "{" not in latest


def test_a_change_dated_by_the_lead_field(billed, settings):
    settings.ZKBRIDGE_UPGRADE_TIMING = "date_field"
    day = business_today() + dt.timedelta(days=40)
    edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Growth", CHANGE_DATE: unix(day)})
    [record] = records("plan_change")
    assert record.status == "succeeded", record.reason
    [order] = change_orders()
    assert order.actions[0]["effective"] == day.isoformat()
    assert order.request["subscriptions"][0]["orderActions"][0]["changePlan"]["effectivePolicy"] == "SpecificDate"


def test_a_change_date_before_the_term_start_is_refused_with_the_reason(billed, settings):
    settings.ZKBRIDGE_UPGRADE_TIMING = "date_field"
    edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Growth", CHANGE_DATE: unix(dt.date(2020, 1, 1))})
    [record] = records("plan_change")
    assert record.status == "needs_attention" and "before the subscription's term start" in record.reason
    assert change_orders() == [] and len(versions(number())) == 1


def test_a_per_mapping_timing_overrides_the_global_one(billed):
    from catalog.models import PlanMapping

    PlanMapping.objects.filter(kommo_value="Growth", currency="USD").update(upgrade_timing="end_of_billing_period")
    edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Growth"})
    [order] = change_orders()
    assert order.request["subscriptions"][0]["orderActions"][0]["changePlan"]["effectivePolicy"] == (
        "EffectiveEndOfBillingPeriod"
    )
    assert not order.prorated and order.credit == 0


def test_a_change_to_an_unmapped_plan_needs_attention_and_sends_nothing(billed):
    edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Platinum"})
    [record] = records("plan_change")
    assert record.status == "needs_attention" and "no plan mapping for plan 'Platinum'" in record.reason
    assert change_orders() == [] and len(versions(number())) == 1
    assert any("Platinum" in t.text for t in billed.tasks(ACME_EXPANSION))


def test_a_change_to_a_plan_not_yet_effective_needs_attention(billed):
    map_plan("Enterprise", "Enterprise (2027)")
    offered_in_kommo("Enterprise")  # (zkbridge offers it on its effective date; an administrator added it early)
    edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Enterprise"})
    [record] = records("plan_change")
    assert record.status == "needs_attention" and "Enterprise (2027)" in record.reason
    assert change_orders() == []


def test_an_edit_that_changes_nothing_billable_sends_nothing(billed):
    after_own_write()
    notes_before = len(billed.notes(ACME_EXPANSION))
    edit_lead(billed, ACME_EXPANSION, name="ACME expansion (renamed)")
    [record] = records("plan_change")
    assert record.status == "ignored" and "nothing billable changed" in record.reason
    assert change_orders() == [] and len(billed.notes(ACME_EXPANSION)) == notes_before


def test_two_identical_changes_make_one_order_and_an_old_event_never_rolls_back(billed):
    after_own_write()
    edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Growth"})
    first_update = KWebhookDelivery.objects.filter(body__contains="update").order_by("id").last()
    edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Growth"})  # the same change again
    assert len(change_orders()) == 1
    edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Starter"})
    assert len(change_orders()) == 2
    # The first update (plan Growth) arrives again, late: the lead is re-read; Starter stays.
    late = requests.post(billed.webhook_url, data=first_update.body + "&late=1", timeout=10)
    assert late.status_code == 200 and late.json()["changes"] == 1
    assert len(change_orders()) == 2
    assert [p["ratePlanName"] for p in current(number()).billed_plans] == ["Starter"]
    assert records("plan_change")[-1].status == "ignored"


def test_a_change_that_arrives_while_another_is_in_flight_waits_its_turn(billed):
    after_own_write()
    held = try_lock(f"subscription:{number()}")  # another worker is changing this subscription
    try:
        edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Growth"})
        [record] = records("plan_change")
        assert record.status == "retrying" and "in flight" in record.reason
        assert record.attempts == 0  # waiting is not a failed attempt
        assert change_orders() == []
    finally:
        release(held)
    SyncRecord.objects.filter(id=record.id).update(next_attempt_at=timezone.now())  # its retry is due
    dispatch_due()  # the workers' sweep hands the due retry over
    record.refresh_from_db()
    assert record.status == "succeeded", record.reason
    assert len(change_orders()) == 1


def test_changes_apply_in_the_order_they_arrived(billed):
    after_own_write()
    key = f"plan_change:{ACME_EXPANSION}:x"
    earlier, _ = ensure_record("plan_change", key, enqueue=False, kommo_lead_id=ACME_EXPANSION)
    edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Growth"})
    assert records("plan_change") == [earlier]  # a change still waiting for a worker covers the newer edit
    SyncRecord.objects.filter(id=earlier.id).update(status="running")  # now a worker has it in hand
    edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Starter"})
    edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Growth"})
    later = records("plan_change")[-1]
    assert later.id > earlier.id and later.status == "retrying" and f"waits for {key}" in later.reason
    SyncRecord.objects.filter(id=earlier.id).update(status="pending")
    assert run_sync(earlier.id) == "succeeded"  # the earlier record re-reads the lead: Growth
    SyncRecord.objects.filter(id=later.id).update(next_attempt_at=None)
    assert run_sync(later.id) == "ignored"  # nothing left to change
    assert len(change_orders()) == 1


def test_a_change_on_a_deal_zkbridge_never_billed_needs_attention(billed):
    record, _ = ensure_record("plan_change", f"plan_change:{SOLO}:x", enqueue=False, kommo_lead_id=SOLO)
    assert run_sync(record.id) == "needs_attention"
    record.refresh_from_db()
    assert "zkbridge never billed Kommo lead" in record.reason and ZOrder.objects.count() == 1
    edit_lead(billed, SOLO, custom={PLAN: "Growth"})  # an unbilled lead's edits make no records at all
    assert SyncRecord.objects.filter(kommo_lead_id=SOLO).count() == 1


# --- cancellation and reopening ----------------------------------------------------------------------------
def test_lost_cancels_at_the_end_of_the_current_term_by_default(billed):
    billed.win(ACME_EXPANSION, status_id=django_settings.KOMMO_LOST_STATUS_ID)
    [record] = records("cancellation")
    assert record.status == "succeeded", record.reason
    sub = current(number())
    assert sub.status == "Cancelled" and sub.subscription_end_date == sub.term_end_date
    [order] = change_orders()
    assert order.actions[0]["policy"] == "EndOfCurrentTerm" and order.credit == 0
    assert f"billing ends on {sub.term_end_date}." in billed.notes(ACME_EXPANSION)[-1]
    assert Subscription.objects.get(number=number()).ends_on == sub.term_end_date


def test_cancel_at_the_end_of_the_last_invoiced_period(billed, settings):
    settings.ZKBRIDGE_CANCEL_POLICY = "EndOfLastInvoicePeriod"
    day = current(number()).term_start_date + dt.timedelta(days=31)
    bill_through(billed, day)
    billed.win(ACME_EXPANSION, status_id=143)
    sub = current(number())
    assert sub.status == "Cancelled" and sub.subscription_end_date == day
    assert change_orders()[0].credit == 0


def test_cancel_on_the_deals_date_and_refuse_one_before_the_start(billed, settings):
    settings.ZKBRIDGE_CANCEL_POLICY = "SpecificDate"
    edit_lead(billed, ACME_EXPANSION, custom={CANCEL_DATE: unix(dt.date(2020, 1, 1))})
    billed.win(ACME_EXPANSION, status_id=143)
    [record] = records("cancellation")
    assert record.status == "needs_attention" and "before the subscription's start" in record.reason
    assert change_orders() == []
    day = business_today() + dt.timedelta(days=60)
    edit_lead(billed, ACME_EXPANSION, custom={CANCEL_DATE: unix(day)})  # the salesperson fixes the date
    [first, fixed] = records("cancellation")
    assert fixed.status == "succeeded" and current(number()).subscription_end_date == day
    assert first.status == "resolved" and f"superseded by {fixed.key}" in first.reason  # its task is closed
    [task] = billed.tasks(ACME_EXPANSION)
    assert task.is_completed and "a later cancellation applied" in task.result
    [order] = change_orders()
    assert order.actions[0]["policy"] == "SpecificDate"


def test_the_churn_list_cancels_like_lost(billed, settings):
    settings.ZKBRIDGE_CHURN_STATUS_IDS = [143, 39402112]
    billed.win(ACME_EXPANSION, status_id=39402112)
    assert current(number()).status == "Cancelled"


def test_won_again_before_invoicing_undoes_the_cancellation(billed):
    billed.win(ACME_EXPANSION, status_id=143)
    assert current(number()).status == "Cancelled"
    billed.win(ACME_EXPANSION)
    [record] = records("reopening")
    assert record.status == "succeeded", record.reason
    assert [v.status for v in versions(number())] == ["Active"]  # rolled back to the previous version
    assert change_orders() == []  # the cancellation order is deleted
    assert "cancellation of" in billed.notes(ACME_EXPANSION)[-1] and "undone" in billed.notes(ACME_EXPANSION)[-1]
    assert Subscription.objects.get(number=number()).status == "Active"


def test_won_again_after_invoicing_needs_a_person_with_zuoras_reason(billed):
    billed.win(ACME_EXPANSION, status_id=143)
    bill_through(billed, current(number()).term_start_date + dt.timedelta(days=31))
    billed.win(ACME_EXPANSION)
    [record] = records("reopening")
    assert record.status == "needs_attention" and "have been invoiced" in record.reason
    assert current(number()).status == "Cancelled"
    assert KTask.objects.filter(entity_id=ACME_EXPANSION, text__contains="cannot undo its cancellation").exists()


# --- reconciliation and renewals ---------------------------------------------------------------------------
def test_a_subscription_amended_in_zuora_is_one_plan_differs_finding_applied_in_one_click(billed):
    growth = ProductRatePlan.objects.get(name="Growth")
    answer = requests.post(  # someone changes the plan in Zuora's UI
        f"{billed.zuora}/v1/orders",
        json={
            "orderDate": str(business_today()),
            "existingAccountNumber": current(number()).account.account_number,
            "subscriptions": [
                {
                    "subscriptionNumber": number(),
                    "orderActions": [
                        {
                            "type": "ChangePlan",
                            "changePlan": {
                                "productRatePlanId": current(number()).rate_plans[0]["productRatePlanId"],
                                "effectivePolicy": "EffectiveImmediately",
                                "newProductRatePlan": {"productRatePlanId": growth.zuora_id},
                            },
                        }
                    ],
                }
            ],
        },
        headers=bearer(billed),
        timeout=10,
    ).json()
    assert answer["success"], answer
    run = run_reconciliation()
    assert run.ok
    kinds = list(run.discrepancies.values_list("kind", flat=True))
    assert kinds == ["wrong_plan"]  # no "2 subscriptions carry this lead: A-S…, A-S…"
    [row] = run.discrepancies.all()
    assert "Growth" in row.detail and "Starter" in row.detail and row.action == "apply_plan"
    assert fix(row).text == "plan change queued"
    assert [p["ratePlanName"] for p in current(number()).billed_plans] == ["Starter"]
    assert Discrepancy.objects.get(id=row.id).fixed_at is not None
    assert run_reconciliation().summary["discrepancies"] == 0


def test_the_won_deal_mirror_names_its_rate_plans_and_mrr(billed):
    """Written from the order zkbridge placed (no extra call): what the migration rules and the Subscriptions
    list read, and the MRR the dashboard sums per month of renewal."""
    sub = current(number())
    mirror = Subscription.objects.get(number=number())
    assert [(p["productRatePlanId"], p["name"]) for p in mirror.rate_plans] == [
        (sub.rate_plans[0]["productRatePlanId"], "Starter")
    ]
    assert mirror.mrr == Decimal(sub.rate_plans[0]["charges"][0]["mrr"]) > 0


def test_revops_list_the_subscriptions_ending_soon(billed, admin_client):
    sub = current(number())
    ZSubscription.objects.filter(id=sub.id).update(term_end_date=business_today() + dt.timedelta(days=20))
    bill_through(billed, business_today() + dt.timedelta(days=5))
    from sync.lifecycle.subscription import refresh_all

    Subscription.objects.update(rate_plans=[], mrr=None)  # whatever the mirror held, the refresh restates it
    assert refresh_all() == 1  # in bulk: current versions, their rate plans and charges
    mirror = Subscription.objects.get(number=number())
    assert mirror.term_end == business_today() + dt.timedelta(days=20)
    assert mirror.charged_through == business_today() + dt.timedelta(days=5)
    assert [(p["productRatePlanId"], p["name"]) for p in mirror.rate_plans] == [
        (sub.rate_plans[0]["productRatePlanId"], "Starter")
    ]
    assert mirror.rate_plans[0]["id"] and mirror.mrr == Decimal(sub.rate_plans[0]["charges"][0]["mrr"])
    page = admin_client.get("/admin/sync/subscription/?ends_within=30")
    assert page.status_code == 200 and number().encode() in page.content
    assert b"ACME" in page.content  # the deal, by name
    assert number().encode() not in admin_client.get("/admin/sync/subscription/?ends_within=7").content
    for garbage in ("abc", "-1", "9" * 40, "%00"):
        assert admin_client.get(f"/admin/sync/subscription/?ends_within={garbage}").status_code in (200, 302)


def test_a_renewal_callout_refreshes_the_mirror(billed, settings):
    settings.ZUORA_CALLOUT_USERNAME, settings.ZUORA_CALLOUT_PASSWORD = "zuora", "callout-password"
    ZSubscription.objects.filter(id=current(number()).id).update(term_end_date=dt.date(2028, 11, 27))
    bill_through(billed, dt.date(2027, 1, 1))
    body = {
        "eventType": "SubscriptionRenewed",
        "accountNumber": current(number()).account.account_number,
        "subscriptionNumber": number(),
    }
    answer = requests.post(f"{billed.url}/webhooks/zuora/", json=body, auth=("zuora", "callout-password"), timeout=10)
    assert answer.status_code == 200, answer.text
    mirror = Subscription.objects.get(number=number())
    assert mirror.term_end == dt.date(2028, 11, 27) and mirror.charged_through == dt.date(2027, 1, 1)


# --- resumable and idempotent like the won flow ---------------------------------------------------------------
def answers_lost_then_keys_forgotten(env, method: str, path: str):
    """Zuora does the work but every answer is lost; a retry comes after Zuora forgot the Idempotency-Key
    (24 hours): only the current-state check before writing prevents a second order."""
    return env.fault("zuora", "drop_after_commit", path, method=method)


def forget_and_heal() -> None:
    Fault.objects.all().delete()
    ZIdempotency.objects.all().delete()


def test_a_change_order_whose_answer_was_lost_is_found_not_sent_twice(billed):
    after_own_write()
    answers_lost_then_keys_forgotten(billed, "POST", "/v1/orders$")
    edit_lead(billed, ACME_EXPANSION, custom={PLAN: "Growth"})
    [record] = records("plan_change")
    assert record.status == "retrying"
    assert len(change_orders()) == 1  # Zuora did it; the answer never came back
    forget_and_heal()
    SyncRecord.objects.filter(id=record.id).update(next_attempt_at=None)
    assert run_sync(record.id) == "succeeded"
    record.refresh_from_db()
    assert record.step_data("order")["found"] and len(change_orders()) == 1 and len(versions(number())) == 2
    assert billed.notes(ACME_EXPANSION)[-1].count("from Starter to Growth") == 1


def test_a_cancellation_whose_answer_was_lost_is_found_and_a_lost_undo_answer_too(billed):
    answers_lost_then_keys_forgotten(billed, "POST", "/v1/orders$")
    billed.win(ACME_EXPANSION, status_id=143)
    [cancel] = records("cancellation")
    assert cancel.status == "retrying" and len(change_orders()) == 1
    forget_and_heal()
    SyncRecord.objects.filter(id=cancel.id).update(next_attempt_at=None)
    assert run_sync(cancel.id) == "succeeded" and len(change_orders()) == 1
    answers_lost_then_keys_forgotten(billed, "DELETE", "/v1/orders/O-")
    billed.win(ACME_EXPANSION)
    [reopen] = records("reopening")
    assert reopen.status == "retrying" and change_orders() == []  # undone; the answer lost
    forget_and_heal()
    SyncRecord.objects.filter(id=reopen.id).update(next_attempt_at=None)
    assert run_sync(reopen.id) == "succeeded", reopen.reason
    assert [v.status for v in versions(number())] == ["Active"] and change_orders() == []


def test_a_reopening_after_the_cancellation_took_effect_needs_a_person(billed):
    billed.win(ACME_EXPANSION, status_id=143)
    ZSubscription.objects.filter(id=current(number()).id).update(subscription_end_date=business_today())
    billed.win(ACME_EXPANSION)
    [record] = records("reopening")
    assert record.status == "needs_attention" and "took effect on" in record.reason


def test_the_demo_pages_let_a_stranger_change_the_plan_and_lose_the_deal(billed, client):
    page = client.get("/sandbox/kommo/")
    assert b"Change plan" in page.content and b"Move to Lost" in page.content
    assert client.post(f"/sandbox/kommo/demo/leads/{ACME_EXPANSION}/plan/", {"plan": "Growth"}).status_code == 302
    assert [p["ratePlanName"] for p in current(number()).billed_plans] == ["Growth"]
    client.post(f"/sandbox/kommo/demo/leads/{ACME_EXPANSION}/move/", {"status_id": 143})
    assert current(number()).status == "Cancelled"
    assert f"<b>{number()}</b> v3<br>Cancelled, ends ".encode() in client.get("/sandbox/zuora/").content


def test_kommos_report_of_zkbridges_own_field_write_is_not_a_change(catalog):
    hear_edits(catalog)
    catalog.win(ACME_EXPANSION)
    [own] = [d for d in KWebhookDelivery.objects.order_by("id") if "leads%5Bupdate%5D" in d.body]
    # Kommo is slow: its report of the won flow's field write arrives after the deal was billed.
    late = requests.post(catalog.webhook_url, data=own.body + "&late=1", timeout=10)
    assert late.status_code == 200 and late.json()["changes"] == 0
    assert SyncRecord.objects.filter(kommo_lead_id=ACME_EXPANSION).count() == 1


def test_a_salespersons_change_in_the_same_second_as_zkbridges_write_is_still_seen(catalog, monkeypatch):
    """Kommo's clock is stopped, so zkbridge's field write and the salesperson's edit certainly share their
    updated_at: only the plan tells the edit from the echo of zkbridge's own write."""
    import sandbox.kommo

    second = int(time.time())
    monkeypatch.setattr(sandbox.kommo, "unix_now", lambda: second)
    hear_edits(catalog)
    catalog.win(ACME_EXPANSION)
    edit_lead(catalog, ACME_EXPANSION, custom={PLAN: "Growth"})
    deal = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    assert deal.own_write_at == catalog.lead(ACME_EXPANSION).updated_at == second
    assert [p["ratePlanName"] for p in current(number()).billed_plans] == ["Growth"]


def test_more_seats_on_the_same_plan_is_one_update_product_order(billed):
    from catalog.models import PlanMapping
    from sandbox.kommo_webhooks import fire_webhooks
    from sandbox.models import KLead

    seats = PlanMapping.objects.create(kind="product", kommo_value="770002", currency="USD", label="Growth seats")
    seats.mapped_plans.create(product_rate_plan=ProductRatePlan.objects.get(name="Growth"))
    lead = KLead.objects.get(id=ACME_EXPANSION)

    def sell(quantity: int) -> None:  # the salesperson sets the product's quantity on the deal
        lead.catalog_elements = [{"id": 770002, "metadata": {"quantity": quantity, "catalog_id": 12001}}]
        lead.updated_at += 1
        lead.save()
        fire_webhooks("update", lead, lead.status_id)

    sell(10)
    [first] = records("plan_change")
    assert first.status == "succeeded", first.reason
    assert sorted(p["ratePlanName"] for p in current(number()).billed_plans) == ["Growth", "Starter"]
    sell(15)
    [_, more] = records("plan_change")
    assert more.status == "succeeded", more.reason
    [_, order] = change_orders()
    [action] = order.request["subscriptions"][0]["orderActions"]
    assert action["type"] == "UpdateProduct"
    # a JSON number, as Zuora's schema says
    assert action["updateProduct"]["chargeUpdates"][0]["pricing"]["recurringPerUnit"]["quantity"] == 15
    growth = next(p for p in current(number()).billed_plans if p["ratePlanName"] == "Growth")
    assert growth["charges"][0]["quantity"] == "15" and growth["charges"][0]["mrr"] == "1800.00"
    assert "from Growth × 10, Starter to Starter, Growth seats × 15 on" in billed.notes(ACME_EXPANSION)[-1]
    assert "upgrade, immediately" in billed.notes(ACME_EXPANSION)[-1]
    sell(15)  # the same quantity again: nothing sent
    assert records("plan_change")[-1].status == "ignored" and len(change_orders()) == 2


@requires_postgres
def test_two_deliveries_about_one_deal_at_once_make_one_lifecycle_record(transactional_db, settings):
    """ "A cancellation already waits" is checked, then one inserted: the second delivery waits for the first to
    commit (the deal's row is locked) and then finds its record, instead of adding a second."""
    import threading

    from django.db import connection, transaction

    from sync.lifecycle.routing import lifecycle_records
    from sync.models import WebhookEvent
    from sync.webhooks.kommo import LeadEvent

    settings.ZKBRIDGE_CHURN_STATUS_IDS = [143]
    SyncRecord.objects.create(
        kind="deal_won", key="deal_won:7", kommo_lead_id=7, status="succeeded", zuora_subscription_number="A-S7"
    )
    lost = LeadEvent(action="status", lead_id=7, status_id=143, pipeline_id=1, entity={"id": "7"})
    deliveries = [WebhookEvent.objects.create(source="kommo", body=f"d{n}", dedup_key=f"d{n}") for n in range(2)]
    first_in, release, made = threading.Event(), threading.Event(), {}

    def deliver(n: int) -> None:
        try:
            if n == 1:
                first_in.wait(5)
            with transaction.atomic():
                made[n] = lifecycle_records([lost], deliveries[n], "kommo")
                if n == 0:
                    first_in.set()
                    release.wait(5)  # the first delivery's transaction stays open a while
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    assert first_in.wait(5)
    threads[1].join(0.5)
    assert threads[1].is_alive()  # the second waits for the first's commit…
    release.set()
    for thread in threads:
        thread.join(10)
    assert made == {0: 1, 1: 0}  # …and then finds the cancellation it made
    assert SyncRecord.objects.filter(kind="cancellation", kommo_lead_id=7).count() == 1
