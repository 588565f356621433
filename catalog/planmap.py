"""The plan map's rules: validating a mapping against the catalog, finding the mapping for a Kommo
value, and importing mappings from CSV (all or nothing, every bad line named)."""

from __future__ import annotations

import contextlib
import contextvars
import csv
import io
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from django.db import transaction

from catalog.models import (
    MappedRatePlan,
    PlanMapping,
    ProductRatePlan,
    ZuoraEntity,
    convert_for_plan,
    has_tiered_charge,
    normalize,
)
from catalog.tiers import LOWER_UPPER, TierError
from catalog.tiers import POLICIES as TIER_POLICIES
from zkbridge import spreadsheet

MAX_CSV_BYTES = 2 * 1024 * 1024
# How a plan that Zuora no longer sells is offered in Kommo's plan field: its option is kept (removing it would
# clear it on every deal carrying it) and renamed with this mark. The plan map reads the mark off.
RETIRED_MARK = " (retired)"
REQUIRED_COLUMNS = ["kommo_value", "product_rate_plan_id"]
OPTIONAL_COLUMNS = ["currency", "label", "kind", "quantity", "price", "term_months", "auto_renew"]


def plan_option(value: str) -> str:
    """A plan field's value as the plan map knows it: the retired mark zkbridge gives an option read off."""
    value = str(value).strip()
    while value.casefold().endswith(RETIRED_MARK.casefold()):
        value = value[: -len(RETIRED_MARK)].rstrip()
    return value


@dataclass(frozen=True)
class Lookup:
    mapping: PlanMapping | None
    reason: str = ""


# Within remembered_lookups(): what find_mapping answered, by question (a burst of won deals asks the same few).
_answers: contextvars.ContextVar[dict[tuple, tuple[threading.Lock, list[Lookup]]] | None] = contextvars.ContextVar(
    "plan_map_answers", default=None
)
_answers_guard = threading.Lock()


@contextlib.contextmanager
def remembered_lookups() -> Iterator[None]:
    """Inside the block (and the threads it starts with a copy of its context), find_mapping asks the
    database once per question: a burst of 250 won deals selling three plans reads the plan map three times,
    not 250 (five queries each). The block is one unit of work: a mapping edited during it applies to the
    deals after it, as an edit during one deal's order would."""
    token = _answers.set({})
    try:
        yield
    finally:
        _answers.reset(token)


def find_mapping(kind: str, value: str, currency: str, entity: ZuoraEntity | None = None) -> Lookup:
    """The active mapping for a Kommo value in the deal's currency and Zuora entity — or why there is none."""
    answers = _answers.get()
    if answers is None:
        return look_up_mapping(kind, value, currency, entity)
    question = (kind, normalize(value), currency, entity.pk if entity is not None else None)
    with _answers_guard:
        asking, answer = answers.setdefault(question, (threading.Lock(), []))
    with asking:  # deals asking the same question at once wait for the first one's answer
        if not answer:
            answer.append(look_up_mapping(kind, value, currency, entity))
        return answer[0]


def look_up_mapping(kind: str, value: str, currency: str, entity: ZuoraEntity | None) -> Lookup:
    candidates = list(
        PlanMapping.objects.filter(
            kind=kind, normalized_value=normalize(value), active=True, entity=entity
        ).prefetch_related("mapped_plans__product_rate_plan__product", "mapped_plans__product_rate_plan__charges")
    )
    what = "plan" if kind == PlanMapping.Kind.PLAN else "Kommo product"
    if not candidates:
        where = f" in entity {entity}" if entity is not None else ""
        return Lookup(
            None, f"no plan mapping for {what} '{value}'{where}: add it to the plan map in the zkbridge admin"
        )
    for mapping in candidates:
        if mapping.currency == currency:
            if not mapping.mapped_plans.all():
                return Lookup(None, f"the plan mapping for {what} '{value}' names no Zuora rate plan")
            return Lookup(mapping)
    others = ", ".join(sorted(m.currency for m in candidates))
    return Lookup(None, f"{what} '{value}' is mapped only in {others}; the deal is in {currency}")


# --- CSV import and export ------------------------------------------------------------------------
# One line per mapping. A mapping with several rate plans names them in one cell separated by ";", with
# its quantities and prices aligned the same way ("10;" = 10 on the first plan, none on the second).
# Columns besides the two required ones left empty keep what the mapping has (defaults for a new one).
PLAN_SEPARATOR = ";"
NO_TIERS = "none"  # the tiers cell that removes a mapping's negotiated tiers (empty keeps them)
BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
MAPPING_COLUMNS = [
    "currency",
    "label",
    "kind",
    "quantity",
    "price",
    "term_months",
    "auto_renew",
    "evergreen",
    "renewal_term_months",
    "payment_term",
    "active",
    "tier_policy",
    "tiers",
    "entity",
]
OPTIONAL_COLUMNS = MAPPING_COLUMNS
EXPORT_COLUMNS = REQUIRED_COLUMNS + MAPPING_COLUMNS


