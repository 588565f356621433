"""A Zuora REST API emulator that follows ../shared/reference/zuora-api.md (not zkbridge's client).

Served under /sandbox/zuora/. Covers OAuth client credentials, the product catalog with pagination,
POST /v1/orders (account + subscription atomically, with Zuora's validation) and its preview, Object
Query with filters and cursors, usage CSV imports with status polling, Idempotency-Key replay /
409 / 422, HTTP 200 `success: false` with 8-digit reason codes, and injected faults.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import re
import secrets
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from sandbox.common import emulated, get_setting, json_body, sleep_then
from sandbox.models import (
    Fault,
    ZAccount,
    ZIdempotency,
    ZOrder,
    ZProduct,
    ZRatePlan,
    ZSubscription,
    ZToken,
    ZUsage,
    ZUsageImport,
)

PREFIX = "/sandbox/zuora"
ORDERS = 531003  # resource code used for order errors (code = resource * 100 + category)


class Reject(Exception):
    """A Zuora business/validation error: HTTP 200 (or the given status) with success: false."""

    def __init__(self, category: int, message: str, status: int = 200, resource: int = ORDERS):
        super().__init__(message)
        self.code = resource * 100 + category
        self.message = message
        self.status = status


def failure(code: int, message: str, status: int = 200) -> JsonResponse:
    return JsonResponse(
        {"success": False, "processId": secrets.token_hex(8).upper(), "reasons": [{"code": code, "message": message}]},
        status=status,
    )


def _fault_response(fault: Fault, request: HttpRequest) -> HttpResponse | None:
    if fault.kind == "http500":
        return failure(90000060, "Internal Server Error", status=500)
    if fault.kind == "http502":
        return HttpResponse("<html><body><h1>502 Bad Gateway</h1></body></html>", status=502, content_type="text/html")
    if fault.kind == "http503":
        return HttpResponse("Service Unavailable", status=503, content_type="text/plain")
    if fault.kind == "http429":
        response = failure(90000070, "You have exceeded the rate limit. Try again later.", status=429)
        response["Retry-After"] = str(fault.retry_after)
        response["ratelimit-limit"] = "2500"
        response["ratelimit-remaining"] = "0"
        response["ratelimit-reset"] = str(fault.retry_after)
        return response
    if fault.kind == "timeout":
        return sleep_then(fault, HttpResponse("Gateway Timeout", status=504, content_type="text/plain"))
    if fault.kind == "success_false":
        return failure(fault.reason_code, fault.reason_message)
    if fault.kind == "unauthorized":
        return failure(90000011, "Authentication error", status=401)
    return None


def _authenticate(request: HttpRequest) -> HttpResponse | None:
    if request.path == f"{PREFIX}/oauth/token":
        return None
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else ""
    if not token or not ZToken.objects.filter(token=token, expires_at__gt=timezone.now()).exists():
        return failure(90000011, "Authentication error", status=401)
    return None


def zuora_view(view):
    return emulated("zuora", PREFIX, _fault_response, _authenticate)(view)


def idempotent(view):
    """Zuora's Idempotency-Key: store the answer for 24 h; replay it, 409 while running, 422 on misuse."""

    def wrapper(request: HttpRequest, *args, **kwargs):
        key = request.headers.get("Idempotency-Key")
        if not key:
            return view(request, *args, **kwargs)
        if len(key) > 255:
            return failure(90000020, "Idempotency-Key must be at most 255 characters", status=400)
        cutoff = timezone.now() - dt.timedelta(hours=24)
        ZIdempotency.objects.filter(key=key, created__lt=cutoff).delete()
        try:
            with transaction.atomic():
                ZIdempotency.objects.create(key=key, method=request.method, path=request.path)
        except IntegrityError:
            seen = ZIdempotency.objects.get(key=key)
            if seen.method != request.method or seen.path != request.path:
                return failure(90000020, "Idempotency-Key was used with another URL or method", status=422)
            if not seen.done:
                return failure(90000050, "A request with this Idempotency-Key is still being processed", status=409)
            response = JsonResponse(seen.body, status=seen.status, safe=False)
            response["Idempotent-Replayed"] = "true"
            return response
        response = view(request, *args, **kwargs)
        try:
            import json as _json

            stored = _json.loads(response.content)
        except ValueError:
            stored = {"raw": response.content.decode("utf-8", "replace")}
        ZIdempotency.objects.filter(key=key).update(done=True, status=response.status_code, body=stored)
        return response

    return wrapper


