"""The Zuora emulator's life after the sale: subscription versions, orders on existing subscriptions
(ChangePlan, RemoveProduct, AddProduct, CancelSubscription), undoing an order, and bill runs.

As Zuora does (../shared/reference/zuora-api.md, "Plan change, cancellation, renewal"):
- every order on a subscription makes a new version (new id, same number, version + 1); the previous
  version stays behind with status Expired, with its own rate plans;
- `GET /v1/subscriptions/{number}` answers the latest version;
- a charge removed or changed before the date it was invoiced through makes a credit memo, and a change
  that does not fall on a billing-period boundary makes a prorated partial period — both are recorded on
  the order, so a test can prove there were none;
- `DELETE /v1/orders/{number}` rolls the subscriptions it changed back to their previous version, and is
  refused when the order is not the subscription's latest change or its charges were invoiced since;
- a rate plan an order removes (RemoveProduct, or the old plan of a ChangePlan) stays on the later versions,
  marked `AmendmentType = RemoveProduct` (REST: `lastChangeType: Remove`), its charges end-dated;
- `subscriptionEndDate` is a termed subscription's term end date, always, until a cancellation sets it to the
  cancellation date; an active evergreen subscription has none;
- charged-through dates are kept per charge (a charge added later has none until it is billed);
- ChangePlan names its rate plan by exactly one of `ratePlanId`, `productRatePlanId`, `externalCatalogPlanId`;
  with `EffectiveEndOfBillingPeriod` it carries no trigger dates; with `SpecificDate`, a ContractEffective one.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse

from sandbox.models import ZAccount, ZInvoice, ZOrder, ZSubscription
from sandbox.zuora import Reject, failure, zuora_view

SUBSCRIPTIONS = 500000  # resource code of subscription errors in this emulator


def latest(number: str) -> ZSubscription | None:
    return (
        ZSubscription.objects.select_related("account").filter(subscription_number=number).order_by("-version").first()
    )


def rate_plan_id(sub: ZSubscription, index: int) -> str:
    """Rate plans belong to a version: their ids differ from one version to the next, as in Zuora."""
    return f"{sub.id}-{index}"


REMOVED = "RemoveProduct"
CHANGE_TYPE = {"NewProduct": "Add", "UpdateProduct": "Update", REMOVED: "Remove"}  # REST's lastChangeType


def in_force(plan: dict) -> bool:
    """A rate plan the subscription still bills (not one an amendment removed)."""
    return plan.get("amendmentType") != REMOVED


def plan_mrr(plan: dict) -> Decimal:
    return sum((Decimal(str(c.get("mrr") or 0)) for c in plan.get("charges") or []), Decimal(0))


def charge_mrrs(rate_plans: list[dict]) -> dict[str, Decimal]:
    """Charge id → its MRR, over a version's rate plans in force."""
    found: dict[str, Decimal] = {}
    for plan in rate_plans:
        if not in_force(plan):
            continue
        for charge in plan.get("charges") or []:
            key = charge.get("productRatePlanChargeId") or ""
            found[key] = found.get(key, Decimal(0)) + Decimal(str(charge.get("mrr") or 0))
    return found


# --- dates -------------------------------------------------------------------------------------------
def _months_between(start: dt.date, end: dt.date) -> int:
    return (end.year - start.year) * 12 + end.month - start.month


def on_boundary(sub: ZSubscription, day: dt.date) -> bool:
    """Whether `day` starts a billing period (monthly periods from the term start, as the bill cycle)."""
    from sandbox.zuora_orders import _add_months

    months = _months_between(sub.term_start_date, day)
    return months >= 0 and _add_months(sub.term_start_date, months) == day


def end_of_billing_period(sub: ZSubscription, today: dt.date) -> dt.date:
    """Where the period being billed ends: the charged-through date, else the next period boundary."""
    from sandbox.zuora_orders import _add_months

    if sub.charged_through_date and sub.charged_through_date >= today:
        return sub.charged_through_date
    months = max(_months_between(sub.term_start_date, today), 0)
    boundary = _add_months(sub.term_start_date, months)
    return boundary if boundary > today else _add_months(sub.term_start_date, months + 1)


