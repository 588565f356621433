"""A billed deal now sells another plan: one Zuora order on its existing subscription — never a new one.

Steps (each recorded; a retry resumes after the last one completed):
  lead     re-read the lead from Kommo (the web hook is a hint; the lead's current state wins)
  order    compare what the deal sells (through the plan map) with the subscription's current Zuora
           version; when they differ, one order: ChangePlan (one plan for another) or RemoveProduct +
           AddProduct, dated by the timing policy
  refresh  the subscription's new version into the mirror, and the deal's record names its new plans
  note     a note on the deal: what changes, when, and the MRR before and after
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.conf import settings

from catalog.models import PlanMapping, ProductRatePlan
from sync import kommo_texts, orders
from sync.clients.errors import BusinessError, NotFoundError, TransientError
from sync.clients.kommo import KommoClient
from sync.clients.zuora import ZuoraClient
from sync.flows.deal_won import fetch_any_lead, metric_sum
from sync.flows.entities import zuora_for
from sync.flows.sale import Sale, SaleItem, charge_overrides, resolve_sale
from sync.kommo_tasks import write_note_once
from sync.lifecycle.subscription import (
    Current,
    billed_deal,
    churned,
    in_order,
    lead_date,
    read_current,
    refresh,
)
from sync.models import SyncRecord
from sync.money import format_money
from sync.outcomes import Ignored, NeedsAttention
from sync.registry import flow
from zkbridge.business_time import business_today

POLICY = {
    "immediately": "EffectiveImmediately",
    "end_of_billing_period": "EffectiveEndOfBillingPeriod",
    "date_field": "SpecificDate",
}
SAID = {
    "immediately": "immediately, prorated",
    "end_of_billing_period": "at the end of the billing period, no proration, no credit",
    "date_field": "on the deal's plan change date",
}


@flow(SyncRecord.Kind.PLAN_CHANGE)
def plan_change(record: SyncRecord) -> None:
    kommo, zuora = KommoClient.from_settings(), zuora_for(record)
    lead = fetch_any_lead(kommo, record)
    deal = billed_deal(record)
    if not record.step_done("order"):
        with in_order(record, deal.zuora_subscription_number):
            change(record, zuora, lead, deal)
    if not record.step_done("refresh"):
        update_deal(record, deal, zuora)
    if not record.step_done("note"):
        write_note_once(record, kommo, "leads", record.lead_id, note_text(record))


def change(record: SyncRecord, zuora: ZuoraClient, lead: dict, deal: SyncRecord) -> None:
    status = lead.get("status_id")
    if status != settings.KOMMO_WON_STATUS_ID:
        if churned(status):
            raise Ignored(f"the deal is Lost in Kommo now (status {status}); its cancellation handles it: nothing sent")
        raise Ignored(f"the deal is no longer Won in Kommo (status {status}); nothing sent")
    current = read_current(zuora, deal.zuora_subscription_number)
    attempt = record.step_data("order")
    if attempt.get("attempted") and set(attempt.get("target") or []) == current.plan_ids:
        wanted_then = {k: Decimal(v) for k, v in (attempt.get("quantities") or {}).items()}
        if not quantity_changes(current, wanted_then):
            # An earlier attempt's order reached Zuora (its answer was lost): done, not sent twice.
            record.mark_step("order", found=True, version=current.version)
            return
    if current.cancelled:
        raise Ignored(
            f"{current.number} is cancelled in Zuora (ends {current.ends_on}); a plan change is not applied to a "
            f"cancelled subscription: nothing sent"
        )
    today = business_today()
    # What the deal names, before judging dates.
    sale = resolve_sale(lead, on=today, check_sellable=False, entity=record.entity)
    target = {item.rate_plan.zuora_id for item in sale.subscription_items}
    quantities = wanted_quantities(sale)
    if target == current.plan_ids and not quantity_changes(current, quantities):
        raise Ignored(f"nothing billable changed: {current.number} already bills {names(current)}; nothing sent")
    new_mrr = estimated_mrr(sale.subscription_items, sale.currency)
    direction = "upgrade" if new_mrr >= current.mrr else "downgrade"
    target_mapping = sale.terms
    timing = timing_for(direction, target_mapping)
    effective = effective_date(timing, current, lead, today)
    # The target must be sellable, in the deal's currency, on the date it takes effect.
    sale = resolve_sale(lead, on=effective, entity=record.entity)
    order = build_order(record, current, sale, target, timing, effective, direction, quantities)
    before, after = current.mrr, None
    if settings.ZUORA_PREVIEW_ORDERS:
        after = preview_after(zuora, order, before)
    record.mark_step(
        "order",
        done=False,
        attempted=True,
        target=sorted(target),
        quantities={k: str(v) for k, v in quantities.items()},
        direction=direction,
        timing=timing,
        effective=effective.isoformat(),
        before=names(current),
        after=described(sale),
        currency=sale.currency,
        mrr_before=str(before),
        mrr_after=str(after) if after is not None else None,
    )
    try:
        result = zuora.create_order(
            order, idempotency_key=record.idempotency_key("order"), track_id=f"zkbridge-{record.id}"
        )
    except BusinessError as exc:
        raise NeedsAttention(
            f"Zuora refused the plan change: {exc.message}",
            task=kommo_texts.task(
                f"Zuora refused this deal's plan change: {exc.message}", "ask RevOps to fix it and retry the change"
            ),
        ) from None
    items = sale.subscription_items
    record.plan_mappings.set({item.mapping for item in items})
    record.rate_plans.set({item.rate_plan for item in items})
    record.summary = f"{names(current)} → {described(sale)}"[:300]
    record.save(update_fields=["summary", "updated_at"])
    record.mark_step("order", order_number=result.order_number)


def names(current: Current) -> str:
    """The current version's plans, with their quantity where it is not one ("Growth × 10")."""
    parts = []
    for plan in current.rate_plans:
        counts = {q for q in plan.quantities.values() if q != 1}
        parts.append(f"{plan.name} × {counts.pop().normalize():f}" if len(counts) == 1 else plan.name)
    return ", ".join(sorted(parts)) or "no plan"