# --- OAuth -----------------------------------------------------------------------------------------
@zuora_view
def oauth_token(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return failure(90000045, "Method not allowed", status=405)
    client_id = request.POST.get("client_id", "")
    client_secret = request.POST.get("client_secret", "")
    if request.POST.get("grant_type") != "client_credentials":
        return JsonResponse({"error": "unsupported_grant_type"}, status=400)
    clients = get_setting("zuora_clients")
    if not client_id or not secrets.compare_digest(clients.get(client_id, "\0"), client_secret):
        return JsonResponse({"error": "invalid_client", "error_description": "Bad credentials"}, status=401)
    token = secrets.token_hex(16)
    ZToken.objects.create(token=token, expires_at=timezone.now() + dt.timedelta(seconds=3599))
    return JsonResponse(
        {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": 3599,
            "scope": "entity.1a2b7a37 tenant.19",
            "jti": secrets.token_hex(16),
        }
    )


# --- Catalog ---------------------------------------------------------------------------------------
def _plan_status(plan: ZRatePlan, today: dt.date) -> str:
    if today < plan.effective_start:
        return "NotStarted"
    if today > plan.effective_end:
        return "Expired"
    return "Active"


def product_json(product: ZProduct, plans: list[ZRatePlan], today: dt.date) -> dict[str, Any]:
    return {
        "id": product.zid,
        "sku": product.sku,
        "name": product.name,
        "description": product.description,
        "category": product.category,
        "effectiveStartDate": product.effective_start.isoformat(),
        "effectiveEndDate": product.effective_end.isoformat(),
        "productRatePlans": [
            {
                "id": p.zid,
                "name": p.name,
                "description": p.description,
                "status": _plan_status(p, today),
                "effectiveStartDate": p.effective_start.isoformat(),
                "effectiveEndDate": p.effective_end.isoformat(),
                "productRatePlanCharges": p.charges,
            }
            for p in plans
        ],
    }


@zuora_view
def catalog_products(request: HttpRequest) -> HttpResponse:
    try:
        page = int(request.GET.get("page", "1"))
        page_size = int(request.GET.get("pageSize", "10"))
    except ValueError:
        return failure(90000027, "page and pageSize must be whole numbers", status=400)
    if page < 1 or not 1 <= page_size <= 40:
        return failure(90000027, "pageSize must be between 1 and 40; page starts at 1", status=400)
    start = (page - 1) * page_size
    products = list(ZProduct.objects.all()[start : start + page_size + 1])
    has_more = len(products) > page_size
    products = products[:page_size]
    plans: dict[int, list[ZRatePlan]] = {}
    for plan in ZRatePlan.objects.filter(product__in=products):
        plans.setdefault(plan.product_id, []).append(plan)
    today = timezone.localdate()
    body: dict[str, Any] = {
        "success": True,
        "products": [product_json(p, plans.get(p.id, []), today) for p in products],
    }
    if has_more:
        body["nextPage"] = request.build_absolute_uri(
            f"{PREFIX}/v1/catalog/products?page={page + 1}&pageSize={page_size}"
        )
    return JsonResponse(body)


# --- Orders ----------------------------------------------------------------------------------------
PERIOD_MONTHS = {"Month": 1, "Quarter": 3, "Semi_Annual": 6, "Annual": 12}


def _date(value: Any, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except (TypeError, ValueError):
        raise Reject(20, f"'{field}' must be a date in yyyy-MM-dd format, got {value!r}") from None


def _add_months(day: dt.date, months: int) -> dt.date:
    month = day.month - 1 + months
    year = day.year + month // 12
    month = month % 12 + 1
    import calendar

    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _price_for(charge: dict, currency: str) -> dict | None:
    return next((p for p in charge.get("pricing", []) if p.get("currency") == currency), None)


def _charge_amount(charge: dict, pricing: dict, quantity: Decimal, override: dict | None) -> Decimal:
    """Price of one billing period of a charge (list price, or the override's)."""
    model = charge.get("model")
    tiers = pricing.get("tiers") or []
    list_price = pricing.get("price")
    if override:
        for value in override.values():
            if isinstance(value, dict):
                if value.get("listPrice") is not None:
                    list_price = value["listPrice"]
                if value.get("quantity") is not None:
                    quantity = Decimal(str(value["quantity"]))
                if value.get("tiers"):
                    tiers = value["tiers"]
    if model in ("Tiered", "Volume") and tiers:
        total = Decimal(0)
        for tier in tiers:
            low = Decimal(str(tier.get("startingUnit") or 0))
            high = tier.get("endingUnit")
            high = Decimal(str(high)) if high not in (None, "") else None
            price = Decimal(str(tier.get("price") or 0))
            flat = tier.get("priceFormat") == "FlatFee"
            if model == "Volume":
                if quantity >= low and (high is None or quantity <= high):
                    return price if flat else price * quantity
                continue
            if quantity < low:
                break
            units = (min(quantity, high) if high is not None else quantity) - low + (1 if low > 0 else 0)
            total += price if flat else price * max(units, Decimal(0))
        return total
    price = Decimal(str(list_price or 0))
    return price if model in ("FlatFee", "DiscountFixedAmount") else price * quantity


def _subscribe(rate_plan_specs: list, currency: str, contract_date: dt.date) -> tuple[list[dict], Decimal, Decimal]:
    """Validate the rate plans a subscription asks for; return (rate plans, MRR, one-time total)."""
    if not rate_plan_specs:
        raise Reject(22, "'subscribeToRatePlans' is required and cannot be empty")
    result, mrr, one_time = [], Decimal(0), Decimal(0)
    for spec in rate_plan_specs:
        plan_id = spec.get("productRatePlanId") if isinstance(spec, dict) else None
        if not plan_id:
            raise Reject(22, "'productRatePlanId' is required")
        plan = ZRatePlan.objects.select_related("product").filter(zid=plan_id).first()
        if plan is None:
            raise Reject(40, f"Invalid ProductRatePlanId: {plan_id}")
        for start, end, what in (
            (plan.product.effective_start, plan.product.effective_end, "product"),
            (plan.effective_start, plan.effective_end, "product rate plan"),
        ):
            if not start <= contract_date <= end:
                raise Reject(
                    30,
                    f"The {what} '{plan.name if what != 'product' else plan.product.name}' is not "
                    f"effective on {contract_date.isoformat()} (effective {start} to {end})",
                )
        overrides = {
            o.get("productRatePlanChargeId"): o.get("pricing")
            for o in spec.get("chargeOverrides") or []
            if isinstance(o, dict)
        }
        known = {c["id"] for c in plan.charges}
        for charge_id in overrides:
            if charge_id not in known:
                raise Reject(40, f"Invalid productRatePlanChargeId {charge_id} for rate plan {plan_id}")
        charges = []
        for charge in plan.charges:
            pricing = _price_for(charge, currency)
            if pricing is None:
                raise Reject(30, f"Charge '{charge['name']}' of rate plan '{plan.name}' has no price in {currency}")
            quantity = Decimal(str(charge.get("defaultQuantity") or 1))
            amount = _charge_amount(charge, pricing, quantity, overrides.get(charge["id"]))
            if charge.get("type") == "Recurring":
                mrr += amount / PERIOD_MONTHS.get(charge.get("billingPeriod"), 1)
            elif charge.get("type") == "OneTime":
                one_time += amount
            charges.append(
                {
                    "productRatePlanChargeId": charge["id"],
                    "name": charge["name"],
                    "amount": str(amount),
                    "override": overrides.get(charge["id"]),
                }
            )
        result.append(
            {
                "productRatePlanId": plan.zid,
                "ratePlanName": plan.name,
                "productName": plan.product.name,
                "charges": charges,
            }
        )
    return result, mrr.quantize(Decimal("0.01")), one_time


def _validate_contact(contact: Any, field: str) -> dict:
    if not isinstance(contact, dict):
        raise Reject(22, f"'{field}' is required")
    for name in ("firstName", "lastName"):
        if not str(contact.get(name) or "").strip():
            raise Reject(22, f"'{field}.{name}' is required")
    email = contact.get("workEmail")
    if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", str(email)):
        raise Reject(20, f"'{field}.workEmail' is not a valid email address")
    return contact


def _plan_order(body: Any) -> dict[str, Any]:
    """Validate an order body as Zuora does, without writing; return what to create."""
    if not isinstance(body, dict):
        raise Reject(90, "Malformed JSON: the body must be an object", status=400)
    order_date = _date(body.get("orderDate"), "orderDate") if body.get("orderDate") else None
    if order_date is None:
        raise Reject(22, "'orderDate' is required")
    existing, new = body.get("existingAccountNumber"), body.get("newAccount")
    if bool(existing) == bool(new):
        raise Reject(20, "Exactly one of 'existingAccountNumber' and 'newAccount' is required")
    account = None
    if existing:
        account = ZAccount.objects.filter(account_number=existing).first()
        if account is None:
            raise Reject(40, f"Account {existing} does not exist")
        currency = account.currency
    else:
        if not isinstance(new, dict):
            raise Reject(20, "'newAccount' must be an object")
        for name in ("name", "currency"):
            if not str(new.get(name) or "").strip():
                raise Reject(22, f"'newAccount.{name}' is required")
        if new.get("billCycleDay") is None:
            raise Reject(22, "'newAccount.billCycleDay' is required")
        if not isinstance(new.get("billCycleDay"), int) or not 0 <= new["billCycleDay"] <= 31:
            raise Reject(20, "'newAccount.billCycleDay' must be between 0 and 31")
        currency = str(new["currency"]).upper()
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise Reject(20, f"'newAccount.currency' value '{new['currency']}' is invalid")
        _validate_contact(new.get("billToContact"), "newAccount.billToContact")
        if new.get("soldToContact") is not None:
            _validate_contact(new.get("soldToContact"), "newAccount.soldToContact")
        if new.get("autoPay"):
            raise Reject(30, "Cannot enable AutoPay: the account has no default payment method")
    subscriptions = body.get("subscriptions") or []
    line_items = body.get("orderLineItems") or []
    if not isinstance(subscriptions, list) or not isinstance(line_items, list):
        raise Reject(20, "'subscriptions' and 'orderLineItems' must be arrays")
    if len(line_items) > 100:
        raise Reject(30, "An order can have at most 100 order line items")
    if not subscriptions and not line_items:
        raise Reject(22, "An order needs at least one subscription or order line item")
    planned = []
    for sub in subscriptions:
        actions = sub.get("orderActions") if isinstance(sub, dict) else None
        if not actions:
            raise Reject(22, "'orderActions' is required")
        for action in actions:
            kind = action.get("type")
            if kind != "CreateSubscription":
                raise Reject(
                    20,
                    f"Order action type '{kind}' is not supported by this emulator" if kind else "'type' is required",
                )
            contract = order_date
            for trigger in action.get("triggerDates") or []:
                if trigger.get("name") == "ContractEffective":
                    contract = _date(trigger.get("triggerDate"), "triggerDates.triggerDate")
            create = action.get("createSubscription") or {}
            terms = create.get("terms") or {}
            initial = terms.get("initialTerm") or {}
            term_type = initial.get("termType", "TERMED")
            if term_type not in ("TERMED", "EVERGREEN"):
                raise Reject(20, "'termType' value should be one of: TERMED, EVERGREEN")
            period = initial.get("period", 12)
            if term_type == "TERMED" and (not isinstance(period, int) or period < 1):
                raise Reject(20, "'initialTerm.period' must be a positive whole number")
            renewal_terms = terms.get("renewalTerms") or [{"period": period}]
            rate_plans, mrr, one_time = _subscribe(create.get("subscribeToRatePlans") or [], currency, contract)
            planned.append(
                {
                    "contract": contract,
                    "term_type": term_type,
                    "period": period if term_type == "TERMED" else 0,
                    "period_type": initial.get("periodType", "Month"),
                    "auto_renew": bool(terms.get("autoRenew", True)),
                    "renewal": renewal_terms[0].get("period", period),
                    "rate_plans": rate_plans,
                    "mrr": mrr,
                    "one_time": one_time,
                    "custom_fields": sub.get("customFields") or {},
                }
            )
    items = []
    for item in line_items:
        if not isinstance(item, dict) or not item.get("itemName"):
            raise Reject(22, "'orderLineItems.itemName' is required")
        try:
            qty = Decimal(str(item.get("quantity", 1)))
            amount = Decimal(str(item.get("amountPerUnit", item.get("listPricePerUnit", 0))))
        except InvalidOperation:
            raise Reject(20, "'orderLineItems.quantity' and 'amountPerUnit' must be numbers") from None
        items.append({**item, "amount": str(qty * amount)})
    return {
        "order_date": order_date,
        "account": account,
        "new": new,
        "currency": currency,
        "subscriptions": planned,
        "line_items": items,
    }


def _reject_response(exc: Reject) -> JsonResponse:
    return failure(exc.code, exc.message, status=exc.status)


@zuora_view
@idempotent
def orders(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return failure(90000045, "Method not allowed", status=405)
    try:
        body = json_body(request)
    except ValueError:
        return failure(ORDERS * 100 + 90, "Malformed JSON in request body", status=400)
    try:
        plan = _plan_order(body)
    except Reject as exc:
        return _reject_response(exc)
    account = plan["account"]
    if account is None:
        new = plan["new"]
        account = ZAccount.objects.create(
            name=new["name"],
            currency=plan["currency"],
            crm_id=str(new.get("crmId") or ""),
            bill_cycle_day=new["billCycleDay"],
            payment_term=new.get("paymentTerm") or "Due Upon Receipt",
            custom_fields=new.get("customFields") or {},
            bill_to=new["billToContact"],
            sold_to=new.get("soldToContact") or new["billToContact"],
        )
        account.account_number = new.get("accountNumber") or f"A{account.id:08d}"
        account.save(update_fields=["account_number"])
    order = ZOrder.objects.create(
        account_number=account.account_number,
        order_date=plan["order_date"],
        request=body,
        line_items=plan["line_items"],
    )
    order.order_number = f"O-{order.id:08d}"
    order.save(update_fields=["order_number"])
    created = []
    for sub in plan["subscriptions"]:
        end = _add_months(sub["contract"], sub["period"]) if sub["term_type"] == "TERMED" else None
        subscription = ZSubscription.objects.create(
            account=account,
            term_type=sub["term_type"],
            initial_term=sub["period"],
            initial_term_period_type=sub["period_type"],
            renewal_term=sub["renewal"],
            auto_renew=sub["auto_renew"],
            contract_effective_date=sub["contract"],
            term_start_date=sub["contract"],
            term_end_date=end,
            custom_fields=sub["custom_fields"],
            rate_plans=sub["rate_plans"],
            order_number=order.order_number,
        )
        subscription.subscription_number = f"A-S{subscription.id:08d}"
        subscription.save(update_fields=["subscription_number"])
        created.append({"subscriptionNumber": subscription.subscription_number, "status": "Active"})
    body_out: dict[str, Any] = {
        "success": True,
        "orderNumber": order.order_number,
        "accountNumber": account.account_number,
        "status": "Completed",
        "subscriptions": created,
    }
    if request.GET.get("returnIds") == "true":
        body_out["accountId"] = str(account.id)
    return JsonResponse(body_out)


@zuora_view
def orders_preview(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return failure(90000045, "Method not allowed", status=405)
    try:
        body = json_body(request)
    except ValueError:
        return failure(ORDERS * 100 + 90, "Malformed JSON in request body", status=400)
    if isinstance(body, dict) and body.get("previewAccountInfo") and not body.get("existingAccountNumber"):
        info = body["previewAccountInfo"]
        body = {
            **body,
            "newAccount": {
                "name": "preview",
                "currency": info.get("currency"),
                "billCycleDay": 0,
                "billToContact": {"firstName": "P", "lastName": "P"},
            },
        }
    try:
        with transaction.atomic():
            plan = _plan_order(body)
            transaction.set_rollback(True)
    except Reject as exc:
        return _reject_response(exc)
    metrics = []
    for sub in plan["subscriptions"]:
        months = sub["period"] if sub["term_type"] == "TERMED" else 12
        metrics.append(
            {
                "charges": [
                    {
                        "productRatePlanChargeId": c["productRatePlanChargeId"],
                        "productRatePlanId": rp["productRatePlanId"],
                    }
                    for rp in sub["rate_plans"]
                    for c in rp["charges"]
                ],
                "cmrr": {"regular": float(sub["mrr"]), "discount": 0, "regularDelta": float(sub["mrr"])},
                "tcv": {"regular": float(sub["mrr"] * months + sub["one_time"]), "discount": 0},
            }
        )
    return JsonResponse({"success": True, "previewResult": {"chargeMetrics": metrics}})


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
        "paymentTerms": account.payment_term,
        "createdDate": account.created.isoformat(),
        **account.custom_fields,
    }


def subscription_json(sub: ZSubscription, expand: set[str]) -> dict[str, Any]:
    data = {
        "id": str(sub.id),
        "name": sub.subscription_number,
        "accountId": str(sub.account_id),
        "status": sub.status,
        "termType": sub.term_type,
        "initialTerm": sub.initial_term,
        "autoRenew": sub.auto_renew,
        "contractEffectiveDate": sub.contract_effective_date.isoformat(),
        "termStartDate": sub.term_start_date.isoformat(),
        "termEndDate": sub.term_end_date.isoformat() if sub.term_end_date else None,
        "createdDate": sub.created.isoformat(),
        **sub.custom_fields,
    }
    if "account" in expand:
        data["account"] = account_json(sub.account)
    if "rateplans" in expand:
        data["ratePlans"] = [
            {"productRatePlanId": rp["productRatePlanId"], "name": rp["ratePlanName"]} for rp in sub.rate_plans
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


def _object_query(request: HttpRequest, records: list[dict]) -> HttpResponse:
    filters = []
    for raw in request.GET.getlist("filter[]"):
        match = FILTER.match(raw)
        if not match:
            return failure(
                90000027, f"Invalid filter '{raw}': expected <field>.<EQ|NE|LT|GT|GE|LE|SW|IN>:<value>", status=400
            )
        filters.append(match.groups())
    try:
        page_size = int(request.GET.get("pageSize", "10"))
        offset = int(base64.urlsafe_b64decode(request.GET["cursor"]).decode()) if request.GET.get("cursor") else 0
    except (ValueError, UnicodeDecodeError):
        return failure(90000027, "Invalid pageSize or cursor", status=400)
    if not 1 <= page_size <= 99:
        return failure(90000027, "pageSize must be between 1 and 99", status=400)
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
    return _object_query(request, [account_json(a) for a in ZAccount.objects.order_by("id")])


@zuora_view
def query_subscriptions(request: HttpRequest, key: str | None = None) -> HttpResponse:
    expand = set(request.GET.getlist("expand[]"))
    queryset = ZSubscription.objects.select_related("account").order_by("id")
    if key is not None:
        sub = queryset.filter(subscription_number=key).first()
        if sub is None:
            return failure(50000040, f"Subscription {key} not found", status=404)
        return JsonResponse(subscription_json(sub, expand))
    return _object_query(request, [subscription_json(s, expand) for s in queryset])


# --- Usage -----------------------------------------------------------------------------------------
USAGE_COLUMNS = [
    "ACCOUNT_ID",
    "UOM",
    "QTY",
    "STARTDATE",
    "ENDDATE",
    "SUBSCRIPTION_ID",
    "CHARGE_ID",
    "DESCRIPTION",
    "UNIQUE_KEY",
]


@zuora_view
@idempotent
def usage_import(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return failure(90000045, "Method not allowed", status=405)
    upload = request.FILES.get("file")
    if upload is None:
        return failure(90000023, "The multipart field 'file' is required", status=400)
    if upload.size > 4 * 1024 * 1024:
        return failure(90000070, "The usage file exceeds 4 MB")
    if len(upload.name) > 50:
        return failure(90000020, "The file name must be at most 50 characters")
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        return failure(90000020, "The usage file must be UTF-8 CSV")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in USAGE_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        return failure(90000022, f"Missing header(s): {', '.join(missing)}")
    rows = list(reader)
    record = ZUsageImport.objects.create(file_name=upload.name, size=upload.size, rows=rows)
    return JsonResponse({"success": True, "size": upload.size, "checkImportStatus": f"/v1/usage/{record.id}/status"})


def _process_usage(record: ZUsageImport) -> None:
    errors = []
    parsed = []
    for line, row in enumerate(record.rows, start=2):
        try:
            start = dt.datetime.strptime(row["STARTDATE"], "%m/%d/%Y").date()
            end = dt.datetime.strptime(row["ENDDATE"], "%m/%d/%Y").date() if row.get("ENDDATE") else None
            qty = Decimal(row["QTY"])
        except (ValueError, InvalidOperation, KeyError):
            errors.append(f"line {line}: bad QTY or date (dates are MM/DD/YYYY)")
            continue
        if not ZAccount.objects.filter(account_number=row["ACCOUNT_ID"]).exists():
            errors.append(f"line {line}: account {row['ACCOUNT_ID']} not found")
        if (
            row.get("SUBSCRIPTION_ID")
            and not ZSubscription.objects.filter(subscription_number=row["SUBSCRIPTION_ID"]).exists()
        ):
            errors.append(f"line {line}: subscription {row['SUBSCRIPTION_ID']} not found")
        if row.get("UNIQUE_KEY") and ZUsage.objects.filter(unique_key=row["UNIQUE_KEY"]).exists():
            errors.append(f"line {line}: UNIQUE_KEY {row['UNIQUE_KEY']} was already imported")
        parsed.append(
            ZUsage(
                unique_key=row.get("UNIQUE_KEY", ""),
                account_number=row["ACCOUNT_ID"],
                subscription_number=row.get("SUBSCRIPTION_ID", ""),
                uom=row["UOM"],
                quantity=qty,
                start_date=start,
                end_date=end,
                usage_import=record,
            )
        )
    if errors:  # one bad row rejects the whole file
        record.status, record.error = "Failed", "; ".join(errors)[:5000]
    else:
        ZUsage.objects.bulk_create(parsed)
        record.status = "Completed"


@zuora_view
def usage_status(request: HttpRequest, import_id: str) -> HttpResponse:
    record = ZUsageImport.objects.select_for_update().filter(id=import_id).first() if import_id.isdigit() else None
    if record is None:
        return failure(50000040, f"Usage import {import_id} not found", status=404)
    if record.status in ("Pending", "Processing"):
        record.polls += 1
        if record.polls > get_setting("zuora_usage_polls_before_done"):
            _process_usage(record)
        else:
            record.status = "Processing"
        record.save()
    return JsonResponse(
        {"success": True, "importStatus": record.status, "message": record.error or None, "id": str(record.id)}
    )
