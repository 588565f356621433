"""ZOQL in the Zuora emulator: POST /v1/action/query and /v1/action/queryMore (≤ 2000 records a page).

A subset of the language: `select f1, f2 from Object [where cond [and cond]…]` with conditions
`field = 'v'`, `field != 'v'`, `field = null`, `field != null`, and `<`, `<=`, `>`, `>=` against a number or a
quoted date (`Balance > 0`, `DueDate < '2026-12-06'`).
Objects: Account (its Balance: what its invoices still owe), Subscription, RatePlan, RatePlanCharge, Invoice,
UnitOfMeasure — each with every field Zuora defines
on it (zuora_objects.py): a field the emulator keeps no value for answers null, a field the object does not have
is refused. Field names are matched without regard to case and answered as Zuora spells them.
As in Zuora, Subscription and RatePlan rows cover every version of a subscription (earlier versions have
Status 'Expired'; a RatePlan row belongs to one version's Id) unless the query filters them out; a rate plan an
amendment removed stays on the later versions with AmendmentType 'RemoveProduct', its charges end-dated.
"""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from sandbox.common import json_body
from sandbox.models import ZAccount, ZInvoice, ZSubscription, ZUnitOfMeasure
from sandbox.zuora import failure, zuora_view
from sandbox.zuora_objects import FIELDS
from sandbox.zuora_subscriptions import charged_through, rate_plan_id

PAGE = 2000
QUERY = re.compile(
    r"^\s*select\s+(?P<fields>.+?)\s+from\s+(?P<object>\w+)(?:\s+where\s+(?P<where>.+?))?\s*$", re.I | re.S
)
CONDITION = re.compile(r"^\s*(\w+)\s*(=|!=|>=|<=|>|<)\s*(null|'(?:[^'\\]|\\.)*'|-?\d+(?:\.\d+)?)\s*$", re.I)


def _day(value) -> str | None:
    return value.isoformat() if value else None


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
            "BillCycleDay": a.bill_cycle_day,
            "PaymentTerm": a.payment_term,
            "AutoPay": False,
            "Balance": float(sum((i.balance for i in a.invoices.all()), Decimal(0))),
            "CreatedDate": a.created.isoformat(),
            **a.custom_fields,
        }
        for a in ZAccount.objects.prefetch_related("invoices").order_by("id")
    ]


def _invoices() -> list[dict[str, Any]]:
    return [
        {
            "Id": str(i.id),
            "AccountId": str(i.account_id),
            "InvoiceNumber": i.invoice_number,
            "InvoiceDate": _day(i.invoice_date),
            "DueDate": _day(i.due_date),
            "Amount": float(i.amount),
            "Balance": float(i.balance),
            "Status": i.status,
        }
        for i in ZInvoice.objects.order_by("id")
    ]


def _subscriptions() -> list[dict[str, Any]]:
    return [
        {
            "Id": str(s.id),
            "Name": s.subscription_number,
            "Version": s.version,
            "AccountId": str(s.account_id),
            "InvoiceOwnerId": str(s.account_id),
            "CreatorAccountId": str(s.account_id),
            "Status": s.status,
            "TermType": s.term_type,
            "AutoRenew": s.auto_renew,
            "InitialTerm": s.initial_term,
            "InitialTermPeriodType": s.initial_term_period_type,
            "CurrentTerm": s.initial_term,
            "RenewalTerm": s.renewal_term,
            "TermStartDate": _day(s.term_start_date),
            "TermEndDate": _day(s.term_end_date),
            "SubscriptionStartDate": _day(s.contract_effective_date),
            "SubscriptionEndDate": _day(s.subscription_end_date),
            "ContractEffectiveDate": _day(s.contract_effective_date),
            "IsLatestVersion": s.status != "Expired",
            "CreatedDate": s.created.isoformat(),
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
                    "Id": rate_plan_id(sub, index),
                    "SubscriptionId": str(sub.id),
                    "ProductId": plan.get("productId"),
                    "ProductRatePlanId": plan["productRatePlanId"],
                    "Name": plan["ratePlanName"],
                    "AmendmentType": plan.get("amendmentType") or "NewProduct",
                }
            )
    return rows


