"""What is sold: the plan field's value and the lead's products, through the plan map, checked against
the catalog on the contract effective date and in the deal's currency. Never a silent fallback."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings

from catalog.models import PlanMapping, ProductRatePlan, ZuoraEntity, convert_for_plan, has_tiered_charge
from catalog.planmap import find_mapping, plan_option
from catalog.sellable import sellable_on
from catalog.tiers import TierError
from sync import kommo_texts
from sync.outcomes import NeedsAttention
from zkbridge.business_time import business_today, date_of_timestamp


@dataclass
class SaleItem:
    mapping: PlanMapping
    rate_plan: ProductRatePlan
    quantity: Decimal | None
    price: Decimal | None
    label: str
    # Negotiated tiers of the plan's tiered charge, already in Zuora's inclusive form: (charge id, tiers).
    tiers: tuple[str, list[dict]] | None = None


@dataclass
class Sale:
    currency: str
    contract_date: dt.date
    subscription_items: list[SaleItem] = field(default_factory=list)
    one_time_items: list[SaleItem] = field(default_factory=list)
    terms: PlanMapping | None = None  # the mapping whose subscription terms apply

    @property
    def label(self) -> str:
        return ", ".join(i.label for i in self.subscription_items + self.one_time_items)


def field_value(lead: dict[str, Any], field_id: int | None) -> str:
    if not field_id:
        return ""
    for item in lead.get("custom_fields_values") or []:
        if item.get("field_id") == field_id:
            values = item.get("values") or []
            return str(values[0].get("value") or "").strip() if values else ""
    return ""


def plan_of(lead: dict[str, Any]) -> str:
    """The deal's plan field as the plan map knows it (an option Kommo shows marked retired reads as its plan)."""
    return plan_option(field_value(lead, settings.KOMMO_PLAN_FIELD_ID))


def contract_date(lead: dict[str, Any]) -> dt.date:
    """The lead's closed_at as a business date in ZKBRIDGE_TIME_ZONE."""
    stamp = lead.get("closed_at") or lead.get("updated_at")
    if not stamp:  # a Won lead always has closed_at; an odd one is billed from today
        return business_today()
    return date_of_timestamp(int(stamp))


def deal_currency(lead: dict[str, Any], entity: ZuoraEntity | None = None) -> str:
    value = field_value(lead, settings.KOMMO_CURRENCY_FIELD_ID).upper()
    if value and (len(value) != 3 or not value.isalpha()):
        raise NeedsAttention(
            f"the deal's currency field says {value!r}, which is not a currency code",
            task=kommo_texts.task(
                f"the deal's currency {value!r} is not a currency code", "set it to a three-letter code such as USD"
            ),
        )
    return value or (entity.currency() if entity is not None else settings.ZKBRIDGE_DEFAULT_CURRENCY)


def resolve_sale(
    lead: dict[str, Any],
    *,
    on: dt.date | None = None,
    check_sellable: bool = True,
    entity: ZuoraEntity | None = None,
) -> Sale:
    """Every problem is collected and reported at once, so one fix-and-retry is enough.

    `on`: the date the plans must be sellable on (default: the contract date, the lead's closed_at);
    `check_sellable=False` only maps (a plan change first asks what the deal names, then judges dates)."""
    currency = deal_currency(lead, entity)
    sale = Sale(currency=currency, contract_date=on or contract_date(lead))
    problems: list[str] = []
    wanted: list[tuple[str, str, Decimal]] = []
    plan_value = plan_of(lead)
    if plan_value:
        wanted.append((PlanMapping.Kind.PLAN, plan_value, Decimal(1)))
    for element in (lead.get("_embedded") or {}).get("catalog_elements") or []:
        count = Decimal(str((element.get("metadata") or {}).get("quantity") or 1))
        wanted.append((PlanMapping.Kind.PRODUCT, str(element.get("id")), count))
    if not wanted:
        where = f"the plan field ({settings.KOMMO_PLAN_FIELD_ID}) is empty and " if settings.KOMMO_PLAN_FIELD_ID else ""
        raise NeedsAttention(
            f"the deal names nothing to sell: {where}it has no products",
            task=kommo_texts.task("the deal names nothing to sell", "choose its plan, or add its products"),
        )
    for kind, value, lead_quantity in wanted:
        lookup = find_mapping(kind, value, currency, entity)
        if lookup.mapping is None:
            problems.append(lookup.reason)
            continue
        mapping = lookup.mapping
        if kind == PlanMapping.Kind.PLAN or sale.terms is None:
            sale.terms = mapping
        for item in mapping.mapped_plans.all():
            plan = item.product_rate_plan
            verdict = sellable_on(plan, sale.contract_date, currency)
            if check_sellable and not verdict.ok:
                problems.append(
                    f"'{value}' maps to {verdict.reason} (contract date "
                    f"{sale.contract_date:%Y-%m-%d}): map it to a plan that is sellable"
                )
                continue
            quantity: Decimal | None = item.quantity
            if kind == PlanMapping.Kind.PRODUCT:
                quantity = lead_quantity * (item.quantity or 1)
            sale_item = SaleItem(
                mapping=mapping,
                rate_plan=plan,
                quantity=quantity,
                price=item.price,
                label=mapping.label or mapping.kommo_value
                if kind == PlanMapping.Kind.PLAN
                else mapping.label or plan.name,
            )
            try:
                converted = item.zuora_tiers(mapping.tier_policy)
            except TierError as exc:
                problems.append(f"'{value}' maps to tiers that cannot be billed: {exc}")
                continue
            if converted is not None:
                sale_item.tiers = (converted[0].zuora_id, converted[1])
            (sale.one_time_items if plan.one_time_only else sale.subscription_items).append(sale_item)
    if not problems:
        negotiated_tiers(lead, sale)
    if problems:
        raise NeedsAttention(
            "; ".join(problems),
            task=kommo_texts.task(
                "the deal's plan cannot be billed as it stands: " + "; ".join(problems),
                "choose another plan, or ask RevOps to fix the plan map",
            ),
        )
    return sale