@dataclass(frozen=True)
class PlanItem:
    plan_id: str
    quantity: Decimal | None
    price: Decimal | None


@dataclass(frozen=True)
class CsvRow:
    line: int
    kind: str
    value: str
    currency: str
    items: tuple[PlanItem, ...]
    # Mapping fields the line sets (absent: left as they are).
    fields: dict
    # Negotiated tiers (the CRM's form) of the line's one rate plan with a tiered charge; empty: none.
    tiers: str = ""
    entity: ZuoraEntity | None = None  # the Zuora entity whose deals it maps (by name or entity id)


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # What the import does (or would do, in a dry run): (line, "create"|"update", value, currency, plans)
    changes: list[tuple[int, str, str, str, str]] = field(default_factory=list)


def _decimal(value: str, name: str, errors: list[str]) -> Decimal | None:
    if not value.strip():
        return None
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        errors.append(f"{name} {value!r} is not a number")
        return None
    if not number.is_finite() or number < 0:
        errors.append(f"{name} must be zero or more")
        return None
    if number.as_tuple().exponent < -4 or abs(number) >= Decimal("1e14"):  # type: ignore[operator]
        errors.append(f"{name} {value!r} has more than 14 digits before or 4 after the point")
        return None
    return number


def line_number(message: str) -> int:
    """Sort key: messages about the whole file first, then by the line they name."""
    match = re.match(r"line (\d+)", message)
    return int(match.group(1)) if match else 0


def _whole(value: str, name: str, problems: list[str]) -> int | None:
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 1200:
        problems.append(f"{name} {value!r} must be a whole number of months from 1 to 1200")
        return None
    return int(value)


def _boolean(value: str, name: str, problems: list[str]) -> bool | None:
    if not value:
        return None
    if value.lower() not in BOOLEANS:
        problems.append(f"{name} {value!r} must be true or false")
        return None
    return BOOLEANS[value.lower()]


def _plan_items(row: dict[str, str], problems: list[str]) -> tuple[PlanItem, ...]:
    ids = [p.strip() for p in row["product_rate_plan_id"].split(PLAN_SEPARATOR)]
    if not any(ids):
        problems.append("product_rate_plan_id is empty")
        return ()
    quantities = (row.get("quantity") or "").split(PLAN_SEPARATOR)
    prices = (row.get("price") or "").split(PLAN_SEPARATOR)
    for name, values in (("quantity", quantities), ("price", prices)):
        if len(values) > len(ids):
            problems.append(f"{name} has {len(values)} values for {len(ids)} rate plan(s)")
    if "" in ids:
        problems.append(f"product_rate_plan_id has an empty entry between '{PLAN_SEPARATOR}'")
    if len(set(ids)) < len(ids):
        problems.append("product_rate_plan_id names the same rate plan twice")
    items = []
    for index, plan_id in enumerate(ids):
        quantity = _decimal(quantities[index] if index < len(quantities) else "", "quantity", problems)
        price = _decimal(prices[index] if index < len(prices) else "", "price", problems)
        items.append(PlanItem(plan_id, quantity, price))
    return tuple(items)


def _read_row(line: int, row: dict[str, str], default_currency: str, problems: list[str]) -> CsvRow:
    value = row["kommo_value"]
    kind = (row.get("kind") or "plan").lower()
    currency = (row.get("currency") or default_currency).upper()
    if not value:
        problems.append("kommo_value is empty")
    elif len(value) > 255:
        problems.append("kommo_value is longer than 255 characters")
    if kind not in PlanMapping.Kind.values:
        problems.append(f"kind must be one of {', '.join(PlanMapping.Kind.values)}, not {row['kind']!r}")
    elif kind == PlanMapping.Kind.PRODUCT and not value.isdigit():
        problems.append("a Kommo product is named by its catalog element id (a number)")
    if not re.fullmatch(r"[A-Z]{3}", currency):
        problems.append(f"currency {row.get('currency')!r} is not a three-letter ISO code")
    fields: dict = {}
    if row.get("label"):
        fields["label"] = row["label"][:255]
    if len(row.get("payment_term") or "") > 100:
        problems.append("payment_term is longer than 100 characters")
    elif row.get("payment_term"):
        fields["payment_term"] = row["payment_term"]
    for name in ("term_months", "renewal_term_months"):
        if (number := _whole(row.get(name) or "", name, problems)) is not None:
            fields[name] = number
    for name in ("auto_renew", "evergreen", "active"):
        if (flag := _boolean(row.get(name) or "", name, problems)) is not None:
            fields[name] = flag
    policy = (row.get("tier_policy") or "").lower()
    if policy and policy not in dict(TIER_POLICIES):
        problems.append(f"tier_policy {row['tier_policy']!r} must be one of {', '.join(dict(TIER_POLICIES))}")
    elif policy:
        fields["tier_policy"] = policy
    entity = None
    if named := row.get("entity") or "":
        entity = next(
            (e for e in ZuoraEntity.objects.all() if named.casefold() in (e.name.casefold(), e.entity_id)), None
        )
        if entity is None:
            problems.append(f"entity {named!r} is not a Zuora entity zkbridge knows (admin → Zuora entities)")
    return CsvRow(line, kind, value, currency, _plan_items(row, problems), fields, row.get("tiers") or "", entity)


