"""The Zuora emulator's Orders API: POST /v1/orders (account + subscription, atomically, with Zuora's
validation) and /v1/orders/preview."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse

from sandbox import zuora_subscriptions
from sandbox.common import json_body
from sandbox.models import (
    CURRENT_ENTITY,
    ZAccount,
    ZOrder,
    ZRatePlan,
    ZSubscription,
    ZUnitOfMeasure,
)
from sandbox.zuora import ORDERS, Reject, failure, idempotent, zuora_view

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


def tier_problem(tiers: list[dict], places: int) -> str | None:
    """Zuora's rules for tiers sent as a charge override: numbered in order, ascending, contiguous one unit of
    measure step apart (inclusive at both ends), the last one open, no negative price. The problem, or None."""
    if not tiers:
        return "tiers must not be empty"
    unit = Decimal(1).scaleb(-places)
    previous_end: Decimal | None = None
    for index, tier in enumerate(tiers):
        if not isinstance(tier, dict):
            return f"tier {index + 1}: must be an object"
        try:
            start = Decimal(str(tier.get("startingUnit")))
            end = None if tier.get("endingUnit") in (None, "") else Decimal(str(tier.get("endingUnit")))
            price = Decimal(str(tier.get("price")))
        except (InvalidOperation, ValueError):
            return f"tier {index + 1}: startingUnit, endingUnit and price must be numbers"
        if tier.get("tier") not in (index + 1, str(index + 1)):
            return f"tier {index + 1}: tiers must be numbered 1, 2, 3… in order"
        if price < 0:
            return f"tier {index + 1}: the price must not be negative"
        for bound in (start, end):
            if bound is not None and bound % unit != 0:
                return f"tier {index + 1}: {bound} has more decimal places than the unit of measure ({places})"
        if end is not None and end < start:
            return f"tier {index + 1}: endingUnit {end} is below startingUnit {start}"
        if index == 0 and start < 0:
            return "tier 1: startingUnit must not be negative"
        if previous_end is not None and start != previous_end + unit:
            return (
                f"tier {index + 1}: startingUnit {start} must follow the previous tier's endingUnit "
                f"{previous_end} by one unit of measure step ({unit})"
            )
        if end is None and index < len(tiers) - 1:
            return f"tier {index + 1}: only the last tier may have no endingUnit"
        previous_end = end
    if previous_end is not None:
        return "the last tier must have no endingUnit"
    return None


def _check_tiers(charge: dict, pricing: Any) -> None:
    """Tier overrides are checked as Zuora checks them, against the charge's unit of measure."""
    for value in (pricing or {}).values():
        if not isinstance(value, dict) or "tiers" not in value:
            continue
        if charge.get("model") not in ("Tiered", "Volume", "TieredWithOverage"):
            raise Reject(21, f"Charge '{charge['name']}' is {charge.get('model')}: it has no tiers to override")
        unit = ZUnitOfMeasure.objects.filter(name=charge.get("uom") or "").first()
        if unit is None:
            raise Reject(40, f"Unit of measure '{charge.get('uom')}' of charge '{charge['name']}' does not exist")
        tiers = value["tiers"]
        problem = tier_problem(tiers if isinstance(tiers, list) else [], unit.decimal_places)
        if problem:
            raise Reject(21, f"Invalid tiers for charge '{charge['name']}': {problem}")


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
            _check_tiers(charge, overrides.get(charge["id"]))
            pricing = _price_for(charge, currency)
            if pricing is None:
                raise Reject(30, f"Charge '{charge['name']}' of rate plan '{plan.name}' has no price in {currency}")
            quantity = Decimal(str(charge.get("defaultQuantity") or 1))
            for value in (overrides.get(charge["id"]) or {}).values():
                if isinstance(value, dict) and value.get("quantity") is not None:
                    quantity = Decimal(str(value["quantity"]))
            amount = _charge_amount(charge, pricing, quantity, overrides.get(charge["id"]))
            if charge.get("type") == "Recurring":
                mrr += amount / PERIOD_MONTHS.get(charge.get("billingPeriod"), 1)
            elif charge.get("type") == "OneTime":
                one_time += amount
            charge_mrr = (
                amount / PERIOD_MONTHS.get(charge.get("billingPeriod"), 1)
                if charge.get("type") == "Recurring"
                else Decimal(0)
            )
            charges.append(
                {
                    "productRatePlanChargeId": charge["id"],
                    "name": charge["name"],
                    "type": charge.get("type"),
                    "model": charge.get("model"),
                    "billingPeriod": charge.get("billingPeriod"),
                    "effectiveStartDate": contract_date.isoformat(),
                    "chargedThroughDate": None,  # set by a bill run
                    "quantity": str(quantity),
                    "amount": str(amount),
                    "mrr": str(charge_mrr.quantize(Decimal("0.01"))),
                    "override": overrides.get(charge["id"]),
                }
            )
        result.append(
            {
                "productRatePlanId": plan.zid,
                "ratePlanName": plan.name,
                "productName": plan.product.name,
                "productId": plan.product.zid,
                "amendmentType": "NewProduct",
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
        entity = CURRENT_ENTITY.get()
        if entity is not None and entity.currencies and currency not in entity.currencies:
            raise Reject(
                20, f"Currency {currency} is not enabled in entity {entity.name} ({', '.join(entity.currencies)})"
            )
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
    planned, changes = [], []
    for sub in subscriptions:
        actions = sub.get("orderActions") if isinstance(sub, dict) else None
        if not actions:
            raise Reject(22, "'orderActions' is required")
        if sub.get("subscriptionNumber"):  # an order on an existing subscription: a new version of it
            changes.append(zuora_subscriptions.plan_change(sub, account, order_date))
            continue
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
        "changes": changes,
        "line_items": items,
    }


def _reject_response(exc: Reject) -> JsonResponse:
    return failure(exc.code, exc.message, status=exc.status)


def _order_body(request: HttpRequest) -> Any:
    """The POSTed order, or the answer Zuora gives instead (wrong method, malformed JSON)."""
    if request.method != "POST":
        return failure(90000045, "Method not allowed", status=405)
    try:
        return json_body(request)
    except ValueError:
        return failure(ORDERS * 100 + 90, "Malformed JSON in request body", status=400)


@zuora_view
@idempotent
def orders(request: HttpRequest) -> HttpResponse:
    body = _order_body(request)
    if isinstance(body, HttpResponse):
        return body
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
    order.communication_profile_id = account.communication_profile_id
    order.actions = [a for change in plan["changes"] for a in change["actions"]]
    order.credit = sum((change["credit"] for change in plan["changes"]), Decimal(0))
    order.prorated = any(change["prorated"] for change in plan["changes"])
    order.save(update_fields=["order_number", "actions", "credit", "prorated", "communication_profile_id"])
    created = []
    for change in plan["changes"]:
        version = zuora_subscriptions.apply_change(change, order)
        created.append({"subscriptionNumber": version.subscription_number, "status": version.status})
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
            # Zuora: a termed subscription's end date is its term end date (a cancellation sets it earlier)
            subscription_end_date=end,
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
    body = _order_body(request)
    if isinstance(body, HttpResponse):
        return body
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
        # Zuora's shape: the figures sit on each charge (cmrr.regular is the charge's MRR).
        months = Decimal(sub["period"] if sub["term_type"] == "TERMED" else 12)
        charges = []
        for rp in sub["rate_plans"]:
            for c in rp["charges"]:
                mrr = Decimal(c.get("mrr") or 0)
                one_time = Decimal(c["amount"]) if c.get("type") == "OneTime" else Decimal(0)
                charges.append(
                    {
                        "productRatePlanChargeId": c["productRatePlanChargeId"],
                        "productRatePlanId": rp["productRatePlanId"],
                        "cmrr": {"regular": float(mrr), "regularDelta": float(mrr), "discount": 0, "discountDelta": 0},
                        "tcv": {"regular": float(mrr * months + one_time), "discount": 0},
                    }
                )
        metrics.append({"subscriptionNumber": "", "charges": charges})
    metrics += [zuora_subscriptions.preview_metrics(change) for change in plan["changes"]]
    result: dict[str, Any] = {"chargeMetrics": metrics}
    options = body.get("previewOptions") if isinstance(body.get("previewOptions"), dict) else {}
    if "BillingDocs" in (options.get("previewTypes") or []):
        result["invoices"] = _preview_invoices(plan)
    return JsonResponse({"success": True, "previewResult": result})


def _preview_invoices(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The invoice a bill run through the term's end would make (Zuora's preview of billing documents): each
    recurring charge once per billing period, billed in advance; one-time charges and order line items on their
    day; usage is billed in arrears, so it is not in a preview. No tax in this tenant."""
    items: list[dict[str, Any]] = []
    end = None
    for sub in plan["subscriptions"]:
        months = sub["period"] if sub["term_type"] == "TERMED" else 12
        term_end = _add_months(sub["contract"], months)
        end = max(end or term_end, term_end)
        for rp in sub["rate_plans"]:
            for charge in rp["charges"]:
                kind = charge.get("type")
                if kind not in ("Recurring", "OneTime"):
                    continue
                period = PERIOD_MONTHS.get(charge.get("billingPeriod") or "Month", 1) if kind == "Recurring" else 0
                start = sub["contract"]
                while start < term_end:
                    stop = _add_months(start, period) if period else start + dt.timedelta(days=1)
                    items.append(
                        {
                            "serviceStartDate": start.isoformat(),
                            "serviceEndDate": (min(stop, term_end) - dt.timedelta(days=1)).isoformat(),
                            "amountWithoutTax": float(Decimal(charge["amount"])),
                            "taxAmount": 0.0,
                            "chargeName": charge["name"],
                            "productName": rp["productName"],
                            "productRatePlanChargeId": charge["productRatePlanChargeId"],
                            "processingType": "Charge",
                        }
                    )
                    if not period:
                        break
                    start = stop
    for line in plan["line_items"]:
        day = str(line.get("transactionStartDate") or plan["order_date"].isoformat())
        items.append(
            {
                "serviceStartDate": day,
                "serviceEndDate": day,
                "amountWithoutTax": float(Decimal(line["amount"])),
                "taxAmount": 0.0,
                "chargeName": str(line.get("itemName")),
                "productRatePlanChargeId": str(line.get("productRatePlanChargeId") or ""),
                "processingType": "Charge",
            }
        )
    if not items:
        return []
    total = sum(Decimal(str(i["amountWithoutTax"])) for i in items)
    target = end or plan["order_date"]
    return [
        {
            "amount": float(total),
            "amountWithoutTax": float(total),
            "taxAmount": 0.0,
            "targetDate": target.isoformat(),
            "invoiceItems": items,
        }
    ]
