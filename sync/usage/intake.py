"""Usage intake: a feed's JSON array or CSV read as it arrives (no whole body in memory, no row ceiling), each
row checked, the valid ones stored once a batch at a time (the database finds the unique_keys it already
holds), each rejected row reported with its reasons."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import json
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.utils import timezone

from sync.models import SyncRecord
from sync.usage.models import UsageRecord
from sync.webhooks import values

BATCH = 5_000  # rows stored per transaction
MAX_RECORD_BYTES = 64 * 1024  # one JSON record larger than this is not a usage record
MAX_LISTED_REJECTIONS = 1_000  # the answer names this many rejected rows (and counts them all)
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


class TooLarge(BadFeed):
    """The body went past ZKBRIDGE_MAX_USAGE_BODY_BYTES while it was read (no length was declared)."""


@dataclass
class Intake:
    accepted: int = 0
    duplicates: int = 0
    rejected_total: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    problem: BadFeed | None = None  # why the body stopped being read (the rows before it are counted above)

    def reject(self, index: int, row: Any, errors: list[str]) -> None:
        self.rejected_total += 1
        if len(self.rejected) < MAX_LISTED_REJECTIONS:
            key = row.get("unique_key") if isinstance(row, dict) else None
            try:  # a key that is not valid text is not repeated back (the answer must be valid JSON)
                key = values.clean_text(key, "unique_key") if isinstance(key, str) else key
            except ValueError:
                key = None
            self.rejected.append({"index": index, "unique_key": key, "errors": errors})

    def store(self, batch: dict[str, Row]) -> None:
        stored = insert_new(placed(list(batch.values())))
        self.accepted += stored
        self.duplicates += len(batch) - stored


# --- reading ---------------------------------------------------------------------------------------
def read_rows(body: bytes, content_type: str) -> list[Any]:
    """A whole body's rows (for bodies already in memory); BadFeed when it cannot be read."""
    return list(rows_of(iter([body]), content_type))


def rows_of(chunks: Iterable[bytes], content_type: str) -> Iterator[Any]:
    """The body's rows as its chunks arrive: CSV with Content-Type text/csv, else a JSON array. BadFeed (saying
    where) when the body stops being readable; the rows before that point have been handed out."""
    if "csv" in content_type:
        return _csv_rows(iter(chunks))
    return _json_rows(iter(chunks))