def described(sale: Sale) -> str:
    return ", ".join(
        f"{i.label} × {i.quantity.normalize():f}" if i.quantity is not None and i.quantity != 1 else i.label
        for i in sale.subscription_items
    )


QUANTIFIED = ("PerUnit", "Tiered", "Volume")


def wanted_quantities(sale: Sale) -> dict[str, Decimal]:
    """Charge id → the quantity the deal sells, for the charges a quantity applies to (per unit, tiered,
    volume recurring charges), where the deal or its mapping names one."""
    wanted: dict[str, Decimal] = {}
    for item in sale.subscription_items:
        if item.quantity is None:
            continue
        for charge in item.rate_plan.charges.all():
            if charge.removed_at is None and charge.charge_type == "Recurring" and charge.charge_model in QUANTIFIED:
                wanted[charge.zuora_id] = item.quantity
    return wanted


def quantity_changes(current: Current, wanted: dict[str, Decimal]) -> dict[str, dict[str, Decimal]]:
    """Rate plan id (on the current version) → {charge id: new quantity} where the deal sells another
    quantity of a plan it keeps."""
    changes: dict[str, dict[str, Decimal]] = {}
    for plan in current.rate_plans:
        for charge_id, have in plan.quantities.items():
            if charge_id in wanted and wanted[charge_id] != have:
                changes.setdefault(plan.id, {})[charge_id] = wanted[charge_id]
    return changes


def timing_for(direction: str, mapping: PlanMapping | None) -> str:
    own = (mapping.upgrade_timing if direction == "upgrade" else mapping.downgrade_timing) if mapping else ""
    return own or (settings.ZKBRIDGE_UPGRADE_TIMING if direction == "upgrade" else settings.ZKBRIDGE_DOWNGRADE_TIMING)


def effective_date(timing: str, current: Current, lead: dict, today: dt.date) -> dt.date:
    if timing == "immediately":
        return today
    if timing == "end_of_billing_period":
        return current.end_of_billing_period(today)
    day = lead_date(lead, settings.KOMMO_CHANGE_DATE_FIELD_ID, "plan change date")
    start = current.term_start or current.contract_effective
    if start and day < start:
        raise NeedsAttention(
            f"the plan change date {day} is before the subscription's term start {start}; nothing was sent",
            task=kommo_texts.task(
                f"the plan change date on this deal ({day}) is before the subscription started ({start})",
                "correct the plan change date",
            ),
        )
    return day


def monthly(plan: ProductRatePlan, currency: str, quantity: Decimal | None, price: Decimal | None) -> Decimal:
    """A rate plan's MRR from the catalog mirror's list prices (or the mapping's price), to tell an
    upgrade from a downgrade."""
    months = {"Month": 1, "Quarter": 3, "Semi_Annual": 6, "Annual": 12}
    total = Decimal(0)
    for charge in plan.charges.all():
        if charge.removed_at or charge.charge_type != "Recurring":
            continue
        pricing = charge.price_in(currency) or {}
        unit = price if price is not None else pricing.get("price")
        if unit is None and pricing.get("tiers"):
            unit = pricing["tiers"][0].get("price")
        amount = Decimal(str(unit or 0))
        if charge.charge_model != "FlatFee":
            amount *= quantity or charge.default_quantity or 1
        total += amount / months.get(charge.billing_period, 1)
    return total


