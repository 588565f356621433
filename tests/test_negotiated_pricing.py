"""Negotiated tiers and currencies end to end: Kommo's deal → the plan map (or the deal's tiers field) → the
order Zuora's emulator receives over HTTP, and what the deal's note says."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
import requests

from catalog.models import MappedRatePlan, PlanMapping, ProductRatePlan, UnitOfMeasure
from sandbox.demo import zuora_id
from sandbox.models import KLead, ZProduct, ZRatePlan, ZUnitOfMeasure
from sync.catalog_sync import sync_catalog
from sync.models import ApiCall, SyncRecord
from tests.conftest import map_plan

UMBRELLA = 24312350  # the demo lead whose plan field says "Platinum" (mapped by each test)
TIERS_FIELD = 881270
CURRENCY_FIELD = 881260
TIERED_PLAN = "API calls (tiered)"


def record(lead_id: int) -> SyncRecord:
    return SyncRecord.objects.get(key=f"deal_won:{lead_id}")


def set_fields(lead_id: int, **values: str) -> None:
    ids = {"tiers": TIERS_FIELD, "currency": CURRENCY_FIELD}
    lead = KLead.objects.get(id=lead_id)
    lead.custom_fields_values += [{"field_id": ids[k], "values": [{"value": v}]} for k, v in values.items()]
    lead.catalog_elements = []
    lead.save()


def charge_tiers(catalog, lead_id: int) -> dict:
    """The charge override of the order zkbridge sent for the deal, read from the wire as written (JSON numbers
    kept exact: 0.10 stays 0.10), after checking the emulator billed the subscription with it."""
    [sub] = catalog.subscriptions(lead_id)
    assert [c for plan in sub.rate_plans for c in plan["charges"] if c.get("override")]
    sent = ApiCall.objects.filter(provider="zuora", method="POST", path="/v1/orders", status=200).last()
    order = json.loads(sent.request_body, parse_float=Decimal)
    [plan] = order["subscriptions"][0]["orderActions"][0]["createSubscription"]["subscribeToRatePlans"]
    [override] = [o for o in plan.get("chargeOverrides") or [] if any("tiers" in v for v in o["pricing"].values())]
    return override["pricing"]


def bounds(override: dict) -> list[tuple[str, str | None]]:
    [(key, pricing)] = override.items()
    assert all(isinstance(t["startingUnit"], int | Decimal) for t in pricing["tiers"])  # numbers, not strings
    return [(str(t["startingUnit"]), t["endingUnit"] and str(t["endingUnit"])) for t in pricing["tiers"]]


@pytest.fixture
def tiered(catalog, settings):
    """'Platinum' maps to the tiered API plan; the deal's tiers field is configured."""
    settings.KOMMO_TIERS_FIELD_ID = TIERS_FIELD
    map_plan("Platinum", TIERED_PLAN)
    return catalog


def test_the_plan_maps_negotiated_tiers_converted_into_the_orders_charge_override(tiered):
    MappedRatePlan.objects.filter(mapping__kommo_value="Platinum").update(tiers="0-185:0.10;185-999:0.08;999+:0.05")
    tiered.win(UMBRELLA)
    assert record(UMBRELLA).status == "succeeded", record(UMBRELLA).reason
    override = charge_tiers(tiered, UMBRELLA)
    assert list(override) == ["usageTiered"]  # a usage charge's tiers
    assert bounds(override) == [("0", "184"), ("185", "998"), ("999", None)]  # API calls: whole units
    assert [str(t["price"]) for t in override["usageTiered"]["tiers"]] == ["0.10", "0.08", "0.05"]


def test_the_deals_own_tiers_win_and_follow_the_mappings_policy(tiered):
    PlanMapping.objects.filter(kommo_value="Platinum").update(tier_policy="raise_lower")
    MappedRatePlan.objects.filter(mapping__kommo_value="Platinum").update(tiers="0-10:1;10+:0.5")
    set_fields(UMBRELLA, tiers="0-185:0.10;185-999:0.08;999+:0.05")
    tiered.win(UMBRELLA)
    assert record(UMBRELLA).status == "succeeded", record(UMBRELLA).reason
    assert bounds(charge_tiers(tiered, UMBRELLA)) == [("0", "185"), ("186", "999"), ("1000", None)]


def test_two_decimal_units_convert_by_a_hundredth(tiered):
    assert ZUnitOfMeasure.objects.get(name="GB").decimal_places == 2  # Zuora's setting for the unit
    product = ZProduct.objects.get(name="API Usage")
    ZRatePlan.objects.create(
        zid=zuora_id("Storage (tiered)"),
        product=product,
        name="Storage (tiered)",
        effective_start=dt.date(2020, 1, 1),
        effective_end=dt.date(2099, 12, 31),
        charges=[
            {
                "id": zuora_id("charge:Storage"),
                "name": "Storage",
                "type": "Usage",
                "model": "Tiered",
                "uom": "GB",
                "billingPeriod": "Month",
                "defaultQuantity": 1,
                "pricing": [
                    {
                        "currency": "USD",
                        "price": None,
                        "tiers": [
                            {"tier": 1, "startingUnit": 0, "endingUnit": 99.99, "price": "1", "priceFormat": "PerUnit"},
                            {
                                "tier": 2,
                                "startingUnit": 100,
                                "endingUnit": None,
                                "price": "0.5",
                                "priceFormat": "PerUnit",
                            },
                        ],
                    }
                ],
            }
        ],
    )
    assert sync_catalog().ok
    assert UnitOfMeasure.objects.get(name="GB").decimal_places == 2  # mirrored from Zuora with the catalog
    map_plan("Storage deal", "Storage (tiered)")
    set_fields(UMBRELLA, tiers="0-185.5:0.10;185.5-999:0.08;999+:0.05")
    lead = KLead.objects.get(id=UMBRELLA)
    lead.custom_fields_values[0]["values"][0]["value"] = "Storage deal"
    lead.save()
    tiered.win(UMBRELLA)
    assert record(UMBRELLA).status == "succeeded", record(UMBRELLA).reason
    assert bounds(charge_tiers(tiered, UMBRELLA)) == [("0", "185.49"), ("185.5", "998.99"), ("999", None)]