def _trigger(action: dict, default: dt.date) -> dt.date:
    from sandbox.zuora_orders import _date

    for trigger in action.get("triggerDates") or []:
        if trigger.get("name") == "ContractEffective":
            return _date(trigger.get("triggerDate"), "triggerDates.triggerDate")
    return default


def _find_plan(sub: ZSubscription, plans: list[dict], spec: dict, what: str) -> int:
    """Index of the rate plan in force an action names (by ratePlanId, else productRatePlanId)."""
    rate_plan = spec.get("ratePlanId")
    product_plan = spec.get("productRatePlanId")
    for index, plan in enumerate(plans):
        if not in_force(plan):
            continue
        if rate_plan and plan.get("id") == rate_plan:
            return index
        if not rate_plan and product_plan and plan.get("productRatePlanId") == product_plan:
            return index
    raise Reject(40, f"{what}: rate plan {rate_plan or product_plan} is not on subscription {sub.subscription_number}")


def _removed(plan: dict, when: dt.date) -> dict:
    """A rate plan an amendment removed: kept on the version, marked, its charges ending on `when`."""
    charges = [{**c, "effectiveEndDate": when.isoformat()} for c in plan.get("charges") or []]
    return {**plan, "amendmentType": REMOVED, "charges": charges}


def _change_plan_rules(action: dict, change: dict) -> None:
    """What Zuora's ChangePlan refuses, in its own words (zuora-sdk: CreateOrderChangePlan,
    ChangePlanEffectivePolicy)."""
    named = [k for k in ("externalCatalogPlanId", "ratePlanId", "productRatePlanId") if change.get(k)]
    if len(named) > 1:
        raise Reject(
            20,
            "Please provide only one of externalCatalogPlanId, ratePlanId or productRatePlanId "
            f"(this ChangePlan gives {', '.join(named)})",
        )
    if not named:
        raise Reject(22, "ChangePlan: one of ratePlanId, productRatePlanId or externalCatalogPlanId is required")
    policy = change.get("effectivePolicy")
    triggers = action.get("triggerDates") or []
    if policy == "EffectiveEndOfBillingPeriod" and triggers:
        raise Reject(
            20,
            "If the effectivePolicy field is set to EffectiveEndOfBillingPeriod, you cannot set the billing trigger "
            "dates: the system sets them to the end of the billing period",
        )
    if policy == "SpecificDate" and not any(t.get("name") == "ContractEffective" for t in triggers):
        raise Reject(22, "ChangePlan with effectivePolicy SpecificDate needs a ContractEffective trigger date")