def _rate_plan_charges() -> list[dict[str, Any]]:
    rows = []
    subs = ZSubscription.objects.order_by("id").only(
        "id", "version", "rate_plans", "charged_through_date", "contract_effective_date"
    )
    for sub in subs:
        for index, plan in enumerate(sub.rate_plans):
            for number, charge in enumerate(plan.get("charges") or []):
                rows.append(
                    {
                        "Id": f"{rate_plan_id(sub, index)}-{number}",
                        "RatePlanId": rate_plan_id(sub, index),
                        "SubscriptionId": str(sub.id),
                        "ProductRatePlanChargeId": charge.get("productRatePlanChargeId"),
                        "Name": charge.get("name"),
                        "ChargeType": charge.get("type"),
                        "ChargeModel": charge.get("model"),
                        "Quantity": charge.get("quantity"),
                        "ChargedThroughDate": charged_through(sub, charge),
                        "EffectiveStartDate": charge.get("effectiveStartDate") or _day(sub.contract_effective_date),
                        "EffectiveEndDate": charge.get("effectiveEndDate"),
                        "MRR": charge.get("mrr"),
                        "Version": sub.version,
                    }
                )
    return rows


def _units_of_measure() -> list[dict[str, Any]]:
    return [
        {
            "Id": f"uom{u.id:029}",
            "UomName": u.name,
            "DisplayedAs": u.name,
            "DecimalPlaces": u.decimal_places,
            "RoundingMode": u.rounding_mode,
            "Active": u.active,
        }
        for u in ZUnitOfMeasure.objects.all()
    ]


OBJECTS = {
    "UnitOfMeasure": _units_of_measure,
    "Account": _accounts,
    "Subscription": _subscriptions,
    "RatePlan": _rate_plans,
    "RatePlanCharge": _rate_plan_charges,
    "Invoice": _invoices,
}
BY_LOWER = {name.lower(): name for name in OBJECTS}


def _field(object_name: str, name: str) -> str:
    """The field as Zuora spells it; ValueError for a field the object does not have (custom fields, Name__c,
    answer whether or not a record carries them)."""
    if name.endswith("__c"):
        return name
    for known in FIELDS[object_name]:
        if known.lower() == name.lower():
            return known
    raise ValueError(f"invalid field for query: {object_name}.{name}")


def _run(query: str) -> list[dict[str, Any]]:
    match = QUERY.match(query or "")
    if not match:
        raise ValueError("malformed query: expected 'select <fields> from <object> [where …]'")
    object_name = BY_LOWER.get(match["object"].lower())
    if object_name is None:
        raise ValueError(f"invalid object: {match['object']}")
    fields = [_field(object_name, f.strip()) for f in match["fields"].split(",") if f.strip()]
    conditions = []
    for part in re.split(r"\s+and\s+", match["where"] or "", flags=re.I) if match["where"] else []:
        cond = CONDITION.match(part)
        if not cond:
            raise ValueError(f"unsupported condition: {part.strip()}")
        name, op, value = cond.groups()
        name = _field(object_name, name)
        if value.lower() == "null":
            conditions.append((name, op, None))
        elif value.startswith("'"):
            conditions.append((name, op, value[1:-1].replace("\\'", "'")))
        else:
            conditions.append((name, op, Decimal(value)))
    rows = []
    for record in OBJECTS[object_name]():
        if all(_holds(record.get(n), op, v) for n, op, v in conditions):
            rows.append({f: record.get(f) for f in fields})
    return rows


def _holds(have: Any, op: str, value: Any) -> bool:
    """One condition: = and != against a string or null; <, <=, >, >= against a number or a date ('2026-12-06')."""
    if value is None:
        return (have not in (None, "")) == (op == "!=")
    if op in ("=", "!="):
        same = str(have) == str(value) if not isinstance(value, Decimal) else _number(have) == value
        return same == (op == "=")
    if have in (None, ""):
        return False
    left: Any = _number(have) if isinstance(value, Decimal) else str(have)
    right: Any = value
    if left is None:
        return False
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def _number(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


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


def custom_fields(object_name: str) -> dict[str, bool]:
    from sandbox.common import get_setting
    from sandbox.zuora_objects import CUSTOM_FIELDS_DEFAULT

    defined = get_setting("zuora_custom_fields")
    return (CUSTOM_FIELDS_DEFAULT if defined is None else defined).get(object_name, {})


@zuora_view
def describe(request: HttpRequest, object_name: str) -> HttpResponse:
    """GET /v1/describe/{object}: the object's fields as XML (custom ones with their filterable flag)."""
    from sandbox.zuora_objects import describe_xml

    if request.method != "GET":
        return failure(90000045, "Method not allowed", status=405)
    known = BY_LOWER.get(object_name.lower())
    if known is None or known != object_name:
        return failure(50000040, f"Object {object_name} does not exist", status=404)
    return HttpResponse(describe_xml(known, custom_fields(known)), content_type="text/xml; charset=utf-8")