def _read_lines(text: str, default_currency: str, result: ImportResult) -> list[CsvRow]:
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        result.errors.append(f"line 1: not valid CSV ({exc})")
        return []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing:
        result.errors.append(
            f"line 1: missing column(s) {', '.join(missing)} "
            f"(header must be {','.join(REQUIRED_COLUMNS)}[,{','.join(OPTIONAL_COLUMNS)}])"
        )
    if unknown:
        result.errors.append(f"line 1: unknown column(s) {', '.join(unknown)}")
    if missing or unknown:
        return []
    reader.fieldnames = header
    try:
        raw_rows = list(reader)
    except csv.Error as exc:
        result.errors.append(f"line {reader.line_num}: not valid CSV ({exc})")
        return []
    rows: list[CsvRow] = []
    seen: dict[tuple, int] = {}
    for line, raw in enumerate(raw_rows, start=2):
        if None in raw:
            result.errors.append(f"line {line}: more values than columns")
            continue
        cells = {k: spreadsheet.unescape(v or "").strip() for k, v in raw.items()}  # (as export_csv wrote them)
        if not any(cells.values()):
            continue
        problems: list[str] = []
        row = _read_row(line, cells, default_currency, problems)
        key = (row.kind, normalize(row.value), row.currency, row.entity.pk if row.entity else None)
        if row.value and key in seen:
            problems.append(f"duplicate kommo_value {row.value!r} ({row.currency}); first on line {seen[key]}")
        seen.setdefault(key, line)
        result.errors += [f"line {line}: {p}" for p in problems]
        rows.append(row)
    return rows


def import_csv(data: bytes, default_currency: str, dry_run: bool = False) -> ImportResult:
    """Upsert mappings from CSV. Any bad line → nothing is imported and every bad line is named.

    A rate plan that is no longer sellable is refused for a new assignment, but a mapping that already
    carries it keeps it (reported as a warning): an export always imports back into the same database.
    With dry_run, nothing is written and `changes` says what the import would do (the admin's preview)."""
    result = ImportResult()
    if len(data) > MAX_CSV_BYTES:
        result.errors.append(f"the file is {len(data):,} bytes; the limit is {MAX_CSV_BYTES:,}")
        return result
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        result.errors.append(f"the file is not UTF-8 text (byte {exc.start}): save it as CSV UTF-8")
        return result
    if "\x00" in text:
        result.errors.append("the file contains NUL bytes: it is not a CSV text file")
        return result
    rows = _read_lines(text, default_currency, result)
    if not rows and not result.errors:
        result.errors.append("the file has a header but no mappings")
    plan_ids = {item.plan_id for row in rows for item in row.items}
    plans = {
        p.zuora_id: p
        for p in ProductRatePlan.objects.filter(zuora_id__in=plan_ids)
        .select_related("product")
        .prefetch_related("charges")
        .select_related("product__entity")
    }
    existing = {
        (m.kind, m.normalized_value, m.currency, m.entity_id): m
        for m in PlanMapping.objects.filter(normalized_value__in=[normalize(r.value) for r in rows]).prefetch_related(
            "mapped_plans__product_rate_plan"
        )
    }
    for row in rows:
        mapping = existing.get(_key(row))
        carried = {i.product_rate_plan.zuora_id for i in mapping.mapped_plans.all()} if mapping else set()
        unknown = [item.plan_id for item in row.items if item.plan_id not in plans]
        result.errors += [
            f"line {row.line}: unknown product_rate_plan_id {plan_id!r} (not in the mirrored catalog: run "
            "sync_catalog?)"
            for plan_id in unknown
        ]
        if not unknown:  # the mapping as the line would leave it, judged by the rule the admin applies
            judged = PlanMapping(
                kind=row.kind,
                kommo_value=row.value,
                currency=row.currency,
                entity=row.entity,
                upgrade_timing=row.fields.get("upgrade_timing", mapping.upgrade_timing if mapping else ""),
                downgrade_timing=row.fields.get("downgrade_timing", mapping.downgrade_timing if mapping else ""),
            )
            errors, warnings = judged.plan_problems([plans[i.plan_id] for i in row.items], carried=carried)
            result.errors += [f"line {row.line}: {e}" for e in errors]
            result.warnings += [f"line {row.line}: {w}" for w in warnings]
        if row.tiers and row.tiers.lower() != NO_TIERS:
            _check_tiers(row, [plans[i.plan_id] for i in row.items if i.plan_id in plans], mapping, result)
    if result.errors:
        result.errors.sort(key=line_number)
        return result
    for row in rows:
        action = "update" if _key(row) in existing else "create"
        names = ", ".join(str(plans[item.plan_id]) for item in row.items)
        result.changes.append((row.line, action, row.value, row.currency, names))
    result.created = sum(1 for change in result.changes if change[1] == "create")
    result.updated = len(result.changes) - result.created
    if not dry_run:
        with transaction.atomic():
            for row in rows:
                _save(row, plans)
    return result