# --- orders on an existing subscription ---------------------------------------------------------------
def plan_change(spec: dict, account: ZAccount | None, order_date: dt.date) -> dict[str, Any]:
    """Validate the actions of an order on an existing subscription; return what the new version is."""
    from sandbox.zuora_orders import _date, _subscribe

    number = spec.get("subscriptionNumber")
    sub = latest(str(number))
    if sub is None or sub.status == "Expired":
        raise Reject(40, f"Subscription {number} does not exist")
    if account is None or sub.account_id != account.id:
        raise Reject(40, f"Subscription {number} does not belong to the order's account")
    if sub.status == "Cancelled":
        raise Reject(30, f"Subscription {number} is cancelled; it cannot be changed")
    plans = [{**p, "id": rate_plan_id(sub, i)} for i, p in enumerate(sub.rate_plans)]
    before = charge_mrrs(plans)
    status, end_date = sub.status, sub.subscription_end_date
    actions, effective_dates = [], []
    removed_mrr = Decimal(0)
    for action in spec.get("orderActions") or []:
        kind = action.get("type")
        when = _trigger(action, order_date)
        if kind == "ChangePlan":
            change = action.get("changePlan") or {}
            _change_plan_rules(action, change)
            policy = change.get("effectivePolicy") or "SpecificDate"
            if policy == "EffectiveImmediately":
                when = order_date
            elif policy == "EffectiveEndOfBillingPeriod":
                when = end_of_billing_period(sub, order_date)
            elif policy != "SpecificDate":
                raise Reject(20, f"'effectivePolicy' value '{policy}' is invalid")
            index = _find_plan(sub, plans, change, "ChangePlan")
            new_spec = change.get("newProductRatePlan") or {}
            new_plans, _, _ = _subscribe([new_spec], account.currency, when)
            removed_mrr += plan_mrr(plans[index])
            actions.append(
                {"type": kind, "from": plans[index]["productRatePlanId"], "to": new_plans[0]["productRatePlanId"]}
            )
            plans[index] = _removed(plans[index], when)
            plans.extend(new_plans)
        elif kind == "RemoveProduct":
            index = _find_plan(sub, plans, action.get("removeProduct") or {}, "RemoveProduct")
            removed_mrr += plan_mrr(plans[index])
            actions.append({"type": kind, "from": plans[index]["productRatePlanId"]})
            plans[index] = _removed(plans[index], when)
        elif kind == "AddProduct":
            new_plans, _, _ = _subscribe([action.get("addProduct") or {}], account.currency, when)
            actions.append({"type": kind, "to": new_plans[0]["productRatePlanId"]})
            plans.extend(new_plans)
        elif kind == "UpdateProduct":
            update = action.get("updateProduct") or {}
            index = _find_plan(sub, plans, update, "UpdateProduct")
            plans[index] = {
                **updated_plan(plans[index], update.get("chargeUpdates") or [], account.currency),
                "amendmentType": "UpdateProduct",
            }
            actions.append({"type": kind, "to": plans[index]["productRatePlanId"]})
        elif kind == "CancelSubscription":
            cancel = action.get("cancelSubscription") or {}
            policy = cancel.get("cancellationPolicy")
            if policy == "EndOfCurrentTerm":
                if sub.term_type != "TERMED" or sub.term_end_date is None:
                    raise Reject(30, "EndOfCurrentTerm cannot be used for an evergreen subscription")
                when = sub.term_end_date
            elif policy == "EndOfLastInvoicePeriod":
                when = sub.charged_through_date or sub.term_start_date
            elif policy == "SpecificDate":
                if not cancel.get("cancellationEffectiveDate"):
                    raise Reject(22, "'cancellationEffectiveDate' is required for the SpecificDate policy")
                when = _date(cancel["cancellationEffectiveDate"], "cancellationEffectiveDate")
            else:
                raise Reject(
                    20,
                    "'cancellationPolicy' value should be one of: EndOfCurrentTerm, "
                    "EndOfLastInvoicePeriod, SpecificDate",
                )
            if when < sub.contract_effective_date:
                raise Reject(
                    30,
                    f"The cancellation effective date {when} cannot be earlier than the subscription's contract "
                    f"effective date {sub.contract_effective_date}",
                )
            removed_mrr += sum(before.values(), Decimal(0))
            status, end_date = "Cancelled", when
            actions.append({"type": kind, "policy": policy})
        elif kind:
            raise Reject(20, f"Order action type '{kind}' is not supported by this emulator")
        else:
            raise Reject(22, "'type' is required")
        actions[-1].update(subscription=sub.subscription_number, effective=when.isoformat())
        effective_dates.append(when)
    if not actions:
        raise Reject(22, "'orderActions' is required")
    credit = Decimal(0)
    prorated = False
    for when in effective_dates:
        ctd = sub.charged_through_date
        if ctd and when < ctd:  # invoiced through ctd: the unused part comes back as a credit memo
            credit += (removed_mrr * Decimal((ctd - when).days) / Decimal(30)).quantize(Decimal("0.01"))
        if status != "Cancelled" and not on_boundary(sub, when):
            prorated = True
    after = charge_mrrs(plans) if status != "Cancelled" else {}
    return {
        "subscription": sub,
        "rate_plans": [{k: v for k, v in p.items() if k != "id"} for p in plans],
        # charged through the same date as before for the charges kept; new ones wait for their first bill
        "status": status,
        "end_date": end_date,
        "actions": actions,
        "credit": credit,
        "prorated": prorated,
        "before": before,
        "after": after,
        "custom_fields": spec.get("customFields") or {},
    }


