"""What a real Zuora tenant and Kommo account refuse and answer, as their own definitions say (zuora-sdk's
models and texts, Kommo's v4 documentation): the emulators behave so, and zkbridge sends what passes.

Each defect the vendors' definitions revealed has its test here or beside its feature: a ChangePlan naming two
plans, trigger dates on an end-of-period change, termed subscribers skipped by migrations (their
SubscriptionEndDate read as a cancellation), subscribers already moved in Zuora moved again."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
import requests
from django.conf import settings as django_settings

from sandbox.common import set_setting
from sandbox.models import ZAccount, ZOrder
from sync.clients.zuora import ZuoraClient
from sync.models import ApiCall, SyncRecord
from tests.test_migrations import (
    DAY,
    GROWTH,
    SCALE,
    STARTER,
    bill,
    current,
    move_orders,
    plan,
    plans_of,
    rule,
    run_migrations,
    subscribe,
)
from tests.test_migrations import zuora as zuora  # noqa: F401 - the fixture

TODAY = dt.date.today().isoformat()


def order_on(env, number: str, *actions: dict, preview: bool = False) -> requests.Response:
    sub = current(number)
    body = {
        "orderDate": TODAY,
        "existingAccountNumber": sub.account.account_number,
        "subscriptions": [{"subscriptionNumber": number, "orderActions": list(actions)}],
    }
    if preview:
        body["previewOptions"] = {"previewTypes": ["ChargeMetrics"], "previewThruType": "TermEnd"}
    path = "/v1/orders/preview" if preview else "/v1/orders"
    return requests.post(f"{env.zuora}{path}", json=body, headers=env.headers, timeout=10)


def rate_plan_id(env, number: str, name: str) -> str:
    body = requests.get(f"{env.zuora}/v1/subscriptions/{number}", headers=env.headers, timeout=10).json()
    return next(p["id"] for p in body["ratePlans"] if p["ratePlanName"] == name and p.get("lastChangeType") != "Remove")


def change_plan(rate_plan: str, to: str, policy: str = "SpecificDate", **extra) -> dict:
    action = {
        "type": "ChangePlan",
        "changePlan": {
            "ratePlanId": rate_plan,
            "effectivePolicy": policy,
            "newProductRatePlan": {"productRatePlanId": plan(to).zuora_id},
            **extra,
        },
    }
    if policy == "SpecificDate":
        action["triggerDates"] = [{"name": "ContractEffective", "triggerDate": TODAY}]
    return action


def zoql(env, query: str) -> requests.Response:
    return requests.post(f"{env.zuora}/v1/action/query", json={"queryString": query}, headers=env.headers, timeout=10)


# --- the emulator refuses what Zuora refuses ------------------------------------------------------------------
def test_a_change_plan_naming_two_plans_is_refused(zuora):
    number = subscribe(zuora, STARTER, dt.date(2026, 7, 1))
    both = change_plan(rate_plan_id(zuora, number, STARTER), GROWTH, productRatePlanId=plan(STARTER).zuora_id)
    answer = order_on(zuora, number, both).json()
    assert answer["success"] is False and "only one of" in answer["reasons"][0]["message"]
    assert order_on(zuora, number, change_plan(rate_plan_id(zuora, number, STARTER), GROWTH)).json()["success"]


def test_trigger_dates_on_an_end_of_period_change_are_refused(zuora):
    number = subscribe(zuora, GROWTH, dt.date(2026, 7, 1))
    action = change_plan(rate_plan_id(zuora, number, GROWTH), STARTER, "EffectiveEndOfBillingPeriod")
    action["triggerDates"] = [{"name": "ContractEffective", "triggerDate": TODAY}]
    refused = order_on(zuora, number, action).json()
    assert refused["success"] is False and "trigger dates" in refused["reasons"][0]["message"]
    del action["triggerDates"]
    assert order_on(zuora, number, action).json()["success"] is True
    specific = change_plan(rate_plan_id(zuora, number, STARTER), GROWTH)
    del specific["triggerDates"]
    undated = order_on(zuora, number, specific).json()
    assert undated["success"] is False and "ContractEffective" in undated["reasons"][0]["message"]


def test_a_termed_subscription_ends_on_its_term_end_until_a_cancellation(zuora):
    termed = subscribe(zuora, STARTER, dt.date(2026, 7, 1))
    evergreen = subscribe(zuora, STARTER, dt.date(2026, 7, 1), evergreen=True)
    rest = requests.get(f"{zuora.zuora}/v1/subscriptions/{termed}", headers=zuora.headers, timeout=10).json()
    assert rest["subscriptionEndDate"] == rest["termEndDate"] == "2027-07-01" and rest["status"] == "Active"
    rows = zoql(zuora, f"select Name, SubscriptionEndDate from Subscription where Name = '{evergreen}'").json()
    assert rows["records"] == [{"Name": evergreen, "SubscriptionEndDate": None}]
    cancel = {
        "type": "CancelSubscription",
        "cancelSubscription": {"cancellationPolicy": "SpecificDate", "cancellationEffectiveDate": "2026-12-31"},
    }
    assert order_on(zuora, termed, cancel).json()["success"]
    after = requests.get(f"{zuora.zuora}/v1/subscriptions/{termed}", headers=zuora.headers, timeout=10).json()
    assert (after["status"], after["subscriptionEndDate"]) == ("Cancelled", "2026-12-31")


def test_a_removed_rate_plan_stays_on_the_new_version_marked_remove_product(zuora):
    number = subscribe(zuora, STARTER, dt.date(2026, 7, 1))
    assert order_on(zuora, number, change_plan(rate_plan_id(zuora, number, STARTER), GROWTH)).json()["success"]
    rest = requests.get(f"{zuora.zuora}/v1/subscriptions/{number}", headers=zuora.headers, timeout=10).json()
    changes = {p["ratePlanName"]: p["lastChangeType"] for p in rest["ratePlans"]}
    assert changes == {STARTER: "Remove", GROWTH: "Add"}
    removed = next(p for p in rest["ratePlans"] if p["ratePlanName"] == STARTER)
    assert all(c["effectiveEndDate"] == TODAY for c in removed["ratePlanCharges"])
    version = str(current(number).id)
    rows = zoql(zuora, "select Name, AmendmentType, SubscriptionId from RatePlan").json()["records"]
    mine = {r["Name"]: r["AmendmentType"] for r in rows if r["SubscriptionId"] == version}
    assert mine == {STARTER: "RemoveProduct", GROWTH: "NewProduct"}


def test_charged_through_dates_are_kept_per_charge(zuora):
    number = subscribe(zuora, STARTER, dt.date(2026, 7, 1))
    bill(zuora, number, dt.date(2026, 12, 1))
    add = {
        "type": "AddProduct",
        "triggerDates": [{"name": "ContractEffective", "triggerDate": TODAY}],
        "addProduct": {"productRatePlanId": plan(GROWTH).zuora_id},
    }
    assert order_on(zuora, number, add).json()["success"]
    rest = requests.get(f"{zuora.zuora}/v1/subscriptions/{number}", headers=zuora.headers, timeout=10).json()
    dates = {p["ratePlanName"]: {c["chargedThroughDate"] for c in p["ratePlanCharges"]} for p in rest["ratePlans"]}
    assert dates == {STARTER: {"2026-12-01"}, GROWTH: {None}}  # the new charge is not billed yet


def test_update_product_changes_the_quantity_and_the_preview_prices_it(zuora):
    seats = ProductRatePlanCharge_per_unit()
    more = int(seats.default_quantity or 1) + 5
    number = subscribe(zuora, seats.rate_plan.name, dt.date(2026, 7, 1))
    update = {
        "type": "UpdateProduct",
        "triggerDates": [{"name": "ContractEffective", "triggerDate": TODAY}],
        "updateProduct": {
            "ratePlanId": rate_plan_id(zuora, number, seats.rate_plan.name),
            "chargeUpdates": [
                {"productRatePlanChargeId": seats.zuora_id, "pricing": {"recurringPerUnit": {"quantity": more}}}
            ],
        },
    }
    preview = order_on(zuora, number, update, preview=True).json()
    [metrics] = preview["previewResult"]["chargeMetrics"]
    delta = sum(Decimal(str(c["cmrr"]["regularDelta"])) for c in metrics["charges"])
    assert delta > 0  # five more seats cost more
    assert order_on(zuora, number, update).json()["success"]
    [charge] = [
        c for p in current(number).billed_plans for c in p["charges"] if c["productRatePlanChargeId"] == seats.zuora_id
    ]
    assert Decimal(charge["quantity"]) == more


def ProductRatePlanCharge_per_unit():  # noqa: N802 - reads as the thing it finds
    from catalog.models import ProductRatePlanCharge

    return (
        ProductRatePlanCharge.objects.filter(charge_model="PerUnit", charge_type="Recurring", removed_at=None)
        .select_related("rate_plan")
        .first()
    )


def test_a_plan_change_and_a_cancellation_preview_their_mrr_change(zuora):
    number = subscribe(zuora, STARTER, dt.date(2026, 7, 1))
    upgrade = order_on(zuora, number, change_plan(rate_plan_id(zuora, number, STARTER), GROWTH), preview=True).json()
    deltas = [Decimal(str(c["cmrr"]["regularDelta"])) for c in upgrade["previewResult"]["chargeMetrics"][0]["charges"]]
    assert sum(deltas) > 0 and min(deltas) < 0  # Growth's charges added, Starter's removed
    cancel = {"type": "CancelSubscription", "cancelSubscription": {"cancellationPolicy": "EndOfCurrentTerm"}}
    cancelled = order_on(zuora, number, cancel, preview=True).json()
    charges = cancelled["previewResult"]["chargeMetrics"][0]["charges"]
    assert sum(Decimal(str(c["cmrr"]["regularDelta"])) for c in charges) < 0


def test_zoql_answers_every_field_of_an_object_and_refuses_fields_it_does_not_have(zuora):
    subscribe(zuora, STARTER, dt.date(2026, 7, 1))
    rows = zoql(zuora, "select Id, CancelledDate, InvoiceOwnerId, notes from Subscription").json()["records"]
    assert rows and set(rows[0]) == {"Id", "CancelledDate", "InvoiceOwnerId", "Notes"}  # Zuora's spelling
    assert rows[0]["CancelledDate"] is None
    refused = zoql(zuora, "select Id, Shoesize from Subscription")
    assert refused.status_code == 400 and "Subscription.Shoesize" in refused.json()["reasons"][0]["message"]
    assert zoql(zuora, "select Id from Subscription where Shoesize = 'x'").status_code == 400


def test_object_query_pages_hold_fifty_and_filter_only_on_indexed_custom_fields(zuora):
    get = lambda **params: requests.get(  # noqa: E731
        f"{zuora.zuora}/object-query/accounts", params=params, headers=zuora.headers, timeout=10
    )
    assert get(pageSize=99).status_code == 400 and get(pageSize=50).status_code == 200
    assert get(**{"filter[]": "KommoId__c.EQ:company:1"}).status_code == 200
    set_setting("zuora_custom_fields", {"Account": {"KommoId__c": False}})
    unindexed = get(**{"filter[]": "KommoId__c.EQ:company:1"})
    assert unindexed.status_code == 400 and "not filterable" in unindexed.json()["reasons"][0]["message"]


# --- zkbridge sends what passes -------------------------------------------------------------------------------
def test_orders_carry_exact_json_numbers(catalog):
    from tests.conftest import map_plan

    mapping = map_plan("Platinum", "Growth", price=Decimal("19.99"))
    assert mapping
    catalog.win(24312350)  # Umbrella: "Platinum"
    sent = ApiCall.objects.filter(provider="zuora", path="/v1/orders", method="POST").last()
    assert '"listPrice": 19.99' in sent.request_body  # a number, with exactly its digits
    order = json.loads(sent.request_body)
    assert not any(isinstance(v, str) for v in _numbers(order))


def _numbers(value, key=""):
    numeric = {"quantity", "listPrice", "price", "startingUnit", "endingUnit", "amountPerUnit", "listPricePerUnit"}
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v, key)
    elif key in numeric and value is not None:
        yield value


def test_a_subscriber_someone_already_moved_in_zuora_is_left_alone(zuora, settings):
    settings.ZKBRIDGE_SILENT_COMMUNICATION_PROFILE_ID = "CP-SILENT"
    number = subscribe(zuora, SCALE, dt.date(2025, 12, 20))  # term ends 2026-12-20: due
    moved = change_plan(rate_plan_id(zuora, number, SCALE), STARTER)
    assert order_on(zuora, number, moved).json()["success"]  # moved by hand in Zuora's UI
    rule(quiet=True)
    run = run_migrations(DAY)
    assert run.ok and [r for r in run.rows if r["subscription"] == number] == []
    assert run.summary["subscribers"][plan(SCALE).zuora_id] == 0
    assert len(move_orders(number)) == 1  # only the hand-made one
    assert (
        ZAccount.objects.get(account_number=current(number).account.account_number).communication_profile_id
        != "CP-SILENT"
    )
    assert not SyncRecord.objects.filter(kind="plan_migration").exists()
    assert plans_of(number) == [STARTER]


def test_a_cancelled_subscriber_is_skipped_and_a_termed_one_is_moved(zuora):
    termed = subscribe(zuora, SCALE, dt.date(2025, 12, 20))
    leaving = subscribe(zuora, SCALE, dt.date(2025, 12, 20))
    cancel = {"type": "CancelSubscription", "cancelSubscription": {"cancellationPolicy": "EndOfCurrentTerm"}}
    assert order_on(zuora, leaving, cancel).json()["success"]
    rule()
    rows = {r["subscription"]: r for r in run_migrations(DAY).rows}
    assert rows[termed]["outcome"] == "moved"  # its SubscriptionEndDate is only its term end
    assert rows[leaving]["outcome"] == "skipped" and "pending cancellation" in rows[leaving]["reason"]
    assert (
        plans_of(termed) == [STARTER]
        and ZOrder.objects.filter(account_number=current(leaving).account.account_number).count() == 2
    )


def test_the_connections_page_says_which_custom_fields_the_tenant_lacks(emulators, admin_client):
    from sync.ops.connections import check_connections

    ready = check_connections()["zuora"]["setup"]
    assert ready["ok"], ready
    assert {(r["object"], r["field"]) for r in ready["detail"]} >= {
        ("Account", "KommoId__c"),
        ("Subscription", "KommoLeadId__c"),
    }
    set_setting("zuora_custom_fields", {"Account": {"KommoId__c": True}, "Subscription": {"KommoLeadId__c": False}})
    lacking = check_connections()["zuora"]["setup"]
    assert not lacking["ok"] and "Subscription.KommoLeadId__c" in lacking["error"]
    [row] = [r for r in lacking["detail"] if not r["ok"]]
    assert row["exists"] and not row["filterable"] and "Filterable" in row["fix"]
    set_setting("zuora_custom_fields", {"Account": {}, "Subscription": {}})
    missing = check_connections()["zuora"]["setup"]
    assert {r["field"] for r in missing["detail"] if not r["exists"]} == {"KommoId__c", "KommoLeadId__c"}
    assert all("Object Manager" in r["fix"] for r in missing["detail"])


def test_describe_lists_custom_fields_with_their_flags(emulators):
    client = ZuoraClient.from_settings()
    fields = client.describe("Subscription")
    assert fields["KommoLeadId__c"] == {"custom": True, "filterable": True, "type": "text"}
    assert fields["TermEndDate"]["custom"] is False
    with pytest.raises(ValueError):
        client.describe("../v1/catalog")


def test_a_kommo_field_is_cleared_with_null_and_an_empty_select_is_refused(emulators):
    from sync.clients.kommo import KommoClient

    kommo = KommoClient.from_settings()
    lead = 24312346
    kommo.update_lead_fields(lead, {881250: "A00000001"})
    kommo.update_lead_fields(lead, {881250: None})
    assert 881250 not in {f["field_id"] for f in emulators.lead(lead).custom_fields_values or []}
    refused = requests.patch(
        f"{emulators.kommo}/api/v4/leads/{lead}",
        json={"custom_fields_values": [{"field_id": 881234, "values": [{"value": ""}]}]},
        headers={"Authorization": f"Bearer {django_settings.SANDBOX_KOMMO_TOKEN}"},
        timeout=10,
    )
    assert refused.status_code == 400 and "blank" in refused.text


# --- answers zkbridge does not expect ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "answer, words",
    [
        ('{"success": true, "orderNumber": "O-1", "accountNumber": "A1", "status": "Teleported"}', "status"),
        ('{"success": true, "status": "Completed", "subscriptions": []}', "no order number"),
        ("", "not an object"),
        ('{"success": true, "orderNumber": 7, "accountNumber": "A1", "status": "Completed"}', "no order number"),
    ],
)
def test_an_order_answer_zuora_does_not_document_needs_attention_and_a_retry_bills_once(catalog, answer, words):
    catalog.fault("zuora", "answer", "/v1/orders$", remaining=1, reason_message=answer)
    catalog.win(24312346)
    record = SyncRecord.objects.get(key="deal_won:24312346")
    assert record.status == "needs_attention" and words in record.reason, record.reason
    from sync.records import requeue

    assert requeue([record.id], "retried by RevOps after checking Zuora") == 1  # (sync mode: it runs now)
    record.refresh_from_db()
    assert record.status == "succeeded", record.reason
    assert len(catalog.subscriptions(24312346)) == 1


def test_a_preview_whose_figures_are_not_numbers_only_shortens_the_note(catalog):
    bad = '{"success": true, "previewResult": {"chargeMetrics": [{"charges": [{"cmrr": {"regular": "lots"}}]}]}}'
    catalog.fault("zuora", "answer", "/v1/orders/preview", reason_message=bad)
    catalog.win(24312346)
    record = SyncRecord.objects.get(key="deal_won:24312346")
    assert record.status == "succeeded", record.reason
    assert "MRR" not in catalog.notes(24312346)[-1]
