"""Usage intake: reading a feed's JSON or CSV body and storing its records once (idempotent on unique_key),
each rejected row with its reasons."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction

from sync.models import UsageRecord
from sync.webhooks import values

MAX_ROWS = 10_000
COLUMNS = [
    "subscription_number",
    "kommo_lead_id",
    "uom",
    "quantity",
    "start_date",
    "end_date",
    "unique_key",
    "description",
]


class BadFeed(ValueError):
    """The body as a whole cannot be read (not rows with problems: those are rejected one by one)."""


@dataclass
class Intake:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


def read_rows(body: bytes, content_type: str) -> list[dict[str, Any]]:
    if "csv" in content_type:
        try:
            rows = _csv_rows(body.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise BadFeed("the body is not UTF-8") from None
    else:
        not_json = "the body is not JSON (send a JSON array, or CSV with Content-Type: text/csv)"
        try:
            rows = values.json_body(body, not_json, encoding="utf-8-sig")
        except ValueError as exc:
            raise BadFeed(str(exc)) from None
        if not isinstance(rows, list):
            raise BadFeed("the body must be a JSON array of usage records")
    if len(rows) > MAX_ROWS:
        raise BadFeed(f"{len(rows)} records; at most {MAX_ROWS} per request")
    return rows


def _csv_rows(text: str) -> list[dict[str, Any]]:
    try:
        values.clean_text(text, "the CSV")
    except ValueError as exc:
        raise BadFeed(str(exc)) from None
    try:
        reader = csv.DictReader(io.StringIO(text))
        unknown = [c for c in reader.fieldnames or [] if c not in COLUMNS]
        if not reader.fieldnames or unknown:
            raise BadFeed(
                f"CSV header must use the columns {', '.join(COLUMNS)}"
                + (f"; unknown: {', '.join(c[:40] for c in unknown[:10])}" if unknown else "")
            )
        return list(reader)
    except csv.Error as exc:  # a stray carriage return, a field over the csv module's limit…
        raise BadFeed(f"not valid CSV: {exc}") from None


def _date(value: Any, name: str, errors: list[str]) -> dt.date | None:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        errors.append(f"{name} must be a date like 2026-11-01")
        return None


def validate(row: Any) -> tuple[UsageRecord | None, list[str]]:
    if not isinstance(row, dict):
        return None, ["a record must be an object"]
    errors: list[str] = []
    try:  # every text the row carries: no NUL, no unpaired surrogate
        values.check_tree(row, "the record")
    except ValueError as exc:
        return None, [str(exc)]
    key = str(row.get("unique_key") or "").strip()
    if not key:
        errors.append("unique_key is required")
    elif len(key) > 100:
        errors.append("unique_key is longer than 100 characters")
    subscription = str(row.get("subscription_number") or "").strip()
    lead = str(row.get("kommo_lead_id") or "").strip()
    if not subscription and not lead:
        errors.append("subscription_number or kommo_lead_id is required")
    lead_id = None
    if lead:
        try:
            lead_id = values.whole_number(lead, "kommo_lead_id", positive=True)
        except ValueError as exc:
            errors.append(str(exc))
    if len(subscription) > 50:
        errors.append("subscription_number is longer than 50 characters")
    uom = str(row.get("uom") or "").strip()
    if not uom or len(uom) > 50:
        errors.append("uom is required (at most 50 characters)")
    try:
        quantity = values.quantity(row.get("quantity"))
    except ValueError as exc:
        errors.append(str(exc))
        quantity = Decimal(0)
    start = _date(row.get("start_date"), "start_date", errors)
    end = _date(row.get("end_date"), "end_date", errors)
    if start is None and not any("start_date" in e for e in errors):
        errors.append("start_date is required")
    if start and end and end < start:
        errors.append("end_date is before start_date")
    if errors or start is None:
        return None, errors
    return UsageRecord(
        unique_key=key,
        subscription_number=subscription,
        kommo_lead_id=lead_id,
        uom=uom,
        quantity=quantity,
        start_date=start,
        end_date=end,
        description=str(row.get("description") or "")[:200],
    ), []


def accept(rows: list[Any]) -> Intake:
    """Store valid rows once (unique_key); report duplicates and each rejected row with its reasons."""
    intake = Intake()
    valid: dict[str, UsageRecord] = {}
    for index, row in enumerate(rows):
        record, errors = validate(row)
        if record is None:
            key = row.get("unique_key") if isinstance(row, dict) else None
            intake.rejected.append({"index": index, "unique_key": key, "errors": errors})
        elif record.unique_key in valid:
            intake.duplicates += 1
        else:
            valid[record.unique_key] = record
    known = set(UsageRecord.objects.filter(unique_key__in=list(valid)).values_list("unique_key", flat=True))
    fresh = [r for k, r in valid.items() if k not in known]
    with transaction.atomic():
        created = UsageRecord.objects.bulk_create(fresh, ignore_conflicts=True, batch_size=500)
    intake.duplicates += len(known)
    intake.accepted = len(created)
    return intake