def updated_plan(plan: dict, updates: list, currency: str) -> dict:
    """A rate plan with new charge quantities (UpdateProduct), priced from the catalog."""
    from sandbox.models import ZRatePlan
    from sandbox.zuora_orders import PERIOD_MONTHS, _charge_amount, _price_for

    catalog = ZRatePlan.objects.filter(zid=plan.get("productRatePlanId")).first()
    known = {c["id"]: c for c in (catalog.charges if catalog else [])}
    charges = [dict(c) for c in plan.get("charges") or []]
    for update in updates:
        if not isinstance(update, dict):
            raise Reject(20, "'chargeUpdates' must be objects")
        charge_id = update.get("productRatePlanChargeId")
        target = next((c for c in charges if c.get("productRatePlanChargeId") == charge_id), None)
        if target is None or charge_id not in known:
            raise Reject(40, f"UpdateProduct: charge {charge_id} is not on rate plan {plan.get('productRatePlanId')}")
        quantity = None
        for value in (update.get("pricing") or {}).values():
            if isinstance(value, dict) and value.get("quantity") is not None:
                quantity = Decimal(str(value["quantity"]))
        if quantity is None or quantity < 0:
            raise Reject(20, "UpdateProduct: 'pricing.<model>.quantity' must be a number of at least 0")
        pricing = _price_for(known[charge_id], currency) or {}
        override = target.get("override")
        if override:  # a negotiated price stays; its quantity gives way to the update's
            override = {k: {**v, "quantity": str(quantity)} if isinstance(v, dict) else v for k, v in override.items()}
            target["override"] = override
        amount = _charge_amount(known[charge_id], pricing, quantity, override)
        target["quantity"] = str(quantity)
        target["amount"] = str(amount)
        months = PERIOD_MONTHS.get(known[charge_id].get("billingPeriod"), 1)
        target["mrr"] = str((amount / months).quantize(Decimal("0.01")) if target.get("type") == "Recurring" else 0)
    return {**plan, "charges": charges}


def apply_change(change: dict, order: ZOrder) -> ZSubscription:
    """Write the new version; the previous one is kept, Expired."""
    old: ZSubscription = change["subscription"]
    ZSubscription.objects.filter(id=old.id).update(prior_status=old.status, status="Expired")
    return ZSubscription.objects.create(
        subscription_number=old.subscription_number,
        version=old.version + 1,
        account=old.account,
        status=change["status"],
        subscription_end_date=change["end_date"],
        charged_through_date=old.charged_through_date,
        term_type=old.term_type,
        initial_term=old.initial_term,
        initial_term_period_type=old.initial_term_period_type,
        renewal_term=old.renewal_term,
        auto_renew=old.auto_renew,
        contract_effective_date=old.contract_effective_date,
        term_start_date=old.term_start_date,
        term_end_date=old.term_end_date,
        custom_fields={**old.custom_fields, **change["custom_fields"]},
        rate_plans=change["rate_plans"],
        order_number=order.order_number or "",
    )


def preview_metrics(change: dict) -> dict[str, Any]:
    """Zuora's chargeMetrics entry for a changed subscription: each charge with its new `cmrr.regular`
    and the change (`regularDelta`); a removed charge has regular 0 and a negative delta."""
    before, after = change["before"], change["after"]
    charges = []
    for charge_id in list(after) + [c for c in before if c not in after]:
        regular = after.get(charge_id, Decimal(0))
        charges.append(
            {
                "productRatePlanChargeId": charge_id,
                "cmrr": {
                    "regular": float(regular),
                    "regularDelta": float(regular - before.get(charge_id, Decimal(0))),
                    "discount": 0,
                    "discountDelta": 0,
                },
            }
        )
    return {"subscriptionNumber": change["subscription"].subscription_number, "charges": charges}


