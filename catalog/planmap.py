"""The plan map's rules: validating a mapping against the catalog, finding the mapping for a Kommo
value, and importing mappings from CSV (all or nothing, every bad line named)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from django.db import transaction

from catalog.models import MappedRatePlan, PlanMapping, ProductRatePlan, normalize, today
from catalog.sellable import sellable_on

MAX_CSV_BYTES = 2 * 1024 * 1024
REQUIRED_COLUMNS = ["kommo_value", "product_rate_plan_id"]
OPTIONAL_COLUMNS = ["currency", "label", "kind", "quantity", "price", "term_months", "auto_renew"]


@dataclass
class Check:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_rate_plan(plan: ProductRatePlan, currency: str, day: dt.date | None = None) -> Check:
    """Can a mapping in `currency` point at `plan` today? Errors refuse it; warnings only flag it."""
    day = day or today()
    verdict = sellable_on(plan, day, currency)
    result = Check()
    if not verdict.ok:
        result.errors.append(verdict.reason)
    elif verdict.retires_soon:
        result.warnings.append(
            f"rate plan '{plan}' retires on {verdict.retires_on:%Y-%m-%d}: plan the move to its successor"
        )
    return result


@dataclass(frozen=True)
class Lookup:
    mapping: PlanMapping | None
    reason: str = ""


def find_mapping(kind: str, value: str, currency: str) -> Lookup:
    """The active mapping for a Kommo value in the deal's currency — or why there is none."""
    candidates = list(
        PlanMapping.objects.filter(kind=kind, normalized_value=normalize(value), active=True).prefetch_related(
            "rate_plans__product_rate_plan__product", "rate_plans__product_rate_plan__charges"
        )
    )
    what = "plan" if kind == PlanMapping.Kind.PLAN else "Kommo product"
    if not candidates:
        return Lookup(None, f"no plan mapping for {what} '{value}': add it to the plan map in the zkbridge admin")
    for mapping in candidates:
        if mapping.currency == currency:
            if not mapping.rate_plans.all():
                return Lookup(None, f"the plan mapping for {what} '{value}' names no Zuora rate plan")
            return Lookup(mapping)
    others = ", ".join(sorted(m.currency for m in candidates))
    return Lookup(None, f"{what} '{value}' is mapped only in {others}; the deal is in {currency}")


# --- CSV import ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CsvRow:
    line: int
    kind: str
    value: str
    currency: str
    plan_id: str
    label: str
    quantity: Decimal | None
    price: Decimal | None
    term: str
    auto: str


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # What the import does (or would do, in a dry run): (line, "create"|"update", value, currency, plan)
    changes: list[tuple[int, str, str, str, str]] = field(default_factory=list)


def _decimal(value: str, name: str, errors: list[str]) -> Decimal | None:
    if not value.strip():
        return None
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        errors.append(f"{name} {value!r} is not a number")
        return None
    if number < 0 or not number.is_finite():
        errors.append(f"{name} must be zero or more")
        return None
    return number


def line_number(message: str) -> int:
    """Sort key: messages about the whole file first, then by the line they name."""
    match = re.match(r"line (\d+)", message)
    return int(match.group(1)) if match else 0


