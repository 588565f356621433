"""The Zuora emulator's Object Query: filters (EQ NE LT GT GE LE SW IN), cursors, expand[]."""

from __future__ import annotations

import base64
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from sandbox.models import (
    ZAccount,
    ZSubscription,
)
from sandbox.zuora import failure, zuora_view

# --- Object Query ----------------------------------------------------------------------------------
FILTER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\.(EQ|NE|LT|GT|GE|LE|SW|IN):(.*)$", re.S)


def account_json(account: ZAccount) -> dict[str, Any]:
    return {
        "id": str(account.id),
        "accountNumber": account.account_number,
        "name": account.name,
        "currency": account.currency,
        "crmId": account.crm_id or None,
        "status": account.status,
        "billCycleDay": account.bill_cycle_day,
        "paymentTerm": account.payment_term,
        "communicationProfileId": account.communication_profile_id,
        "createdDate": account.created.isoformat(),
        **account.custom_fields,
    }


def subscription_json(sub: ZSubscription, expand: set[str]) -> dict[str, Any]:
    data = {
        "id": str(sub.id),
        "name": sub.subscription_number,
        "version": sub.version,
        "accountId": str(sub.account_id),
        "status": sub.status,
        "termType": sub.term_type,
        "initialTerm": sub.initial_term,
        "autoRenew": sub.auto_renew,
        "contractEffectiveDate": sub.contract_effective_date.isoformat(),
        "termStartDate": sub.term_start_date.isoformat(),
        "termEndDate": sub.term_end_date.isoformat() if sub.term_end_date else None,
        "subscriptionEndDate": sub.subscription_end_date.isoformat() if sub.subscription_end_date else None,
        "createdDate": sub.created.isoformat(),
        **sub.custom_fields,
    }
    if "account" in expand:
        data["account"] = account_json(sub.account)
    if "rateplans" in expand:
        data["ratePlans"] = [
            {
                "id": f"{sub.id}-{index}",
                "subscriptionId": str(sub.id),
                "productId": rp.get("productId"),
                "productRatePlanId": rp["productRatePlanId"],
                "name": rp["ratePlanName"],
                "amendmentType": rp.get("amendmentType") or "NewProduct",
            }
            for index, rp in enumerate(sub.rate_plans)
        ]
    return data


def _matches(record: dict, field: str, op: str, value: str) -> bool:
    have = record.get(field)
    if op == "IN":
        options = [v.strip() for v in value.strip("[]").split(",")]
        return have is not None and str(have) in options
    if have is None:
        return op == "NE"
    have_s = str(have)
    if op == "EQ":
        return have_s == value
    if op == "NE":
        return have_s != value
    if op == "SW":
        return have_s.startswith(value)
    try:
        left, right = Decimal(have_s), Decimal(value)
    except InvalidOperation:
        left, right = have_s, value  # type: ignore[assignment]
    return {"LT": left < right, "GT": left > right, "LE": left <= right, "GE": left >= right}[op]


def _object_query(request: HttpRequest, records: list[dict], object_name: str) -> HttpResponse:
    from sandbox.zuora_zoql import custom_fields

    filters = []
    for raw in request.GET.getlist("filter[]"):
        match = FILTER.match(raw)
        if not match:
            return failure(
                90000027, f"Invalid filter '{raw}': expected <field>.<EQ|NE|LT|GT|GE|LE|SW|IN>:<value>", status=400
            )
        field = match.group(1)
        if field.endswith("__c"):  # a custom field can be filtered on only when the tenant indexed it
            defined = custom_fields(object_name)
            if field not in defined:
                return failure(90000027, f"Invalid filter: {object_name} has no field {field}", status=400)
            if not defined[field]:
                return failure(
                    90000027,
                    f"Invalid filter: {object_name}.{field} is not filterable (Filterable in the Object Manager)",
                    status=400,
                )
        filters.append(match.groups())
    try:
        page_size = int(request.GET.get("pageSize", "10"))
        offset = int(base64.urlsafe_b64decode(request.GET["cursor"]).decode()) if request.GET.get("cursor") else 0
    except (ValueError, UnicodeDecodeError):
        return failure(90000027, "Invalid pageSize or cursor", status=400)
    if not 1 <= page_size <= 50:
        # zuora-sdk: "If the specified pageSize is less than 1 or greater than 50, Zuora will return a 400 error."
        return failure(90000027, "pageSize must be between 1 and 50", status=400)
    rows = [r for r in records if all(_matches(r, f, op, v) for f, op, v in filters)]
    page = rows[offset : offset + page_size]
    body: dict[str, Any] = {"data": page}
    if offset + page_size < len(rows):
        body["nextPage"] = base64.urlsafe_b64encode(str(offset + page_size).encode()).decode()
    return JsonResponse(body)


@zuora_view
def query_accounts(request: HttpRequest, key: str | None = None) -> HttpResponse:
    if key is not None:
        account = ZAccount.objects.filter(account_number=key).first() or (
            ZAccount.objects.filter(id=key).first() if key.isdigit() else None
        )
        if account is None:
            return failure(50000040, f"Account {key} not found", status=404)
        return JsonResponse(account_json(account))
    return _object_query(request, [account_json(a) for a in ZAccount.objects.order_by("id")], "Account")


@zuora_view
def query_subscriptions(request: HttpRequest, key: str | None = None) -> HttpResponse:
    expand = set(request.GET.getlist("expand[]"))
    queryset = ZSubscription.objects.select_related("account").order_by("id")
    if key is not None:
        sub = queryset.filter(subscription_number=key).order_by("-version").first()
        if sub is None:
            return failure(50000040, f"Subscription {key} not found", status=404)
        return JsonResponse(subscription_json(sub, expand))
    return _object_query(request, [subscription_json(s, expand) for s in queryset], "Subscription")