# --- REST reads and the undo ----------------------------------------------------------------------------
def charged_through(sub: ZSubscription, charge: dict) -> str | None:
    """A charge's charged-through date (versions written before dates were kept per charge: the version's)."""
    if "chargedThroughDate" in charge:
        return charge["chargedThroughDate"]
    return sub.charged_through_date.isoformat() if sub.charged_through_date else None


def subscription_rest_json(sub: ZSubscription) -> dict[str, Any]:
    """GET /v1/subscriptions/{key}, in the shape of Zuora's GetSubscriptionResponse."""
    amended = sub.version > 1  # "lastChangeType … is only available if multiple orders are created"
    plans = []
    for index, plan in enumerate(sub.rate_plans):
        entry: dict[str, Any] = {
            "id": rate_plan_id(sub, index),
            "productId": plan.get("productId"),
            "productRatePlanId": plan.get("productRatePlanId"),
            "ratePlanName": plan.get("ratePlanName"),
            "productName": plan.get("productName"),
            "ratePlanCharges": [
                {
                    "id": f"{rate_plan_id(sub, index)}-{number}",
                    "productRatePlanChargeId": c.get("productRatePlanChargeId"),
                    "name": c.get("name"),
                    "type": c.get("type"),
                    "model": c.get("model"),
                    "quantity": float(Decimal(str(c.get("quantity") or 1))),
                    "mrr": float(Decimal(str(c.get("mrr") or 0))) if in_force(plan) else 0.0,
                    "effectiveStartDate": c.get("effectiveStartDate") or sub.contract_effective_date.isoformat(),
                    "effectiveEndDate": c.get("effectiveEndDate")
                    or sub.term_end_date
                    and sub.term_end_date.isoformat(),
                    "chargedThroughDate": charged_through(sub, c),
                }
                for number, c in enumerate(plan.get("charges") or [])
            ],
        }
        if amended:
            entry["lastChangeType"] = CHANGE_TYPE.get(plan.get("amendmentType") or "NewProduct", "Add")
        plans.append(entry)
    return {
        "success": True,
        "id": str(sub.id),
        "subscriptionNumber": sub.subscription_number,
        "version": sub.version,
        "status": sub.status,
        "accountId": str(sub.account_id),
        "accountNumber": sub.account.account_number,
        "accountName": sub.account.name,
        "termType": sub.term_type,
        "contractEffectiveDate": sub.contract_effective_date.isoformat(),
        "subscriptionStartDate": sub.contract_effective_date.isoformat(),
        "termStartDate": sub.term_start_date.isoformat(),
        "termEndDate": sub.term_end_date.isoformat() if sub.term_end_date else None,
        "subscriptionEndDate": sub.subscription_end_date.isoformat() if sub.subscription_end_date else None,
        "autoRenew": sub.auto_renew,
        "initialTerm": sub.initial_term,
        "currentTerm": sub.initial_term,
        "renewalTerm": sub.renewal_term,
        "orderNumber": sub.order_number,
        "currency": sub.account.currency,
        "ratePlans": plans,
        **sub.custom_fields,
    }


@zuora_view
def subscription_detail(request: HttpRequest, key: str) -> HttpResponse:
    if request.method != "GET":
        return failure(90000045, "Method not allowed", status=405)
    sub = latest(key)
    if sub is None:
        return failure(SUBSCRIPTIONS * 100 + 40, f"Subscription {key} does not exist", status=404)
    return JsonResponse(subscription_rest_json(sub))