def import_csv(data: bytes, default_currency: str, dry_run: bool = False) -> ImportResult:
    """Upsert mappings from CSV. Any bad line → nothing is imported and every bad line is named.

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
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        if missing:
            result.errors.append(
                f"line 1: missing column(s) {', '.join(missing)} "
                f"(header must be {','.join(REQUIRED_COLUMNS)}[,{','.join(OPTIONAL_COLUMNS)}])"
            )
        if unknown:
            result.errors.append(f"line 1: unknown column(s) {', '.join(unknown)}")
        return result
    reader.fieldnames = header
    rows: list[CsvRow] = []
    seen: dict[tuple, int] = {}
    plan_ids = set()
    try:
        raw_rows = list(reader)
    except csv.Error as exc:
        result.errors.append(f"line {reader.line_num}: not valid CSV ({exc})")
        return result
    for line, row in enumerate(raw_rows, start=2):
        if None in row:
            result.errors.append(f"line {line}: more values than columns")
            continue
        row = {k: (v or "").strip() for k, v in row.items()}
        if not any(row.values()):
            continue
        value, plan_id = row["kommo_value"], row["product_rate_plan_id"]
        kind = (row.get("kind") or "plan").lower()
        currency = (row.get("currency") or default_currency).upper()
        problems = []
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
        if not plan_id:
            problems.append("product_rate_plan_id is empty")
        key = (kind, normalize(value), currency)
        if value and key in seen:
            problems.append(f"duplicate kommo_value {value!r} ({currency}); first on line {seen[key]}")
        seen.setdefault(key, line)
        term = row.get("term_months") or ""
        if term and (not term.isdigit() or int(term) < 1):
            problems.append(f"term_months {term!r} must be a whole number of at least 1")
        auto = (row.get("auto_renew") or "").lower()
        if auto and auto not in ("true", "false", "yes", "no", "1", "0"):
            problems.append(f"auto_renew {row['auto_renew']!r} must be true or false")
        quantity = _decimal(row.get("quantity") or "", "quantity", problems)
        price = _decimal(row.get("price") or "", "price", problems)
        result.errors += [f"line {line}: {p}" for p in problems]
        plan_ids.add(plan_id)
        rows.append(CsvRow(line, kind, value, currency, plan_id, row.get("label") or "", quantity, price, term, auto))
    plans = {
        p.zuora_id: p
        for p in ProductRatePlan.objects.filter(zuora_id__in=plan_ids)
        .select_related("product")
        .prefetch_related("charges")
    }
    for item in rows:
        line, plan_id, plan = item.line, item.plan_id, plans.get(item.plan_id)
        if plan_id and plan is None:
            result.errors.append(
                f"line {line}: unknown product_rate_plan_id {plan_id!r} "
                f"(not in the mirrored catalog: run sync_catalog?)"
            )
        elif plan is not None:
            check = check_rate_plan(plan, item.currency)
            result.errors += [f"line {line}: {e}" for e in check.errors]
            result.warnings += [f"line {line}: {w}" for w in check.warnings]
    if not rows and not result.errors:
        result.errors.append("the file has a header but no mappings")
    if result.errors:
        result.errors.sort(key=line_number)
        return result
    existing = {
        (m.kind, m.normalized_value, m.currency)
        for m in PlanMapping.objects.filter(normalized_value__in=[normalize(item.value) for item in rows])
    }
    for item in rows:
        action = "update" if (item.kind, normalize(item.value), item.currency) in existing else "create"
        result.changes.append((item.line, action, item.value, item.currency, str(plans[item.plan_id])))
    if dry_run:
        result.created = sum(1 for change in result.changes if change[1] == "create")
        result.updated = len(result.changes) - result.created
        return result
    with transaction.atomic():
        for item in rows:
            defaults: dict = {"kommo_value": item.value, "active": True}
            if item.label:
                defaults["label"] = item.label
            if item.term:
                defaults["term_months"] = int(item.term)
            if item.auto:
                defaults["auto_renew"] = item.auto in ("true", "yes", "1")
            mapping, created = PlanMapping.objects.update_or_create(
                kind=item.kind, normalized_value=normalize(item.value), currency=item.currency, defaults=defaults
            )
            plan = plans[item.plan_id]
            mapping.rate_plans.exclude(product_rate_plan=plan).delete()
            MappedRatePlan.objects.update_or_create(
                mapping=mapping, product_rate_plan=plan, defaults={"quantity": item.quantity, "price": item.price}
            )
            result.created += created
            result.updated += not created
    return result


EXPORT_COLUMNS = [
    "kommo_value",
    "product_rate_plan_id",
    "currency",
    "label",
    "kind",
    "quantity",
    "price",
    "term_months",
    "auto_renew",
]


def export_csv() -> str:
    """The plan map in import_csv's format (one line per mapped rate plan): export, edit, import back."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    items = MappedRatePlan.objects.select_related("mapping", "product_rate_plan").order_by(
        "mapping__kind", "mapping__kommo_value", "mapping__currency"
    )
    for item in items:
        m = item.mapping
        writer.writerow(
            [
                m.kommo_value,
                item.product_rate_plan.zuora_id,
                m.currency,
                m.label,
                m.kind,
                "" if item.quantity is None else f"{item.quantity.normalize():f}",
                "" if item.price is None else f"{item.price.normalize():f}",
                m.term_months,
                "true" if m.auto_renew else "false",
            ]
        )
    return out.getvalue()
