"""The Zuora emulator behaves as ../shared/reference/zuora-api.md says (not as our client would like)."""

from __future__ import annotations

import json
import time

import pytest
import requests

from sandbox.demo import zuora_id
from sandbox.models import ZSubscription

DEMO_CLIENT = {
    "client_id": "2b7e1a90-5c3d-4f8e-9a6b-0d4c7e1f3a25",  # Zuora's client ids are 36 characters
    "client_secret": "zkbridge-demo-secret",
    "grant_type": "client_credentials",
}


@pytest.fixture
def zuora(emulators):
    token = requests.post(f"{emulators.zuora}/oauth/token", data=DEMO_CLIENT, timeout=10).json()["access_token"]
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {token}", "Zuora-Version": "233.0"})
    session.base = emulators.zuora
    return session


def order(plan: str = "Growth", currency: str = "USD", date: str | None = None, **account) -> dict:
    day = date or time.strftime("%Y-%m-%d")
    return {
        "orderDate": day,
        "newAccount": {
            "name": "ACME",
            "currency": currency,
            "billCycleDay": 0,
            "crmId": "company:1",
            "customFields": {"KommoId__c": "company:1"},
            "billToContact": {"firstName": "Jane", "lastName": "Doe", "workEmail": "jane@acme.example"},
            **account,
        },
        "subscriptions": [
            {
                "orderActions": [
                    {
                        "type": "CreateSubscription",
                        "triggerDates": [{"name": "ContractEffective", "triggerDate": day}],
                        "createSubscription": {"subscribeToRatePlans": [{"productRatePlanId": zuora_id(plan)}]},
                    }
                ],
                "customFields": {"KommoLeadId__c": "42"},
            }
        ],
    }


def test_token_endpoint_gives_an_opaque_hour_long_token(emulators):
    body = requests.post(f"{emulators.zuora}/oauth/token", data=DEMO_CLIENT, timeout=10).json()
    assert len(body["access_token"]) == 32 and body["token_type"] == "bearer" and body["expires_in"] == 3599


def test_token_endpoint_refuses_wrong_credentials(emulators):
    answer = requests.post(f"{emulators.zuora}/oauth/token", data={**DEMO_CLIENT, "client_secret": "nope"}, timeout=10)
    assert answer.status_code == 401


def test_api_refuses_missing_or_unknown_token(emulators):
    for headers in ({}, {"Authorization": "Bearer 0123456789abcdef0123456789abcdef"}):
        answer = requests.get(f"{emulators.zuora}/v1/catalog/products", headers=headers, timeout=10)
        assert answer.status_code == 401
        assert answer.json()["reasons"][0]["code"] == 90000011
        assert answer.headers["Zuora-Request-Id"]


def test_catalog_pages_follow_next_page_links(zuora):
    first = zuora.get(f"{zuora.base}/v1/catalog/products", params={"pageSize": 1}, timeout=10).json()
    assert first["success"] is True and len(first["products"]) == 1
    second = zuora.get(first["nextPage"], timeout=10).json()
    assert second["products"][0]["id"] != first["products"][0]["id"]
    assert "nextPage" not in second
    # Zuora-Version 230.0 and later: a product's rate plans are a URL of their own, read page by page
    url = first["products"][0]["productRatePlans"]
    assert url == f"/v1/rateplan/{first['products'][0]['id']}/productRatePlan"
    page = zuora.get(f"{zuora.base}{url}", params={"pageSize": 2}, timeout=10).json()
    plans = {p["name"]: p for p in page["productRatePlans"]}
    while page.get("nextPage"):
        page = zuora.get(page["nextPage"], timeout=10).json()
        plans.update({p["name"]: p for p in page["productRatePlans"]})
    assert plans["Growth (2024)"]["status"] == "Expired" and plans["Enterprise (2027)"]["status"] == "NotStarted"
    assert {p["currency"] for p in plans["Growth"]["productRatePlanCharges"][0]["pricing"]} == {"USD", "EUR"}
    # Earlier versions embed the plans
    legacy = zuora.get(
        f"{zuora.base}/v1/catalog/products", params={"pageSize": 1}, headers={"Zuora-Version": "229.0"}, timeout=10
    ).json()
    assert {p["name"] for p in legacy["products"][0]["productRatePlans"]} == set(plans)


def test_catalog_refuses_oversized_pages(zuora):
    assert zuora.get(f"{zuora.base}/v1/catalog/products", params={"pageSize": 500}, timeout=10).status_code == 400


def test_order_creates_account_and_subscription_together(zuora):
    body = zuora.post(f"{zuora.base}/v1/orders", json=order(), timeout=10).json()
    assert body["success"] is True
    assert body["accountNumber"].startswith("A") and body["subscriptions"][0]["subscriptionNumber"].startswith("A-S")
    sub = ZSubscription.objects.get(subscription_number=body["subscriptions"][0]["subscriptionNumber"])
    assert sub.account.crm_id == "company:1" and sub.custom_fields == {"KommoLeadId__c": "42"}
    assert sub.term_type == "TERMED" and sub.initial_term == 12