@zuora_view
def order_detail(request: HttpRequest, order_number: str) -> HttpResponse:
    """GET /v1/orders/{orderNumber}, and DELETE: roll every subscription the order changed back to its
    previous version."""
    if request.method == "GET":
        order = ZOrder.objects.filter(order_number=order_number).first()
        if order is None:
            return failure(53100040, f"Order {order_number} does not exist", status=404)
        return JsonResponse(
            {
                "success": True,
                "order": {
                    "orderNumber": order.order_number,
                    "orderDate": order.order_date.isoformat(),
                    "existingAccountNumber": order.account_number,
                    "status": "Completed",
                    "subscriptions": [
                        {
                            "subscriptionNumber": a.get("subscription"),
                            "orderActions": [
                                {
                                    "type": a.get("type"),
                                    "triggerDates": [{"name": "ContractEffective", "triggerDate": a.get("effective")}],
                                }
                            ],
                        }
                        for a in order.actions
                    ],
                },
            }
        )
    if request.method != "DELETE":
        return failure(90000045, "Method not allowed", status=405)
    with transaction.atomic():
        order = ZOrder.objects.select_for_update().filter(order_number=order_number).first()
        if order is None:
            return failure(53100040, f"Order {order_number} does not exist", status=404)
        versions = list(ZSubscription.objects.select_for_update().filter(order_number=order_number))
        for version in versions:
            newest = latest(version.subscription_number or "")
            if newest is None or newest.id != version.id:
                return failure(
                    53100030,
                    f"The order {order_number} cannot be deleted: it is not the latest change to subscription "
                    f"{version.subscription_number}",
                )
        if order.invoiced:
            return failure(
                53100030,
                f"The order {order_number} cannot be deleted: the charges it affects have been invoiced",
            )
        for version in versions:
            previous = ZSubscription.objects.filter(
                subscription_number=version.subscription_number, version=version.version - 1
            ).first()
            if previous is not None:
                ZSubscription.objects.filter(id=previous.id).update(
                    status=previous.prior_status or "Active", prior_status=""
                )
            version.delete()
        order.delete()
    return JsonResponse({"success": True})


def invoice(sub: ZSubscription, through: dt.date) -> ZInvoice | None:
    """The invoice of a bill run: the subscription's recurring charges from where it was billed to `through`
    (a month's MRR per month begun), due after the account's payment term ("Net 30": 30 days)."""
    start = sub.charged_through_date or sub.contract_effective_date
    # Billed in advance: every period that begins on or before `through` (the charged-through date is the day
    # after the last billed one).
    months = 0
    while _month_after(start, months) <= through:
        months += 1
    amount = sum((plan_mrr(plan) for plan in sub.rate_plans if in_force(plan)), Decimal(0)) * max(months, 0)
    if amount <= 0:
        return None
    account = sub.account
    today = dt.date.today()
    term = account.payment_term or ""
    days = int(term.split()[-1]) if term.lower().startswith("net") and term.split()[-1].isdigit() else 0
    count = ZInvoice.objects.count() + 1
    return ZInvoice.objects.create(
        account=account,
        invoice_number=f"INV{count:08d}",
        invoice_date=today,
        due_date=today + dt.timedelta(days=days),
        amount=amount.quantize(Decimal("0.01")),
        balance=amount.quantize(Decimal("0.01")),
    )


def _month_after(day: dt.date, months: int) -> dt.date:
    import calendar

    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def pay(account: ZAccount, amount: Decimal) -> Decimal:
    """A processed payment applied to the oldest invoices still owed; what was not applied (a credit) returned."""
    left = amount
    for inv in ZInvoice.objects.filter(account=account, balance__gt=0).order_by("invoice_date", "id"):
        if left <= 0:
            break
        applied = min(left, inv.balance)
        inv.balance -= applied
        inv.save(update_fields=["balance"])
        left -= applied
    return left