@pytest.mark.parametrize(
    "field, words",
    [
        ("0-185:0.10;190+:0.08", "a gap after tier 1 — units from 185 up to 190 have no price"),
        ("0-185:0.10;180+:0.08", "it overlaps tier 1 (0-185)"),
        ("0-185.5:0.10;185.5+:0.08", "the bound 185.5 is finer than the unit 'API call' allows (whole units)"),
        ("0-185:-0.10;185+:0.08", "the price -0.10 is negative"),
        ("cheap please", "no price"),
    ],
)
def test_a_deal_whose_tiers_cannot_be_billed_needs_attention_with_the_exact_problem(tiered, field, words):
    set_fields(UMBRELLA, tiers=field)
    tiered.win(UMBRELLA)
    rec = record(UMBRELLA)
    assert rec.status == "needs_attention" and words in rec.reason
    assert words in tiered.tasks(UMBRELLA)[0].text  # the salesperson is told what to correct
    assert tiered.subscriptions(UMBRELLA) == [] and tiered.calls("zuora", "POST", "/v1/orders$") == 0


def test_tiers_on_a_deal_whose_plans_have_no_tiered_charge_need_attention(catalog, settings):
    settings.KOMMO_TIERS_FIELD_ID = TIERS_FIELD
    map_plan("Platinum", "Starter")
    set_fields(UMBRELLA, tiers="0-185:0.10;185+:0.08")
    catalog.win(UMBRELLA)
    assert "none of them has a Tiered or Volume charge" in record(UMBRELLA).reason
    assert catalog.subscriptions(UMBRELLA) == []


def test_a_unit_whose_precision_is_unknown_is_not_guessed(tiered, settings):
    UnitOfMeasure.objects.filter(name="API call").delete()
    set_fields(UMBRELLA, tiers="0-185:0.10;185+:0.08")
    tiered.win(UMBRELLA)
    assert "the decimal places of the unit 'API call'" in record(UMBRELLA).reason
    settings.ZKBRIDGE_UOM_DECIMAL_PLACES = {"API call": 0}  # configuration fills the gap
    from sync.tasks import run_sync

    rec = record(UMBRELLA)
    rec.status = SyncRecord.Status.PENDING
    rec.save()
    run_sync(rec.id)
    assert record(UMBRELLA).status == "succeeded", record(UMBRELLA).reason


CRM_FORM_SENT_AS_IS = [
    {"tier": 1, "startingUnit": "0", "endingUnit": "185", "price": "0.1"},
    {"tier": 2, "startingUnit": "185", "price": "0.08"},
]


def test_zuora_refuses_tiers_that_are_not_contiguous_and_inclusive(tiered, settings):
    """The emulator checks tier overrides as Zuora does: a CRM-form tiering sent as is is refused."""
    from sync.clients.zuora import ZuoraClient

    plan = ProductRatePlan.objects.get(name=TIERED_PLAN)
    charge = plan.charges.get()
    token = ZuoraClient.from_settings().access_token()
    answer = requests.post(
        f"{tiered.zuora}/v1/orders",
        json={
            "orderDate": "2026-11-01",
            "newAccount": {
                "name": "Tier Test",
                "currency": "USD",
                "billCycleDay": 0,
                "billToContact": {"firstName": "T", "lastName": "T"},
            },
            "subscriptions": [
                {
                    "orderActions": [
                        {
                            "type": "CreateSubscription",
                            "createSubscription": {
                                "terms": {"initialTerm": {"termType": "EVERGREEN"}},
                                "subscribeToRatePlans": [
                                    {
                                        "productRatePlanId": plan.zuora_id,
                                        "chargeOverrides": [
                                            {
                                                "productRatePlanChargeId": charge.zuora_id,
                                                "pricing": {
                                                    "usageTiered": {
                                                        "tiers": [
                                                            {
                                                                "tier": 1,
                                                                "startingUnit": "0",
                                                                "endingUnit": "185",
                                                                "price": "0.1",
                                                            },
                                                            {"tier": 2, "startingUnit": "185", "price": "0.08"},
                                                        ]
                                                    }
                                                },
                                            }
                                        ],
                                    }
                                ],
                            },
                        }
                    ]
                }
            ],
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    body = answer.json()
    assert answer.status_code == 200 and body["success"] is False
    assert "must follow the previous tier's endingUnit 185" in body["reasons"][0]["message"]


def test_a_yen_deal_is_billed_in_yen_and_its_note_has_no_decimals(catalog, settings):
    settings.KOMMO_CURRENCY_FIELD_ID = CURRENCY_FIELD
    plan = ZRatePlan.objects.get(name="Starter")
    for charge in plan.charges:
        charge["pricing"].append({"currency": "JPY", "price": "45000", "tiers": []})
    plan.save()
    assert sync_catalog().ok
    map_plan("Platinum", "Starter", currency="JPY")
    set_fields(UMBRELLA, currency="JPY")
    catalog.win(UMBRELLA)
    rec = record(UMBRELLA)
    assert rec.status == "succeeded", rec.reason
    [sub] = catalog.subscriptions(UMBRELLA)
    assert sub.account.currency == "JPY"
    assert "(Platinum, ¥45,000 MRR)" in catalog.notes(UMBRELLA)[0]