@pytest.mark.parametrize(
    "change, code, words",
    [
        ({"plan": "Nonexistent"}, 53100340, "Invalid ProductRatePlanId"),
        ({"plan": "Growth (2024)"}, 53100330, "not effective"),
        ({"plan": "Enterprise (2027)"}, 53100330, "not effective"),
        ({"plan": "Scale (retiring)", "currency": "EUR"}, 53100330, "no price in EUR"),
        ({"billToContact": {"firstName": "Jane", "workEmail": "j@x.example"}}, 53100322, "lastName"),
    ],
)
def test_order_validation_answers_http_200_with_success_false(zuora, change, code, words):
    plan = change.pop("plan", "Growth")
    currency = change.pop("currency", "USD")
    answer = zuora.post(f"{zuora.base}/v1/orders", json=order(plan, currency, **change), timeout=10)
    assert answer.status_code == 200
    body = answer.json()
    assert body["success"] is False and body["reasons"][0]["code"] == code and words in body["reasons"][0]["message"]
    assert len(str(code)) == 8
    assert ZSubscription.objects.count() == 0  # atomic: no account without its subscription


def test_malformed_json_is_a_400(zuora):
    answer = zuora.post(
        f"{zuora.base}/v1/orders", data="{not json", timeout=10, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400 and answer.json()["reasons"][0]["code"] % 100 == 90


def test_idempotency_key_replays_the_first_answer(zuora):
    headers = {"Idempotency-Key": "order-1"}
    first = zuora.post(f"{zuora.base}/v1/orders", json=order(), headers=headers, timeout=10)
    second = zuora.post(f"{zuora.base}/v1/orders", json=order(), headers=headers, timeout=10)
    assert first.json() == second.json() and second.headers.get("Idempotent-Replayed") == "true"
    assert ZSubscription.objects.count() == 1


def test_idempotency_key_replays_failures_too(zuora):
    headers = {"Idempotency-Key": "order-bad"}
    first = zuora.post(f"{zuora.base}/v1/orders", json=order("Nonexistent"), headers=headers, timeout=10).json()
    second = zuora.post(f"{zuora.base}/v1/orders", json=order(), headers=headers, timeout=10).json()
    assert first == second and second["success"] is False


def test_idempotency_key_on_another_url_is_a_422(zuora):
    zuora.post(f"{zuora.base}/v1/orders", json=order(), headers={"Idempotency-Key": "k"}, timeout=10)
    answer = zuora.post(f"{zuora.base}/v1/orders/preview", json=order(), headers={"Idempotency-Key": "k"}, timeout=10)
    assert answer.status_code in (200, 422)  # preview is not idempotent-keyed: plain answer
    usage = zuora.post(
        f"{zuora.base}/v1/usage", files={"file": ("u.csv", b"x")}, headers={"Idempotency-Key": "k"}, timeout=10
    )
    assert usage.status_code == 422


def test_object_query_filters_on_custom_fields_and_pages(zuora):
    for n in range(3):
        zuora.post(
            f"{zuora.base}/v1/orders",
            json=order(crmId=f"company:{n}", customFields={"KommoId__c": f"company:{n}"}),
            timeout=10,
        )
    found = zuora.get(
        f"{zuora.base}/object-query/accounts", params={"filter[]": "KommoId__c.EQ:company:1"}, timeout=10
    ).json()
    assert [a["crmId"] for a in found["data"]] == ["company:1"]
    assert zuora.get(
        f"{zuora.base}/object-query/accounts", params={"filter[]": "crmId.EQ:nobody"}, timeout=10
    ).json() == {"data": []}
    page = zuora.get(f"{zuora.base}/object-query/accounts", params={"pageSize": 2}, timeout=10).json()
    assert len(page["data"]) == 2
    rest = zuora.get(
        f"{zuora.base}/object-query/accounts", params={"pageSize": 2, "cursor": page["nextPage"]}, timeout=10
    ).json()
    assert len(rest["data"]) == 1 and "nextPage" not in rest
    bad = zuora.get(f"{zuora.base}/object-query/accounts", params={"filter[]": "garbage"}, timeout=10)
    assert bad.status_code == 400


def test_usage_import_is_polled_until_completed(zuora):
    created = zuora.post(f"{zuora.base}/v1/orders", json=order(), timeout=10).json()
    csv_text = (
        "ACCOUNT_ID,UOM,QTY,STARTDATE,ENDDATE,SUBSCRIPTION_ID,CHARGE_ID,DESCRIPTION\n"
        f"{created['accountNumber']},API call,1200,11/01/2026,11/30/2026,"
        f"{created['subscriptions'][0]['subscriptionNumber']},,Nov\n"
    )
    answer = zuora.post(f"{zuora.base}/v1/usage", files={"file": ("usage.csv", csv_text.encode())}, timeout=10).json()
    assert answer["success"] is True and answer["checkImportStatus"].startswith("/v1/usage/")
    statuses = [
        zuora.get(f"{zuora.base}{answer['checkImportStatus']}", timeout=10).json()["importStatus"] for _ in range(3)
    ]
    assert statuses == ["Processing", "Completed", "Completed"]


def test_usage_import_with_one_bad_row_fails_whole(zuora, emulators):
    csv_text = (
        "ACCOUNT_ID,UOM,QTY,STARTDATE,ENDDATE,SUBSCRIPTION_ID,CHARGE_ID,DESCRIPTION\n"
        "A99999999,API call,1,11/01/2026,11/30/2026,,,x\n"
    )
    answer = zuora.post(f"{zuora.base}/v1/usage", files={"file": ("u.csv", csv_text.encode())}, timeout=10).json()
    for _ in range(2):
        status = zuora.get(f"{zuora.base}{answer['checkImportStatus']}", timeout=10).json()
    assert status["importStatus"] == "Failed" and "A99999999" in status["message"]
    missing = zuora.post(f"{zuora.base}/v1/usage", files={"file": ("u.csv", b"ACCOUNT_ID,UOM\n")}, timeout=10).json()
    assert missing["success"] is False and "Missing header" in missing["reasons"][0]["message"]


def test_unique_key_is_refused_by_a_tenant_without_consumption_billing(zuora):
    """Zuora documents the UNIQUE_KEY heading for Advanced Consumption Billing features only."""
    from sandbox.common import set_setting

    keyed = b"ACCOUNT_ID,UOM,QTY,STARTDATE,ENDDATE,SUBSCRIPTION_ID,CHARGE_ID,DESCRIPTION,UNIQUE_KEY\nA1,x,1,,,,,,k\n"
    refused = zuora.post(f"{zuora.base}/v1/usage", files={"file": ("u.csv", keyed)}, timeout=10).json()
    assert refused["success"] is False and "Advanced Consumption Billing" in refused["reasons"][0]["message"]
    set_setting("zuora_usage_unique_key", True)
    accepted = zuora.post(f"{zuora.base}/v1/usage", files={"file": ("u.csv", keyed)}, timeout=10).json()
    assert accepted["success"] is True
    odd = zuora.post(f"{zuora.base}/v1/usage", files={"file": ("u.csv", keyed.replace(b"UOM", b"UNIT"))}, timeout=10)
    assert odd.json()["success"] is False


# --- fault injection -------------------------------------------------------------------------------
def test_fault_500_then_normal(zuora, emulators):
    emulators.fault("zuora", "http500", "/v1/orders", remaining=1)
    assert zuora.post(f"{zuora.base}/v1/orders", json=order(), timeout=10).status_code == 500
    assert zuora.post(f"{zuora.base}/v1/orders", json=order(), timeout=10).json()["success"] is True


def test_fault_429_carries_retry_after(zuora, emulators):
    emulators.fault("zuora", "http429", "/v1/", retry_after=7, remaining=1)
    answer = zuora.get(f"{zuora.base}/v1/catalog/products", timeout=10)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "7"


def test_fault_success_false_uses_the_given_code(zuora, emulators):
    emulators.fault("zuora", "success_false", "/v1/orders", reason_code=53100050, reason_message="lock")
    body = zuora.post(f"{zuora.base}/v1/orders", json=order(), timeout=10).json()
    assert body["success"] is False and body["reasons"][0]["code"] == 53100050


def test_fault_timeout_answers_too_late(zuora, emulators):
    emulators.fault("zuora", "timeout", "/v1/orders", sleep_seconds=2, remaining=1)
    with pytest.raises(requests.Timeout):
        zuora.post(f"{zuora.base}/v1/orders", json=order(), timeout=0.5)
    time.sleep(2)  # let the emulator's thread finish
    assert ZSubscription.objects.count() == 0


def test_fault_drop_after_commit_keeps_the_work(zuora, emulators):
    emulators.fault("zuora", "drop_after_commit", "/v1/orders", remaining=1)
    with pytest.raises(requests.ConnectionError):
        zuora.post(f"{zuora.base}/v1/orders", json=order(), headers={"Idempotency-Key": "d1"}, timeout=10)
    assert ZSubscription.objects.count() == 1
    replay = zuora.post(f"{zuora.base}/v1/orders", json=order(), headers={"Idempotency-Key": "d1"}, timeout=10)
    assert replay.json()["success"] is True and ZSubscription.objects.count() == 1


def test_latency_injection_slows_answers(zuora, emulators):
    emulators.fault("zuora", "latency", "/v1/catalog", latency_ms=300)
    started = time.monotonic()
    zuora.get(f"{zuora.base}/v1/catalog/products", timeout=10)
    assert time.monotonic() - started >= 0.3


def test_control_api_refuses_unknown_fault_fields(emulators):
    answer = requests.post(
        f"{emulators.url}/sandbox/control/faults", data=json.dumps({"service": "zuora", "kind": "boom"}), timeout=10
    )
    assert answer.status_code == 400
    answer = requests.post(f"{emulators.url}/sandbox/control/faults", data="[]", timeout=10)
    assert answer.status_code == 400