def bill_through(number: str, through: dt.date) -> ZSubscription | None:
    """A bill run: the subscription's charges are invoiced through `through`; the orders that changed it
    so far are then part of an invoice (Zuora refuses to delete them)."""
    sub = latest(number)
    if sub is None:
        return None
    invoice(sub, through)
    plans = [
        {**plan, "charges": [{**c, "chargedThroughDate": through.isoformat()} for c in plan.get("charges") or []]}
        if in_force(plan)
        else plan
        for plan in sub.rate_plans
    ]
    ZSubscription.objects.filter(id=sub.id).update(charged_through_date=through, rate_plans=plans)
    numbers = ZSubscription.objects.filter(subscription_number=number).values_list("order_number", flat=True)
    ZOrder.objects.filter(order_number__in=list(numbers)).update(invoiced=True)
    sub.refresh_from_db()
    return sub


@zuora_view
def orders_of_subscription(request: HttpRequest, number: str) -> HttpResponse:
    """GET /v1/orders/subscription/{subscriptionNumber}: the orders that made the subscription's versions."""
    if request.method != "GET":
        return failure(90000045, "Method not allowed", status=405)
    made = set(ZSubscription.objects.filter(subscription_number=number).values_list("order_number", flat=True))
    orders = ZOrder.objects.filter(order_number__in=made).order_by("id")
    return JsonResponse(
        {
            "success": True,
            "orders": [
                {
                    "orderNumber": o.order_number,
                    "orderDate": o.order_date.isoformat(),
                    "createdDate": o.created.isoformat(),
                    "subscriptions": [
                        {
                            "subscriptionNumber": number,
                            "orderActions": [
                                {
                                    "type": a.get("type"),
                                    "triggerDates": [{"name": "ContractEffective", "triggerDate": a.get("effective")}],
                                }
                                for a in o.actions
                                if a.get("subscription") == number
                            ]
                            or [{"type": "CreateSubscription"}],
                        }
                    ],
                }
                for o in orders
            ],
        }
    )


@zuora_view
def update_account(request: HttpRequest, key: str) -> HttpResponse:
    """PUT /v1/accounts/{key}: here, the account's communication profile (and custom fields)."""
    from sandbox.common import get_setting, json_body

    if request.method != "PUT":
        return failure(90000045, "Method not allowed", status=405)
    account = ZAccount.objects.filter(account_number=key).first()
    if account is None:
        return failure(50000040, f"Account {key} does not exist", status=404)
    try:
        body = json_body(request)
    except ValueError:
        return failure(50000090, "Malformed JSON in request body", status=400)
    if not isinstance(body, dict):
        return failure(50000090, "The body must be an object", status=400)
    profile = body.get("communicationProfileId")
    if profile is not None:
        if profile not in get_setting("zuora_communication_profiles"):
            return failure(50000040, f"Invalid communicationProfileId {profile!r}")
        account.communication_profile_id = profile
    custom = {k: v for k, v in body.items() if k.endswith("__c")}
    account.custom_fields = {**account.custom_fields, **custom}
    account.save(update_fields=["communication_profile_id", "custom_fields"])
    return JsonResponse({"success": True})


@zuora_view
def version_custom_fields(request: HttpRequest, number: str, version: int) -> HttpResponse:
    """PUT /v1/subscriptions/{number}/versions/{version}/customFields: custom fields of one version, changed
    in place (no new version), as Zuora does."""
    from sandbox.common import json_body

    if request.method != "PUT":
        return failure(90000045, "Method not allowed", status=405)
    sub = ZSubscription.objects.filter(subscription_number=number, version=version).first()
    if sub is None:
        return failure(SUBSCRIPTIONS * 100 + 40, f"Subscription {number} version {version} does not exist", status=404)
    try:
        body = json_body(request)
    except ValueError:
        return failure(SUBSCRIPTIONS * 100 + 90, "Malformed JSON in request body", status=400)
    fields = (body or {}).get("customFields") if isinstance(body, dict) else None
    if not isinstance(fields, dict) or any(not str(k).endswith("__c") for k in fields):
        return failure(SUBSCRIPTIONS * 100 + 20, "'customFields' must be an object of <name>__c fields")
    sub.custom_fields = {**sub.custom_fields, **fields}
    sub.save(update_fields=["custom_fields"])
    return JsonResponse({"success": True})