def negotiated_tiers(lead: dict[str, Any], sale: Sale) -> None:
    """The deal's own tiers (KOMMO_TIERS_FIELD_ID, the CRM's form) replace the plan map's for the one plan of
    the deal with a tiered charge, converted by that plan's mapping's policy."""
    text = field_value(lead, settings.KOMMO_TIERS_FIELD_ID)
    if not text:
        return
    tiered = [i for i in sale.subscription_items if has_tiered_charge(i.rate_plan)]
    if len(tiered) != 1:
        names = ", ".join(f"'{i.rate_plan}'" for i in tiered) or "none of them has a Tiered or Volume charge"
        raise NeedsAttention(
            f"the deal's tiers field holds tiers ({text[:100]!r}) but they must apply to exactly one of its plans: "
            f"{names}",
            task=kommo_texts.task(
                "the deal's tiers must apply to exactly one of its plans with tiered usage",
                "clear the tiers field, or sell one plan with tiered usage on this deal",
            ),
        )
    item = tiered[0]
    try:
        charge, tiers = convert_for_plan(item.rate_plan, text, item.mapping.tier_policy)
    except TierError as exc:
        raise NeedsAttention(
            f"the deal's tiers field cannot be billed: {exc}",
            task=kommo_texts.task(
                f"the deal's tiers cannot be billed: {exc}",
                "correct them, written as 0-185:0.10;185-999:0.08;999+:0.05",
            ),
        ) from None
    item.tiers = (charge.zuora_id, tiers)


TIER_KEYS = {
    ("Usage", "Tiered"): "usageTiered",
    ("Usage", "Volume"): "usageVolume",
    ("Recurring", "Tiered"): "recurringTiered",
    ("Recurring", "Volume"): "recurringVolume",
}


# --- the order Zuora receives ------------------------------------------------------------------------
def charge_overrides(item: SaleItem) -> list[dict]:
    overrides = []
    for charge in item.rate_plan.charges.all():
        if item.tiers is not None and charge.zuora_id == item.tiers[0]:
            pricing_tiers: dict[str, Any] = {"tiers": item.tiers[1]}
            if item.quantity is not None and charge.charge_type == "Recurring":
                pricing_tiers["quantity"] = item.quantity
            key = TIER_KEYS[(charge.charge_type, charge.charge_model)]
            overrides.append({"productRatePlanChargeId": charge.zuora_id, "pricing": {key: pricing_tiers}})
            continue
        if charge.removed_at or (item.quantity is None and item.price is None):
            continue
        if charge.charge_type not in ("Recurring", "Usage"):
            continue
        if charge.charge_model == "FlatFee":
            if item.price is not None:
                overrides.append(
                    {
                        "productRatePlanChargeId": charge.zuora_id,
                        "pricing": {"recurringFlatFee": {"listPrice": item.price}},
                    }
                )
        elif charge.charge_model == "PerUnit":
            pricing: dict[str, Decimal] = {}
            # A usage charge has no quantity of its own (Zuora's usagePerUnit override carries none: its
            # quantity is the usage uploaded), so only its price is overridden.
            if item.quantity is not None and charge.charge_type == "Recurring":
                pricing["quantity"] = item.quantity
            if item.price is not None:
                pricing["listPrice"] = item.price
            key = "recurringPerUnit" if charge.charge_type == "Recurring" else "usagePerUnit"
            if pricing:
                overrides.append({"productRatePlanChargeId": charge.zuora_id, "pricing": {key: pricing}})
        elif (
            charge.charge_model in ("Tiered", "Volume")
            and item.quantity is not None
            and charge.charge_type == "Recurring"
        ):
            key = "recurringTiered" if charge.charge_model == "Tiered" else "recurringVolume"
            overrides.append(
                {"productRatePlanChargeId": charge.zuora_id, "pricing": {key: {"quantity": item.quantity}}}
            )
    return overrides


def line_items(sale: Sale) -> list[dict]:
    items = []
    for item in sale.one_time_items:
        for charge in item.rate_plan.charges.all():
            if charge.removed_at:
                continue
            list_price = (charge.price_in(sale.currency) or {}).get("price")
            price = item.price if item.price is not None else Decimal(str(list_price or 0))
            items.append(
                {
                    "itemType": "Product",
                    "itemName": item.label[:100],
                    "productRatePlanChargeId": charge.zuora_id,
                    "quantity": item.quantity or Decimal(1),
                    "amountPerUnit": price,
                    "listPricePerUnit": price,
                    "transactionStartDate": sale.contract_date.isoformat(),
                }
            )
    return items


def subscription_terms(sale: Sale) -> dict:
    terms = sale.terms
    if terms is not None and terms.evergreen:
        return {"initialTerm": {"termType": "EVERGREEN"}, "autoRenew": False}
    months = terms.term_months if terms else 12
    renewal = terms.renewal_term_months if terms else 12
    return {
        "initialTerm": {
            "termType": "TERMED",
            "period": months,
            "periodType": "Month",
            "startDate": sale.contract_date.isoformat(),
        },
        "autoRenew": terms.auto_renew if terms else True,
        "renewalSetting": "RENEW_WITH_SPECIFIC_TERM",
        "renewalTerms": [{"period": renewal, "periodType": "Month"}],
    }