def estimated_mrr(items: list[SaleItem], currency: str) -> Decimal:
    return sum((monthly(i.rate_plan, currency, i.quantity, i.price) for i in items), Decimal(0))


def build_order(
    record: SyncRecord,
    current: Current,
    sale: Sale,
    target: set[str],
    timing: str,
    effective: dt.date,
    direction: str,
    quantities: dict[str, Decimal],
) -> dict[str, Any]:
    """One order: ChangePlan when one plan replaces another, else RemoveProduct + AddProduct on one date;
    UpdateProduct for a kept plan sold in another quantity."""
    removed = [p for p in current.rate_plans if p.product_rate_plan_id not in target]
    added = [i for i in sale.subscription_items if i.rate_plan.zuora_id not in current.plan_ids]
    triggers = [
        {"name": n, "triggerDate": effective.isoformat()}
        for n in ("ContractEffective", "ServiceActivation", "CustomerAcceptance")
    ]
    actions: list[dict[str, Any]] = []
    if len(removed) == 1 and len(added) == 1:
        change: dict[str, Any] = {
            "type": "ChangePlan",
            "changePlan": {
                # One plan id only: Zuora refuses a ChangePlan naming more than one of externalCatalogPlanId,
                # ratePlanId and productRatePlanId. The subscription's own rate plan id says which plan goes.
                "ratePlanId": removed[0].id,
                "subType": "Upgrade" if direction == "upgrade" else "Downgrade",
                "effectivePolicy": POLICY[timing],
                "newProductRatePlan": {
                    "productRatePlanId": added[0].rate_plan.zuora_id,
                    "chargeOverrides": charge_overrides(added[0]),
                },
            },
        }
        if timing != "end_of_billing_period":
            # With EffectiveEndOfBillingPeriod Zuora sets the trigger dates itself and refuses any given.
            change["triggerDates"] = triggers
        actions.append(change)
    else:
        actions += [
            {"type": "RemoveProduct", "triggerDates": triggers, "removeProduct": {"ratePlanId": p.id}} for p in removed
        ]
        actions += [
            {
                "type": "AddProduct",
                "triggerDates": triggers,
                "addProduct": {"productRatePlanId": i.rate_plan.zuora_id, "chargeOverrides": charge_overrides(i)},
            }
            for i in added
        ]
    for rate_plan_id, charges in quantity_changes(current, quantities).items():
        actions.append(
            {
                "type": "UpdateProduct",
                "triggerDates": triggers,
                "updateProduct": {
                    "ratePlanId": rate_plan_id,
                    "chargeUpdates": [
                        {"productRatePlanChargeId": charge_id, "pricing": {"recurringPerUnit": {"quantity": qty}}}
                        for charge_id, qty in charges.items()
                    ],
                },
            }
        )
    return orders.change(
        business_today(), account_number=current.account_number, subscription_number=current.number, actions=actions
    )


def preview_after(zuora: ZuoraClient, order: dict, before: Decimal) -> Decimal | None:
    """The MRR after the change, from Zuora's preview: the charges' cmrr deltas added to the current MRR."""
    body = orders.preview(order)
    try:
        result = zuora.preview_order(body)
        metrics = (result.get("previewResult") or {}).get("chargeMetrics") or []
        if not metrics:
            return None
        return before + metric_sum(metrics, "cmrr", "regularDelta")
    except (BusinessError, TransientError, NotFoundError):  # an unreadable answer too: the note says less
        return None


def update_deal(record: SyncRecord, deal: SyncRecord, zuora: ZuoraClient) -> None:
    """The subscription's new version into the mirror; the deal's record now names the plans it bills
    (the plan map's "deals synced" and the legacy report read it)."""
    refresh(deal.zuora_subscription_number, record.kommo_lead_id, zuora)
    if record.rate_plans.exists():
        deal.rate_plans.set(record.rate_plans.all())
        deal.plan_mappings.set(record.plan_mappings.all())
    record.mark_step("refresh")


def note_text(record: SyncRecord) -> str:
    order = record.step_data("order")
    when = order.get("effective")
    said = SAID.get(order.get("timing", ""), "")
    text = (
        f"subscription {record.zuora_subscription_number} changes from {order.get('before')} to "
        f"{order.get('after')} on {when} ({order.get('direction')}, {said})"
    )
    currency = order.get("currency") or settings.ZKBRIDGE_DEFAULT_CURRENCY
    if order.get("mrr_after") is not None and order.get("mrr_before") is not None:
        text += f"; MRR {format_money(order['mrr_before'], currency)} → {format_money(order['mrr_after'], currency)}"
    return kommo_texts.note(text)
