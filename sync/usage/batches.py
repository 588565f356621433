"""Sending usage to Zuora: placing pending records on their subscriptions and grouping them into
usage_batch sync records, each one CSV import under Zuora's 4 MB (the flow in sync/usage/flow.py sends it).

Built for millions of rows: placing is one UPDATE per synced subscription (or lead), batching reads the
pending rows a few thousand at a time in id order and measures each one's CSV line as it goes, so memory
stays flat however much usage waits; each batch is closed as soon as its file would pass 4 MB."""

from __future__ import annotations

import csv
import io
import itertools
import uuid
from collections.abc import Iterable, Iterator
from decimal import Decimal

from django.db import transaction

from sync.models import SyncRecord, UsageRecord
from sync.records import ensure_record

ZUORA_COLUMNS = [
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
MAX_IMPORT_BYTES = 4 * 1024 * 1024 - 64 * 1024  # Zuora's 4 MB, with room for the multipart envelope
READ = 5_000  # rows read a query
# What a CSV line is made of, in ZUORA_COLUMNS order (CHARGE_ID stays empty).
LINE_FIELDS = ["id", "account_number", "uom", "quantity", "start_date", "end_date", "subscription_number"]
LINE_FIELDS += ["description", "unique_key"]


UNREADABLE = (
    "the stored quantity cannot be read back exactly (a value accepted before zkbridge bounded quantities); "
    "send it again with at most 15 significant digits"
)


def readable(queryset) -> Iterator[tuple]:
    """LINE_FIELDS of the records of `queryset`, in id order, READ rows a query (never every id at once). A
    record that cannot be read (a quantity SQLite stored as a float too large to read back) is marked failed
    with its reason and skipped: it never stops the others."""
    last = 0
    while True:
        page = queryset.filter(id__gt=last).order_by("id")
        ids = list(page.values_list("id", flat=True)[:READ])
        if not ids:
            return
        try:
            yield from list(UsageRecord.objects.filter(id__in=ids).order_by("id").values_list(*LINE_FIELDS))
        except (ArithmeticError, ValueError, TypeError):
            for record_id in ids:
                try:
                    yield UsageRecord.objects.filter(id=record_id).values_list(*LINE_FIELDS).get()
                except (ArithmeticError, ValueError, TypeError):
                    UsageRecord.objects.filter(id=record_id).update(status=UsageRecord.Status.FAILED, error=UNREADABLE)
        last = ids[-1]


def place_pending() -> int:
    """Fill account and subscription numbers from the deals zkbridge synced, one UPDATE per subscription or
    lead that has pending usage; usage matching neither is flagged unplaceable. Returns how many were placed."""
    deals = SyncRecord.objects.filter(kind=SyncRecord.Kind.DEAL_WON).exclude(zuora_subscription_number="")
    pending = UsageRecord.objects.filter(status=UsageRecord.Status.PENDING, account_number="")
    placed = 0
    numbers = set(pending.exclude(subscription_number="").values_list("subscription_number", flat=True).distinct())
    for subscription, account in deals.filter(zuora_subscription_number__in=numbers).values_list(
        "zuora_subscription_number", "zuora_account_number"
    ):
        placed += pending.filter(subscription_number=subscription).update(account_number=account)
    leads = set(pending.exclude(kommo_lead_id=None).values_list("kommo_lead_id", flat=True).distinct())
    for lead, subscription, account in deals.filter(kommo_lead_id__in=leads).values_list(
        "kommo_lead_id", "zuora_subscription_number", "zuora_account_number"
    ):
        placed += pending.filter(kommo_lead_id=lead).update(subscription_number=subscription, account_number=account)
    pending.update(
        status=UsageRecord.Status.UNPLACEABLE,
        error="no Zuora subscription synced by zkbridge for this subscription number / Kommo lead",
    )
    return placed


def csv_lines(rows: Iterable[tuple]) -> Iterator[str]:
    """Each record's line of Zuora's usage CSV (`rows`: LINE_FIELDS), one writer for all of them."""
    out = io.StringIO()
    writer = csv.writer(out)
    for _, account, uom, quantity, start, end, subscription, description, key in rows:
        out.seek(0)
        out.truncate()
        writer.writerow(
            [
                account,
                uom,
                f"{Decimal(quantity).normalize():f}",
                start.strftime("%m/%d/%Y"),
                end.strftime("%m/%d/%Y") if end else "",
                subscription,
                "",
                description,
                key,
            ]
        )
        yield out.getvalue()


def header_line() -> str:
    out = io.StringIO()
    csv.writer(out).writerow(ZUORA_COLUMNS)
    return out.getvalue()


def usage_csv(rows: Iterable[tuple]) -> bytes:
    """The CSV file Zuora imports, from LINE_FIELDS rows."""
    return (header_line() + "".join(csv_lines(rows))).encode()


def create_batches() -> list[SyncRecord]:
    """Group placed pending records into usage_batch sync records, each CSV under Zuora's 4 MB, closed as the
    rows are read (a batch is enqueued when its transaction commits, with its records attached)."""
    place_pending()
    batches: list[SyncRecord] = []
    waiting = UsageRecord.objects.filter(status=UsageRecord.Status.PENDING, batch__isnull=True).exclude(
        account_number=""
    )
    header = len(header_line().encode())
    ids: list[int] = []
    size = header
    source = readable(waiting)
    rows_and_lines = ((row[0], len(line.encode())) for row, line in _with_lines(source))
    for record_id, line in rows_and_lines:
        if ids and size + line > MAX_IMPORT_BYTES:
            batches.append(close_batch(waiting, ids))
            ids, size = [], header
        ids.append(record_id)
        size += line
    if ids:
        batches.append(close_batch(waiting, ids))
    return batches


def _with_lines(rows: Iterator[tuple]) -> Iterator[tuple[tuple, str]]:
    """Each row with its CSV line (one writer for all)."""
    first, second = itertools.tee(rows)
    return zip(first, csv_lines(second), strict=True)


def close_batch(waiting, ids: list[int]) -> SyncRecord:
    """A batch of the measured rows `ids` (in id order): one UPDATE over their id range. Should the range hold
    more (a feed stored rows while this one was read) or fewer (a concurrent submission took some), only the
    measured rows still waiting are taken, by id: a file never passes 4 MB, a row is never in two batches."""
    with transaction.atomic():
        batch, _ = ensure_record(
            SyncRecord.Kind.USAGE_BATCH,
            f"usage_batch:{uuid.uuid4().hex}",
            payload={"records": len(ids)},
            summary=f"{len(ids)} usage record(s)",
        )
        moved = waiting.filter(id__gte=ids[0], id__lte=ids[-1]).update(batch=batch)
        if moved != len(ids):
            UsageRecord.objects.filter(batch=batch).update(batch=None)
            for start in range(0, len(ids), READ):
                waiting.filter(id__in=ids[start : start + READ]).update(batch=batch)
    return batch
