"""The Zuora emulator as a multi-entity tenant (issue 14, part 4): the Zuora-Entity-Ids header is checked on
every call, each entity has its own OAuth client, catalog, customers, currencies, units and Idempotency-Keys.
Over real HTTP, as zkbridge's client will meet it."""

from __future__ import annotations

import pytest
import requests

from sandbox import demo
from sandbox.models import ZAccount, ZEntity

US_CLIENT = "5e2f9c14-8a7b-4d3e-b1c0-6f9a2d8e4b71"  # the US entity's OAuth client (demo.ENTITIES)
EU_CLIENT = "9c4d1e7a-2f6b-4a8c-8e3d-1b5f7a9c2e60"  # the EU entity's OAuth client (demo.ENTITIES)
DEMO_CLIENT = "2b7e1a90-5c3d-4f8e-9a6b-0d4c7e1f3a25"  # the emulated tenant's OAuth client

US, EU = list(demo.ENTITIES)


@pytest.fixture
def tenant(emulators):
    demo.seed_entities()
    return emulators


def token(tenant, client: str = DEMO_CLIENT, secret: str = "zkbridge-demo-secret") -> str:
    answer = requests.post(
        f"{tenant.zuora}/oauth/token",
        data={"client_id": client, "client_secret": secret, "grant_type": "client_credentials"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def call(tenant, method: str, path: str, bearer: str, entity: str | None = None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {bearer}", **kwargs.pop("headers", {})}
    if entity:
        headers["Zuora-Entity-Ids"] = entity
    return requests.request(method, f"{tenant.zuora}{path}", headers=headers, timeout=10, **kwargs)


def products(answer: requests.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [p["name"] for p in answer.json()["products"]]


def order(currency: str, plan: str, name: str = "Entity Co") -> dict:
    return {
        "orderDate": "2026-11-01",
        "newAccount": {
            "name": name,
            "currency": currency,
            "billCycleDay": 0,
            "billToContact": {"firstName": "Ana", "lastName": "Lima"},
        },
        "subscriptions": [
            {
                "orderActions": [
                    {
                        "type": "CreateSubscription",
                        "createSubscription": {
                            "terms": {"initialTerm": {"termType": "EVERGREEN"}},
                            "subscribeToRatePlans": [{"productRatePlanId": demo.zuora_id(f"{plan} Standard")}],
                        },
                    }
                ]
            }
        ],
    }


def test_a_token_covering_several_entities_must_name_one(tenant):
    bearer = token(tenant)  # the tenant's own client covers every entity
    answer = call(tenant, "GET", "/v1/catalog/products", bearer)
    assert answer.status_code == 400 and "Zuora-Entity-Ids header is required" in answer.text
    assert products(call(tenant, "GET", "/v1/catalog/products", bearer, US)) == ["US Platform"]
    assert products(call(tenant, "GET", "/v1/catalog/products", bearer, EU)) == ["EU Platform"]
    for bad in ("ent-nope", f"{US},{EU}"):
        refused = call(tenant, "GET", "/v1/catalog/products", bearer, bad)
        assert refused.status_code in (400, 401) and refused.json()["success"] is False


def test_an_entitys_own_client_works_in_its_entity_only(tenant):
    eu = token(tenant, EU_CLIENT, "zkbridge-eu-secret")
    assert products(call(tenant, "GET", "/v1/catalog/products", eu)) == ["EU Platform"]  # no header needed
    assert products(call(tenant, "GET", "/v1/catalog/products", eu, EU)) == ["EU Platform"]
    refused = call(tenant, "GET", "/v1/catalog/products", eu, US)
    assert refused.status_code == 401 and f"does not cover entity {US}" in refused.text
    wrong = requests.post(
        f"{tenant.zuora}/oauth/token",
        data={"client_id": EU_CLIENT, "client_secret": "zkbridge-demo-secret", "grant_type": "client_credentials"},
        timeout=10,
    )
    assert wrong.status_code == 401


def test_customers_live_in_the_entity_that_made_them(tenant):
    us, eu = token(tenant, US_CLIENT, "zkbridge-us-secret"), token(tenant, EU_CLIENT, "zkbridge-eu-secret")
    made = call(tenant, "POST", "/v1/orders", eu, json=order("EUR", "EU Platform")).json()
    assert made["success"] is True, made
    account = ZAccount.objects.get(account_number=made["accountNumber"])
    assert account.entity == ZEntity.objects.get(entity_id=EU)
    query = {"queryString": "select AccountNumber from Account"}
    seen_by_eu = call(tenant, "POST", "/v1/action/query", eu, json=query).json()["records"]
    seen_by_us = call(tenant, "POST", "/v1/action/query", us, json=query).json()["records"]
    assert {"AccountNumber": made["accountNumber"]} in seen_by_eu and seen_by_us == []
    again = order("USD", "US Platform")
    del again["newAccount"]
    again["existingAccountNumber"] = made["accountNumber"]
    refused = call(tenant, "POST", "/v1/orders", us, json=again).json()
    assert refused["success"] is False and made["accountNumber"] in refused["reasons"][0]["message"]


def test_a_plan_of_another_entity_and_a_currency_the_entity_does_not_bill_are_refused(tenant):
    eu = token(tenant, EU_CLIENT, "zkbridge-eu-secret")
    other = call(tenant, "POST", "/v1/orders", eu, json=order("EUR", "US Platform")).json()
    assert other["success"] is False and "Invalid ProductRatePlanId" in other["reasons"][0]["message"]
    dollars = call(tenant, "POST", "/v1/orders", eu, json=order("USD", "EU Platform")).json()
    assert (
        dollars["success"] is False
        and "Currency USD is not enabled in entity zkbridge GmbH (EU)" in (dollars["reasons"][0]["message"])
    )


def test_idempotency_keys_and_units_are_kept_per_entity(tenant):
    bearer = token(tenant)
    key = {"Idempotency-Key": "same-key-in-two-entities"}
    first = call(tenant, "POST", "/v1/orders", bearer, US, headers=key, json=order("USD", "US Platform")).json()
    second = call(tenant, "POST", "/v1/orders", bearer, EU, headers=key, json=order("EUR", "EU Platform")).json()
    assert first["success"] and second["success"] and first["orderNumber"] != second["orderNumber"]
    replay = call(tenant, "POST", "/v1/orders", bearer, EU, headers=key, json=order("EUR", "EU Platform"))
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.json()["orderNumber"] == second["orderNumber"]
    units = {"queryString": "select UomName, DecimalPlaces from UnitOfMeasure"}
    assert call(tenant, "POST", "/v1/action/query", bearer, EU, json=units).json()["records"] == [
        {"UomName": "Seat", "DecimalPlaces": 0}
    ]


def test_a_tenant_without_entities_is_unchanged_and_refuses_an_entity_header(emulators):
    bearer = token(emulators)
    assert products(call(emulators, "GET", "/v1/catalog/products", bearer)) == ["zkbridge Platform", "API Usage"]
    demo.seed_entities()
    old = bearer  # a token from before the tenant had entities covers none of them
    refused = call(emulators, "GET", "/v1/catalog/products", old, EU)
    assert refused.status_code == 401