def _key(row: CsvRow) -> tuple:
    return (row.kind, normalize(row.value), row.currency, row.entity.pk if row.entity else None)


def _check_tiers(row: CsvRow, chosen: list[ProductRatePlan], mapping: PlanMapping | None, result) -> None:
    policy = row.fields.get("tier_policy") or (mapping.tier_policy if mapping else LOWER_UPPER)
    tiered = [p for p in chosen if has_tiered_charge(p)]
    if len(tiered) != 1:
        result.errors.append(
            f"line {row.line}: tiers need exactly one rate plan with a Tiered or Volume charge; the line has "
            f"{len(tiered)}"
        )
        return
    try:
        convert_for_plan(tiered[0], row.tiers, policy)
    except TierError as exc:
        result.errors.append(f"line {row.line}: tiers: {exc}")


def _save(row: CsvRow, plans: dict[str, ProductRatePlan]) -> None:
    mapping, _ = PlanMapping.objects.update_or_create(
        kind=row.kind,
        normalized_value=normalize(row.value),
        currency=row.currency,
        entity=row.entity,
        defaults={"kommo_value": row.value, "active": True, **row.fields},
    )
    chosen = [plans[item.plan_id] for item in row.items]
    mapping.mapped_plans.exclude(product_rate_plan__in=chosen).delete()
    for item, plan in zip(row.items, chosen, strict=True):
        defaults: dict = {"quantity": item.quantity, "price": item.price}
        if row.tiers:  # empty keeps what the rate plan row has; "none" clears it
            keep = has_tiered_charge(plan) and row.tiers.lower() != NO_TIERS
            defaults["tiers"] = row.tiers if keep else ""
        MappedRatePlan.objects.update_or_create(mapping=mapping, product_rate_plan=plan, defaults=defaults)


def _number(value: Decimal | None) -> str:
    return "" if value is None else f"{value.normalize():f}"


def export_csv() -> str:
    """The plan map in import_csv's format, every column the admin edits: export, edit, import back."""
    out = io.StringIO()
    writer = spreadsheet.writer(out)  # no cell runs as a formula; import_csv reads them back exactly
    writer.writerow(EXPORT_COLUMNS)
    mappings = (
        PlanMapping.objects.select_related("entity")
        .prefetch_related("mapped_plans__product_rate_plan")
        .order_by("kind", "normalized_value", "currency")
    )
    for m in mappings:
        items = sorted(m.mapped_plans.all(), key=lambda i: i.id)
        if not items:
            continue  # the admin never saves a mapping without a plan; nothing an import could recreate
        flag = {True: "true", False: "false"}
        writer.writerow(
            [
                m.kommo_value,
                PLAN_SEPARATOR.join(i.product_rate_plan.zuora_id for i in items),
                m.currency,
                m.label,
                m.kind,
                PLAN_SEPARATOR.join(_number(i.quantity) for i in items)
                if any(i.quantity is not None for i in items)
                else "",
                PLAN_SEPARATOR.join(_number(i.price) for i in items) if any(i.price is not None for i in items) else "",
                m.term_months,
                flag[m.auto_renew],
                flag[m.evergreen],
                m.renewal_term_months,
                m.payment_term,
                flag[m.active],
                m.tier_policy,
                next((i.tiers for i in items if i.tiers), ""),
                m.entity.name if m.entity else "",
            ]
        )
    return out.getvalue()
