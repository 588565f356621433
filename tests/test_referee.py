"""The referee itself: it catches what the vendors' definitions refuse, quotes them right, and fails loudly
when it cannot judge (tests/referee/)."""

from __future__ import annotations

import json
import re

import pytest

import tests.referee as referee
from sandbox.common import Exchange
from sandbox.zuora_objects import FIELDS
from tests.referee import kommo, sdk, zuora

AGENT = {"User-Agent": "zkbridge/1"}


def sent(service: str, method: str, path: str, body=None, query=(), answer=b"", status=200, **extra) -> Exchange:
    return Exchange(
        service=service,
        method=method,
        path=path,
        query=list(query),
        headers={**AGENT, **extra.pop("headers", {})},
        body=json.dumps(body).encode() if body is not None else b"",
        status=status,
        answer=answer,
        **extra,
    )


def change_order(**change) -> dict:
    return {
        "orderDate": "2026-12-05",
        "existingAccountNumber": "A00000001",
        "subscriptions": [
            {
                "subscriptionNumber": "A-S00000001",
                "orderActions": [
                    {"type": "ChangePlan", "changePlan": {"newProductRatePlan": {"productRatePlanId": "p2"}, **change}}
                ],
            }
        ],
    }


def problems(exchange: Exchange) -> list[str]:
    return referee.judge(exchange).problems


def normalized(text: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", "", text).split())


def test_every_rule_quotes_a_sentence_the_sdk_still_says():
    for rule in zuora.ORDER_RULES:
        assert normalized(rule.quote) in sdk.text_of(rule.source), (rule.source, rule.quote)


def test_a_change_plan_naming_two_plans_is_refused_with_zuoras_sentence():
    found = problems(sent("zuora", "POST", "/v1/orders", change_order(ratePlanId="r1", productRatePlanId="p1")))
    assert any("Please provide only one of" in p and "CreateOrderChangePlan" in p for p in found), found
    assert problems(sent("zuora", "POST", "/v1/orders", change_order(ratePlanId="r1"))) == []


def test_trigger_dates_with_an_end_of_period_policy_are_refused():
    body = change_order(ratePlanId="r1", effectivePolicy="EffectiveEndOfBillingPeriod")
    body["subscriptions"][0]["orderActions"][0]["triggerDates"] = [
        {"name": "ContractEffective", "triggerDate": "2026-12-05"}
    ]
    assert any(
        "you cannot set the billing trigger dates" in p for p in problems(sent("zuora", "POST", "/v1/orders", body))
    )


def test_numbers_as_strings_unknown_fields_and_missing_fields_are_named_with_their_model():
    body = change_order(ratePlanId="r1")
    plan = body["subscriptions"][0]["orderActions"][0]["changePlan"]["newProductRatePlan"]
    plan["chargeOverrides"] = [{"productRatePlanChargeId": "c1", "pricing": {"recurringPerUnit": {"quantity": "5"}}}]
    plan["madeUp"] = 1
    plan["Region__c"] = "EU"  # a custom field: allowed anywhere
    del body["orderDate"]
    found = "\n".join(problems(sent("zuora", "POST", "/v1/orders", body)))
    assert "pricing.recurringPerUnit.quantity [RecurringPerUnitPricingOverride]" in found
    assert "has no field 'madeUp'" in found and "Region__c" not in found
    assert "required field 'orderDate' is missing" in found


def test_values_outside_an_enumeration_are_refused():
    body = change_order(ratePlanId="r1", effectivePolicy="Whenever")
    assert any("'Whenever' is not one of" in p for p in problems(sent("zuora", "POST", "/v1/orders", body)))


def test_query_parameters_are_bounded_as_the_sdk_bounds_them():
    found = problems(sent("zuora", "GET", "/object-query/accounts", query=[("pageSize", "99")]))
    assert any("pageSize" in p and "less than or equal to 50" in p for p in found)
    assert problems(sent("zuora", "GET", "/object-query/accounts", query=[("pageSize", "50")])) == []
    assert problems(sent("zuora", "GET", "/object-query/accounts", query=[("filter[]", "Shoe.EQ:1")])) != []


def test_zoql_naming_a_field_its_object_lacks_is_refused():
    good = {"queryString": "select Id, AmendmentType from RatePlan where SubscriptionId = '1'"}
    assert problems(sent("zuora", "POST", "/v1/action/query", good)) == []
    bad = {"queryString": "select Id, Flavour from RatePlan"}
    assert any("RatePlan has no field 'Flavour'" in p for p in problems(sent("zuora", "POST", "/v1/action/query", bad)))


def test_a_usage_file_with_undocumented_headings_is_refused():
    upload = sent("zuora", "POST", "/v1/usage", files={"file": ("u.csv", b"ACCOUNT_ID,UOM,QTY,COLOUR\nA1,x,1,red\n")})
    found = "\n".join(problems(upload))
    assert "COLOUR" in found and "STARTDATE" in found


def test_kommo_fields_cleared_with_an_empty_string_are_refused():
    body = [{"id": 1, "custom_fields_values": [{"field_id": 5, "values": [{"value": ""}]}]}]
    assert any('"values": null' in p for p in problems(sent("kommo", "PATCH", "/api/v4/leads", body)))
    cleared = [{"id": 1, "custom_fields_values": [{"field_id": 5, "values": None}]}]
    assert problems(sent("kommo", "PATCH", "/api/v4/leads", cleared)) == []
    assert any("price" in p for p in problems(sent("kommo", "PATCH", "/api/v4/leads/1", {"price": "12"})))


def test_answers_are_judged_whoever_asked():
    answer = json.dumps({"id": 1, "name": "x", "price": "12"}).encode()
    mine = Exchange("kommo", "GET", "/api/v4/leads/1", [], {}, b"", status=200, answer=answer)
    verdict = referee.judge(mine)
    assert not verdict.request_checked and verdict.answer_checked and any("price" in p for p in verdict.problems)


def test_a_body_the_referee_cannot_read_is_a_failure_not_a_skip(monkeypatch):
    unreadable = Exchange("zuora", "POST", "/v1/orders", [], AGENT, b"{not json", status=400, answer=b"")
    assert any("not JSON" in p for p in problems(unreadable))
    monkeypatch.setattr(referee, "judge", lambda exchange: 1 / 0)
    before = len(referee.verdicts)
    referee.observe(unreadable)
    [verdict] = referee.verdicts[before:]
    del referee.verdicts[before:]
    assert verdict.problems and "could not judge" in verdict.problems[0]


def test_an_operation_without_a_definition_is_listed_not_passed():
    verdict = referee.judge(sent("zuora", "GET", "/v1/payments"))
    assert verdict.known is False
    assert referee.judge(sent("kommo", "GET", "/api/v4/unicorns")).known is False


def test_the_emulators_zoql_objects_have_exactly_zuoras_fields():
    for name, fields in FIELDS.items():
        assert fields == zuora.zoql_fields(name), name


@pytest.mark.parametrize("operation", [o for o in kommo.OPERATIONS if o.body is not None], ids=lambda o: o.name)
def test_every_kommo_write_has_a_model_that_forbids_strangers(operation):
    body = [{"unexpected": 1}] if isinstance(operation.body, list) else {"unexpected": 1}
    exchange = sent(
        "kommo",
        operation.method,
        operation.path.strip("^$").replace(r"(\d+)", "1").replace("(leads|contacts|companies)", "leads"),
        body,
    )
    assert any("unexpected" in p for p in problems(exchange))