def _text(chunks: Iterator[bytes], refusal: str) -> Generator[str, None, None]:
    """The chunks decoded as UTF-8 (a leading BOM dropped; a character split across two chunks kept whole)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        for chunk in chunks:
            text = decoder.decode(chunk)
            if text:
                yield text
        tail = decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise BadFeed(refusal) from None
    if tail:
        yield tail


class _Lines:
    """Text as lines ending in \\n, as the csv module reads a file opened with newline="" (a CR inside a line
    stays there for the csv module to judge); never the whole body at once. `count`: lines handed out."""

    def __init__(self, texts: Iterator[str]):
        self.texts = texts
        self.count = 0

    def __iter__(self) -> Iterator[str]:
        rest = ""
        for text in self.texts:
            pieces = (rest + text).split("\n")
            rest = pieces.pop()  # cut mid-line: it waits for the next piece
            for piece in pieces:
                self.count += 1
                yield piece + "\n"
        if rest:
            self.count += 1
            yield rest


def _csv_rows(chunks: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    texts = _text(chunks, "the body is not UTF-8")
    lines = _Lines(texts)
    reader = csv.DictReader(iter(lines))
    try:
        unknown = [c for c in reader.fieldnames or [] if c not in COLUMNS]
        if not reader.fieldnames or unknown:
            raise BadFeed(
                f"CSV header must use the columns {', '.join(COLUMNS)}"
                + (f"; unknown: {', '.join(c[:40] for c in unknown[:10])}" if unknown else "")
            )
        yield from reader
    except csv.Error as exc:  # a NUL, a stray carriage return, a field over the csv module's limit…
        raise BadFeed(f"not valid CSV (line {lines.count}): {exc}") from None
    finally:
        texts.close()  # now, not whenever the garbage collector gets to it


NOT_JSON = "the body is not JSON (send a JSON array, or CSV with Content-Type: text/csv)"


class _Text:
    """Decoded text arriving in pieces, read from a moving position."""

    def __init__(self, texts: Iterator[str]):
        self.texts = texts
        self.buffer = ""
        self.pos = 0
        self.done = False

    def more(self) -> bool:
        """Append the next piece (dropping what was read); False at the end of the body."""
        if self.done:
            return False
        text = next(self.texts, None)
        if text is None:
            self.done = True
            return False
        self.buffer, self.pos = self.buffer[self.pos :] + text, 0
        return True

    def next_char(self) -> str:
        """The next character that is not white space ("" at the end of the body)."""
        while True:
            while self.pos < len(self.buffer) and self.buffer[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if not self.more():
                return ""


def _json_rows(chunks: Iterator[bytes]) -> Iterator[Any]:
    """The elements of a JSON array one at a time, without ever holding the array."""
    texts = _text(chunks, f"{NOT_JSON} (it is not UTF-8)")
    try:
        yield from _json_elements(_Text(texts))
    finally:
        # Closed now, not by the garbage collector: a refusal of a deeply nested record used to leave this
        # generator to be collected later, and pytest once caught a RecursionError raised while that happened.
        texts.close()


def _json_elements(text: _Text) -> Iterator[Any]:
    decoder = json.JSONDecoder()
    first = text.next_char()
    if first == "":
        raise BadFeed(NOT_JSON)
    if first == "{":
        raise BadFeed("the body must be a JSON array of usage records")
    if first != "[":
        raise BadFeed(NOT_JSON)
    text.pos += 1
    index = 0
    if text.next_char() == "]":
        text.pos += 1
    else:
        while True:
            text.next_char()
            while True:
                try:
                    value, end = decoder.raw_decode(text.buffer, text.pos)
                except RecursionError:
                    raise BadFeed(f"record {index} is nested too deeply") from None
                except ValueError:
                    if len(text.buffer) - text.pos > MAX_RECORD_BYTES:
                        raise BadFeed(f"record {index} is not JSON, or larger than {MAX_RECORD_BYTES} bytes") from None
                    if text.more():
                        continue
                    raise BadFeed(f"{NOT_JSON}: it stops being JSON at record {index}") from None
                if end == len(text.buffer) and text.more():  # a number may go on in the next piece
                    continue
                break
            text.pos = end
            yield value
            index += 1
            after = text.next_char()
            text.pos += 1
            if after == "]":
                break
            if after != ",":
                raise BadFeed(f"{NOT_JSON}: expected , or ] after record {index - 1}")
    if text.next_char() != "":
        raise BadFeed(f"{NOT_JSON}: there is more after the array's end")


# --- checking ----------------------------------------------------------------------------------------
def _date(value: Any, name: str, errors: list[str]) -> dt.date | None:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        errors.append(f"{name} must be a date like 2026-11-01")
        return None


class Row(NamedTuple):
    """A usage row that passed every check: what is stored (a tuple, not a model: a million of them are made)."""

    unique_key: str
    subscription_number: str
    kommo_lead_id: int | None
    uom: str
    quantity: Decimal
    start_date: dt.date
    end_date: dt.date | None
    description: str
    account_number: str = ""  # filled when the row's deal is known (placed())


def validate(row: Any) -> tuple[Row | None, list[str]]:
    if not isinstance(row, dict):
        return None, ["a record must be an object"]
    errors: list[str] = []
    try:  # every text the row carries: no NUL, no unpaired surrogate
        if all(type(v) is str for v in row.values()):  # a CSV row, or flat JSON: one check for the whole row
            values.clean_text("\x01".join([*row, *row.values()]), "the record")
        else:
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
    return Row(key, subscription, lead_id, uom, quantity, start, end, str(row.get("description") or "")[:200]), []


# --- storing -----------------------------------------------------------------------------------------
def accept(rows: Iterable[Any]) -> Intake:
    """Store valid rows once (unique_key), a batch at a time as they are read. When `rows` stops with a
    BadFeed part way, the rows read before it are stored and the problem is on the Intake."""
    intake = Intake()
    batch: dict[str, Row] = {}
    try:
        for index, row in enumerate(rows):
            record, errors = validate(row)
            if record is None:
                intake.reject(index, row, errors)
            elif record.unique_key in batch:
                intake.duplicates += 1
            else:
                batch[record.unique_key] = record
                if len(batch) >= BATCH:
                    intake.store(batch)
                    batch = {}
    except BadFeed as exc:
        exc.__context__ = None  # its words are what is kept: no frames (a RecursionError's) held alive with it
        intake.problem = exc.with_traceback(None)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()
        if batch:
            intake.store(batch)
    return intake


def synced_deals(numbers: set[str], leads: set[int]) -> tuple[dict[str, str], dict[int, tuple[str, str]]]:
    """The deals zkbridge billed, for usage naming these subscription numbers or Kommo leads: account by
    subscription number, and (subscription, account) by lead. Usage is placed by its subscription first."""
    deals = SyncRecord.objects.billed()
    by_subscription = dict(
        deals.filter(zuora_subscription_number__in=numbers).values_list(
            "zuora_subscription_number", "zuora_account_number"
        )
    )
    by_lead = {
        lead: (subscription, account)
        for lead, subscription, account in deals.filter(kommo_lead_id__in=leads).values_list(
            "kommo_lead_id", "zuora_subscription_number", "zuora_account_number"
        )
        if lead is not None
    }
    return by_subscription, by_lead


def placed(rows: list[Row]) -> list[Row]:
    """The rows with the account (and, for a row naming a Kommo lead, the subscription) of the deal zkbridge
    billed, read for the whole batch in two queries: usage whose deal is synced is stored ready to send.
    A row whose deal is not synced yet keeps an empty account (placed, or flagged, when usage is submitted)."""
    by_subscription, by_lead = synced_deals(
        {row.subscription_number for row in rows if row.subscription_number},
        {row.kommo_lead_id for row in rows if row.kommo_lead_id is not None},
    )
    result = []
    for row in rows:
        if row.subscription_number in by_subscription:
            row = row._replace(account_number=by_subscription[row.subscription_number])
        elif row.kommo_lead_id in by_lead:
            subscription, account = by_lead[row.kommo_lead_id]
            row = row._replace(subscription_number=subscription, account_number=account)
        result.append(row)
    return result


def insert_new(rows: list[Row]) -> int:
    """Store the rows whose unique_key the database does not hold yet, and say how many that was: INSERT …
    ON CONFLICT (unique_key) DO NOTHING RETURNING, the database finding the duplicates. PostgreSQL gets the
    rows as one array per column (one short statement for thousands of rows); SQLite (3.35+) multi-row VALUES."""
    if not rows:
        return 0
    table = connection.ops.quote_name(UsageRecord._meta.db_table)
    now = timezone.now()
    columns = "unique_key, subscription_number, kommo_lead_id, account_number, uom, quantity, start_date, end_date, "
    columns += "description, status, error, received_at"
    pending = UsageRecord.Status.PENDING.value
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            keys, subscriptions, leads, uoms, quantities, starts, ends, descriptions, accounts = (
                list(c) for c in zip(*rows, strict=True)
            )
            cursor.execute(
                f"INSERT INTO {table} ({columns}) "
                "SELECT k, s, l, a, u, q, b, e, d, %s, '', %s FROM unnest("
                "%s::varchar[], %s::varchar[], %s::bigint[], %s::varchar[], %s::varchar[], %s::numeric[], %s::date[], "
                "%s::date[], %s::varchar[]) AS t(k, s, l, a, u, q, b, e, d) ON CONFLICT (unique_key) DO NOTHING "
                "RETURNING 1",
                [pending, now, keys, subscriptions, leads, accounts, uoms, quantities, starts, ends, descriptions],
            )
            return len(cursor.fetchall())
        stored = 0
        stamp = connection.ops.adapt_datetimefield_value(now)
        per_statement = 32_000 // 12  # SQLite takes at most 32,766 bound parameters a statement
        placeholder = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '', %s)"
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            params: list[Any] = []
            for row in chunk:
                params += [
                    row.unique_key,
                    row.subscription_number,
                    row.kommo_lead_id,
                    row.account_number,
                    row.uom,
                    str(row.quantity),
                    row.start_date.isoformat(),
                    row.end_date.isoformat() if row.end_date else None,
                    row.description,
                    pending,
                    stamp,
                ]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([placeholder] * len(chunk))} "
                "ON CONFLICT (unique_key) DO NOTHING RETURNING 1",
                params,
            )
            stored += len(cursor.fetchall())
        return stored
