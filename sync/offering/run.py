"""Kommo's plan field kept in step with what Zuora sells (issue 29, part 1).

The plan map says which Kommo values sell which Zuora rate plans, in which currency and entity; the catalog mirror
says from and until when each plan is sellable. Each run compares the plan field's options with that, today:

- a value whose plans are sellable (in some currency and entity) and that Kommo does not offer → an option added
  (so a new plan appears on its effective date: the run after the catalog sync of that day adds it);
- a value whose plans are all retired or removed → its option renamed "<value> (retired)": never removed, since
  Kommo clears a removed option on every deal carrying it (the deals keep their value; the plan map reads the mark
  off, catalog.planmap.plan_option);
- a marked option whose plan is sellable again → the mark taken off;
- an option the plan map does not know → left as it is, and reported.

The field's options are written in one PATCH, all of them with their ids (Kommo removes any left out). A field
Kommo refuses to change (an administrator's right, a type without options) makes the run report it and change
nothing. A dry run only compares.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from catalog.models import PlanMapping, normalize
from catalog.planmap import RETIRED_MARK, plan_option
from catalog.sellable import Sellability, Unsellable, sellable_on
from sync.clients.errors import ApiError, BusinessError
from sync.clients.kommo import BATCH, KommoClient
from sync.offering.models import PlanFieldRun
from zkbridge.business_time import business_today

log = logging.getLogger("zkbridge.catalog")
OPTION_TYPES = ("select", "multiselect", "radiobutton")
SELLABLE, NOT_YET, RETIRED, UNSELLABLE = "sellable", "not yet effective", "retired", "not sellable"


@dataclass
class Offer:
    """A plan-map value and what Zuora says of it today, per entity and currency."""

    value: str
    state: str = UNSELLABLE
    where: list[dict[str, str]] = field(default_factory=list)  # [{entity, currency, verdict}]


@dataclass
class Change:
    action: str  # add | retire | restore
    value: str  # the option's text after the change
    was: str = ""
    enum_id: int | None = None


def offers(today: dt.date) -> dict[str, Offer]:
    """Every active plan mapping of the plan field, by normalised value: sellable where any of its mappings sells
    all its rate plans today; not yet effective where none does but one will; retired where every plan ended."""
    found: dict[str, Offer] = {}
    states: dict[str, list[str]] = {}
    mappings = (
        PlanMapping.objects.filter(kind=PlanMapping.Kind.PLAN, active=True)
        .select_related("entity")
        .prefetch_related("mapped_plans__product_rate_plan__product", "mapped_plans__product_rate_plan__charges")
        .order_by("kommo_value", "currency")
    )
    for mapping in mappings:
        key = normalize(plan_option(mapping.kommo_value))
        offer = found.setdefault(key, Offer(value=plan_option(mapping.kommo_value)))
        verdicts = [sellable_on(item.product_rate_plan, today, mapping.currency) for item in mapping.mapped_plans.all()]
        state = state_of(verdicts)
        if not verdicts:
            said = "maps to no rate plan"
        elif state == SELLABLE:
            said = "sellable" + next((f", retires {v.retires_on:%Y-%m-%d}" for v in verdicts if v.retires_on), "")
        else:
            said = next(v.reason for v in verdicts if not v.ok)
        states.setdefault(key, []).append(state)
        offer.where.append(
            {"entity": mapping.entity.name if mapping.entity else "", "currency": mapping.currency, "verdict": said}
        )
    for key, offer in found.items():
        seen = states[key]
        offer.state = next((s for s in (SELLABLE, NOT_YET, RETIRED) if s in seen), UNSELLABLE)
    return found


def state_of(verdicts: list[Sellability]) -> str:
    """What a mapping's rate plans come to today: sellable when all are; retired when one ended; not yet effective
    when one will be; not sellable otherwise (no price in the currency, no charges, no plan at all)."""
    if verdicts and all(v.ok for v in verdicts):
        return SELLABLE
    if any(v.ended for v in verdicts):
        return RETIRED
    if any(v.code == Unsellable.NOT_YET_EFFECTIVE for v in verdicts):
        return NOT_YET
    return UNSELLABLE


def marked(text: str) -> bool:
    return plan_option(text) != str(text).strip()


def compare(options: list[dict], wanted: dict[str, Offer]) -> tuple[list[Change], list[dict[str, Any]]]:
    """The changes that bring the options in step with `wanted`, and the comparison, one row per value."""
    changes: list[Change] = []
    rows: list[dict[str, Any]] = []
    by_key = {normalize(plan_option(o.get("value") or "")): o for o in options}
    for key, offer in sorted(wanted.items()):
        option = by_key.get(key)
        text = str(option.get("value")) if option else ""
        change = None
        if offer.state == SELLABLE and option is None:
            change = Change("add", offer.value)
        elif option is not None and offer.state == SELLABLE and marked(text):
            change = Change("restore", plan_option(text), was=text, enum_id=option["id"])
        elif option is not None and offer.state == RETIRED and not marked(text):
            change = Change("retire", f"{text}{RETIRED_MARK}", was=text, enum_id=option["id"])
        if change is not None:
            changes.append(change)
        rows.append(
            {
                "value": offer.value,
                "kommo": text or "not offered",
                "state": offer.state,
                "zuora": offer.where,
                "change": describe(change) if change else "",
            }
        )
    for key, option in by_key.items():
        if key not in wanted:
            rows.append(
                {
                    "value": plan_option(str(option.get("value"))),
                    "kommo": str(option.get("value")),
                    "state": "not in the plan map",
                    "zuora": [],
                    "change": "kept (the plan map does not know it: map it, or remove it in Kommo)",
                }
            )
    return changes, rows


def describe(change: Change) -> str:
    if change.action == "add":
        return f"add '{change.value}'"
    if change.action == "retire":
        return f"mark '{change.was}' retired (deals keep it)"
    return f"offer '{change.value}' again"


def options_after(options: list[dict], changes: list[Change]) -> list[dict]:
    """The field's options as one PATCH gives them: every existing one with its id (renamed where a change says),
    then the new ones after the last."""
    renamed = {c.enum_id: c.value for c in changes if c.enum_id is not None}
    result = [
        {"id": o["id"], "value": renamed.get(o["id"], o["value"]), "sort": int(o.get("sort") or 0)} for o in options
    ]
    sort = max([r["sort"] for r in result] + [0])
    for change in changes:
        if change.action == "add":
            sort += 10
            result.append({"value": change.value, "sort": sort})
    return result


def run(*, dry_run: bool = False, requested_by: str = "", today: dt.date | None = None) -> PlanFieldRun:
    """Compare the plan field (and, with KOMMO_PRODUCTS_CATALOG_ID, the products list) with what Zuora sells today
    and, unless `dry_run`, make Kommo offer it. Each part stands on its own: one refused leaves the other done."""
    record = PlanFieldRun.objects.create(dry_run=dry_run, requested_by=requested_by[:150])
    record.field_id = settings.KOMMO_PLAN_FIELD_ID
    day = today or business_today()
    errors = []
    # The plan field unless only the products list is kept (a run asked for with neither says the field is missing).
    keeps_field = settings.KOMMO_PLAN_FIELD_ID or not settings.KOMMO_PRODUCTS_CATALOG_ID
    parts = ([plan_field] if keeps_field else []) + ([products] if settings.KOMMO_PRODUCTS_CATALOG_ID else [])
    for part in parts:
        try:
            changes, rows = part(day, dry_run)
        except Refused as exc:
            errors.append(str(exc))
            continue
        except ApiError as exc:
            errors.append(f"Kommo could not be asked: {exc}")
            continue
        record.changes += [asdict(c) for c in changes]
        record.rows += rows
    record.error = "; ".join(errors)
    record.ok = not errors
    record.finished_at = timezone.now()
    record.save()
    if record.error:
        log.warning("plan field run %s: %s", record.id, record.error)
    else:
        log.info("plan field run %s: %s change(s)%s", record.id, len(record.changes), " (dry run)" if dry_run else "")
    return record


def plan_field(day: dt.date, dry_run: bool) -> tuple[list[Change], list[dict[str, Any]]]:
    field_id = settings.KOMMO_PLAN_FIELD_ID
    if not field_id:
        raise Refused("KOMMO_PLAN_FIELD_ID is not set: there is no plan field to keep in step")
    kommo = KommoClient.from_settings()
    definition = kommo.custom_field("leads", field_id)
    if definition is None:
        raise Refused(f"Kommo has no lead field {field_id} (KOMMO_PLAN_FIELD_ID)")
    if definition.get("type") not in OPTION_TYPES:
        raise Refused(
            f"the plan field {field_id} ('{definition.get('name')}') is a {definition.get('type')} field, which "
            f"has no options to keep: make it a list (select) field in Kommo"
        )
    options = [o for o in definition.get("enums") or [] if isinstance(o, dict) and "id" in o]
    changes, rows = compare(options, offers(day))
    if changes and not dry_run:
        try:
            kommo.set_field_options("leads", field_id, options_after(options, changes))
        except BusinessError as exc:
            raise Refused(f"Kommo refused to change the plan field's options: {exc.message}") from None
    return changes, rows


def products(day: dt.date, dry_run: bool) -> tuple[list[Change], list[dict[str, Any]]]:
    """Kommo's products list (KOMMO_PRODUCTS_CATALOG_ID): each element the plan map maps (a product mapping names
    the element) gets its Zuora product's SKU and its price in ZKBRIDGE_DEFAULT_CURRENCY (the mapping's price, else
    the charges' list prices, times the mapped quantity), and its name marked "(retired)" once its plans ended
    (never deleted: leads carry it). Elements the plan map does not know are kept and reported."""
    catalog_id: int = settings.KOMMO_PRODUCTS_CATALOG_ID or 0
    kommo = KommoClient.from_settings()
    codes = {str(f.get("code") or "").upper(): f for f in kommo.catalog_fields(catalog_id)}
    elements = {e.get("id"): e for e in kommo.catalog_elements(catalog_id)}
    currency = settings.ZKBRIDGE_DEFAULT_CURRENCY
    chosen: dict[int, PlanMapping] = {}
    for mapping in (
        PlanMapping.objects.filter(kind=PlanMapping.Kind.PRODUCT, active=True)
        .prefetch_related("mapped_plans__product_rate_plan__product", "mapped_plans__product_rate_plan__charges")
        .order_by("kommo_value", "id")
    ):
        if mapping.kommo_value.strip().isdigit():
            element_id = int(mapping.kommo_value.strip())
            if element_id not in chosen or mapping.currency == currency:
                chosen[element_id] = mapping
    changes: list[Change] = []
    rows: list[dict[str, Any]] = []
    writes: list[dict[str, Any]] = []
    for element_id, mapping in sorted(chosen.items()):
        element = elements.get(element_id)
        items = list(mapping.mapped_plans.all())
        state = state_of([sellable_on(item.product_rate_plan, day, mapping.currency) for item in items])
        if element is None:
            rows.append(product_row(f"element {element_id}", "not in Kommo's products list", state, mapping, "—"))
            continue
        name = str(element.get("name") or "")
        wanted_name = plan_option(name) + (RETIRED_MARK if state == RETIRED else "")
        have = {
            f.get("field_id"): ((f.get("values") or [{}])[0].get("value"))
            for f in element.get("custom_fields_values") or []
        }
        write: dict[str, Any] = {"id": element_id}
        said = []
        if wanted_name != name and state in (SELLABLE, RETIRED):
            write["name"] = wanted_name
            said.append(f"name '{wanted_name}'")
        values = []
        sku = items[0].product_rate_plan.product.sku if items else ""
        if "SKU" in codes and sku and str(have.get(codes["SKU"]["id"]) or "") != sku:
            values.append({"field_id": codes["SKU"]["id"], "values": [{"value": sku}]})
            said.append(f"SKU {sku}")
        price = list_price(mapping, mapping.currency)
        if "PRICE" in codes and price is not None and mapping.currency == currency:
            current = have.get(codes["PRICE"]["id"])
            if current is None or Decimal(str(current)) != price:
                values.append({"field_id": codes["PRICE"]["id"], "values": [{"value": str(price)}]})
                said.append(f"price {price} {currency}")
        if values:
            write["custom_fields_values"] = values
        if len(write) > 1:
            writes.append(write)
            changes.append(Change("product", f"{plan_option(name)}: {', '.join(said)}", was=name, enum_id=None))
        rows.append(
            product_row(f"{plan_option(name)} (product {element_id})", name, state, mapping, ", ".join(said) or "")
        )
    for known_id, element in elements.items():
        if known_id not in chosen:
            name = str(element.get("name") or "")
            rows.append(
                {
                    "value": f"{name} (product {known_id})",
                    "kommo": name,
                    "state": "not in the plan map",
                    "zuora": [],
                    "change": "kept (the plan map does not know it)",
                }
            )
    if writes and not dry_run:
        for start in range(0, len(writes), BATCH):
            try:
                kommo.update_catalog_elements(catalog_id, writes[start : start + BATCH])
            except BusinessError as exc:
                raise Refused(f"Kommo refused to change the products list: {exc.message}") from None
    return changes, rows


def list_price(mapping: PlanMapping, currency: str) -> Decimal | None:
    """What one of the element costs: each mapped plan's price (the mapping's, else its charges' list prices), times
    its quantity."""
    total = Decimal(0)
    for item in mapping.mapped_plans.all():
        if item.price is not None:
            each = item.price
        else:
            prices = [c.price_in(currency) for c in item.product_rate_plan.charges.all() if not c.removed_at]
            if any(p is None or p.get("price") in (None, "") for p in prices):
                return None
            each = sum((Decimal(str(p["price"])) for p in prices if p), Decimal(0))
        total += each * (item.quantity or 1)
    return total.quantize(Decimal("0.01"))


def product_row(value: str, kommo: str, state: str, mapping: PlanMapping, change: str) -> dict[str, Any]:
    return {
        "value": value,
        "kommo": kommo,
        "state": state,
        "zuora": [
            {"entity": mapping.entity.name if mapping.entity else "", "currency": mapping.currency, "verdict": state}
        ],
        "change": change,
    }


class Refused(Exception):
    """The run cannot change the field: why, for the report."""


def scheduled(dry_run: bool = False, requested_by: str = "schedule") -> str:
    """django-q2 entry point: after each catalog sync (and the admin's buttons)."""
    record = run(dry_run=dry_run, requested_by=requested_by)
    return record.error or f"{len(record.changes)} change(s)"
