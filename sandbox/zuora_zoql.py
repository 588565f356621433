"""ZOQL in the Zuora emulator: POST /v1/action/query and /v1/action/queryMore (≤ 2000 records a page).

A subset of the language: `select f1, f2 from Object [where cond [and cond]…]` with conditions
`field = 'v'`, `field != 'v'`, `field = null`, `field != null`.
Objects: Account, Subscription, RatePlan, RatePlanCharge.
As in Zuora, Subscription and RatePlan rows cover every version of a subscription (earlier versions have
Status 'Expired'; a RatePlan row belongs to one version's Id) unless the query filters them out.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from sandbox.common import json_body
from sandbox.models import ZAccount, ZSubscription, ZUnitOfMeasure
from sandbox.zuora import failure, zuora_view

PAGE = 2000
QUERY = re.compile(
    r"^\s*select\s+(?P<fields>.+?)\s+from\s+(?P<object>\w+)(?:\s+where\s+(?P<where>.+?))?\s*$", re.I | re.S
)
CONDITION = re.compile(r"^\s*(\w+)\s*(=|!=)\s*(null|'(?:[^'\\]|\\.)*')\s*$", re.I)


def _accounts() -> list[dict[str, Any]]:
    return [
        {
            "Id": str(a.id),
            "AccountNumber": a.account_number,
            "Name": a.name,
            "CrmId": a.crm_id or None,
            "Currency": a.currency,
            "CommunicationProfileId": a.communication_profile_id,
            "Status": a.status,
            "CreatedDate": a.created.isoformat(),
            **a.custom_fields,
        }
        for a in ZAccount.objects.order_by("id")
    ]


def _subscriptions() -> list[dict[str, Any]]:
    return [
        {
            "Id": str(s.id),
            "Name": s.subscription_number,
            "Version": s.version,
            "AccountId": str(s.account_id),
            "Status": s.status,
            "TermType": s.term_type,
            "AutoRenew": s.auto_renew,
            "TermStartDate": s.term_start_date.isoformat(),
            "SubscriptionEndDate": s.subscription_end_date.isoformat() if s.subscription_end_date else None,
            "ContractEffectiveDate": s.contract_effective_date.isoformat(),
            "TermEndDate": s.term_end_date.isoformat() if s.term_end_date else None,
            **s.custom_fields,
        }
        for s in ZSubscription.objects.order_by("id")
    ]


def _rate_plans() -> list[dict[str, Any]]:
    rows = []
    for sub in ZSubscription.objects.order_by("id").only("id", "rate_plans"):
        for index, plan in enumerate(sub.rate_plans):
            rows.append(
                {
                    "Id": f"{sub.id}-{index}",
                    "SubscriptionId": str(sub.id),
                    "ProductRatePlanId": plan["productRatePlanId"],
                    "Name": plan["ratePlanName"],
                }
            )
    return rows


def _rate_plan_charges() -> list[dict[str, Any]]:
    rows = []
    for sub in ZSubscription.objects.order_by("id").only("id", "rate_plans", "charged_through_date"):
        ctd = sub.charged_through_date.isoformat() if sub.charged_through_date else None
        for index, plan in enumerate(sub.rate_plans):
            for number, charge in enumerate(plan.get("charges") or []):
                rows.append(
                    {
                        "Id": f"{sub.id}-{index}-{number}",
                        "RatePlanId": f"{sub.id}-{index}",
                        "ProductRatePlanChargeId": charge.get("productRatePlanChargeId"),
                        "ChargedThroughDate": ctd,
                        "MRR": charge.get("mrr"),
                    }
                )
    return rows


def _units_of_measure() -> list[dict[str, Any]]:
    return [
        {
            "Id": f"uom{u.id:029}",
            "UomName": u.name,
            "DecimalPlaces": u.decimal_places,
            "RoundingMode": u.rounding_mode,
            "Active": u.active,
        }
        for u in ZUnitOfMeasure.objects.all()
    ]


OBJECTS = {
    "unitofmeasure": _units_of_measure,
    "account": _accounts,
    "subscription": _subscriptions,
    "rateplan": _rate_plans,
    "rateplancharge": _rate_plan_charges,
}


def _run(query: str) -> list[dict[str, Any]]:
    match = QUERY.match(query or "")
    if not match:
        raise ValueError("malformed query: expected 'select <fields> from <object> [where …]'")
    source = OBJECTS.get(match["object"].lower())
    if source is None:
        raise ValueError(f"invalid object: {match['object']}")
    fields = [f.strip() for f in match["fields"].split(",") if f.strip()]
    conditions = []
    for part in re.split(r"\s+and\s+", match["where"] or "", flags=re.I) if match["where"] else []:
        cond = CONDITION.match(part)
        if not cond:
            raise ValueError(f"unsupported condition: {part.strip()}")
        name, op, value = cond.groups()
        conditions.append((name, op, None if value.lower() == "null" else value[1:-1].replace("\\'", "'")))
    rows = []
    for record in source():
        ok = all(
            (record.get(n) not in (None, "")) == (op == "!=") if v is None else (str(record.get(n)) == v) == (op == "=")
            for n, op, v in conditions
        )
        if ok:
            rows.append({f: record.get(f) for f in fields})
    return rows


def _page(rows: list[dict], offset: int, query: str) -> JsonResponse:
    page = rows[offset : offset + PAGE]
    done = offset + PAGE >= len(rows)
    body: dict[str, Any] = {"records": page, "size": len(rows), "done": done}
    if not done:
        body["queryLocator"] = base64.urlsafe_b64encode(json.dumps([query, offset + PAGE]).encode()).decode()
    return JsonResponse(body)


@zuora_view
def query(request: HttpRequest) -> HttpResponse:
    try:
        body = json_body(request)
        text = body["queryString"]
        return _page(_run(text), 0, text)
    except (ValueError, KeyError, TypeError) as exc:
        return failure(90000027, f"Invalid ZOQL: {exc}", status=400)


@zuora_view
def query_more(request: HttpRequest) -> HttpResponse:
    try:
        locator = json_body(request)["queryLocator"]
        text, offset = json.loads(base64.urlsafe_b64decode(locator.encode()))
        return _page(_run(text), int(offset), text)
    except (ValueError, KeyError, TypeError) as exc:
        return failure(90000027, f"Invalid queryLocator: {exc}", status=400)
