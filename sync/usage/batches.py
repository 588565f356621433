"""Sending usage to Zuora: placing pending records on their subscriptions and grouping them into
usage_batch sync records, each one CSV import under Zuora's 4 MB (the flow in sync/usage/flow.py sends it).

Built for millions of rows: placing is one UPDATE per synced subscription (or lead), batching reads the
pending rows a few thousand at a time in id order and measures each one's CSV line as it goes, so memory
stays flat however much usage waits; each batch is closed as soon as its file would pass 4 MB."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import re
import uuid
from collections.abc import Iterable, Iterator
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Max, Q, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Concat

from catalog.models import ZuoraEntity
from sync.locks import named_lock
from sync.models import SyncRecord
from sync.records import ensure_record
from sync.usage.intake import synced_deals
from sync.usage.models import UsageRecord

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
        try:
            rows = list(page.values_list(*LINE_FIELDS)[:READ])
        except (ArithmeticError, ValueError, TypeError):  # a row of this page cannot be read: one by one
            ids = list(page.values_list("id", flat=True)[:READ])
            rows = list(one_by_one(ids))
            if not ids:
                return
            yield from rows
            last = ids[-1]
            continue
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def one_by_one(ids: list[int]) -> Iterator[tuple]:
    """The readable rows of `ids`; the others are marked failed with the reason."""
    for record_id in ids:
        try:
            yield UsageRecord.objects.filter(id=record_id).values_list(*LINE_FIELDS).get()
        except (ArithmeticError, ValueError, TypeError):
            UsageRecord.objects.filter(id=record_id).update(status=UsageRecord.Status.FAILED, error=UNREADABLE)


def place_pending() -> int:
    """Fill account and subscription numbers from the deals zkbridge synced, one UPDATE per subscription or
    lead that has pending usage; usage matching neither is flagged unplaceable. Returns how many were placed."""
    pending = UsageRecord.objects.filter(status=UsageRecord.Status.PENDING, account_number="")
    by_subscription, by_lead = synced_deals(
        set(pending.exclude(subscription_number="").values_list("subscription_number", flat=True).distinct()),
        {lead for lead in pending.values_list("kommo_lead_id", flat=True).distinct() if lead is not None},
    )
    placed = 0
    for subscription, account in by_subscription.items():
        placed += pending.filter(subscription_number=subscription).update(account_number=account)
    for lead, (subscription, account) in by_lead.items():  # only rows their subscription did not place
        placed += pending.filter(kommo_lead_id=lead).update(subscription_number=subscription, account_number=account)
    pending.update(
        status=UsageRecord.Status.UNPLACEABLE,
        error="no Zuora subscription synced by zkbridge for this subscription number / Kommo lead",
    )
    return placed


class LineWriter:
    """Records' lines of Zuora's usage CSV (rows: LINE_FIELDS), one csv writer for all of them."""

    def __init__(self) -> None:
        self.out = io.StringIO()
        self.writer = csv.writer(self.out)
        self.width = len(columns())

    def line(self, row: tuple) -> str:
        self.out.seek(0)
        self.out.truncate()
        self.writer.writerow(fields_of(row)[: self.width])
        return self.out.getvalue()


@functools.lru_cache(maxsize=4096)
def _us_date(day: dt.date) -> str:
    """MM/DD/YYYY (a file's rows share a few dates: each is formatted once)."""
    return day.strftime("%m/%d/%Y")


def fields_of(row: tuple) -> list[str]:
    """A LINE_FIELDS row as the columns of Zuora's usage CSV (ZUORA_COLUMNS)."""
    _, account, uom, quantity, start, end, subscription, description, key = row
    return [
        account,
        uom,
        f"{Decimal(quantity).normalize():f}",
        _us_date(start),
        _us_date(end) if end else "",
        subscription,
        "",
        description,
        key,
    ]


QUOTED = re.compile(r'[,"\r\n]')  # what makes the csv module quote a field (QUOTE_MINIMAL)


def line_size(row: tuple, width: int | None = None) -> int:
    """The bytes of the row's CSV line, counted without writing it (the csv module's rules: a field holding a
    comma, a quote or a line break is quoted and its quotes doubled; lines end with CRLF). `width`: the number
    of columns the file has (columns())."""
    width = width or len(columns())
    size = width + 1  # the commas and the CRLF
    for field in fields_of(row)[:width]:
        size += len(field) if field.isascii() else len(field.encode())
        if QUOTED.search(field):
            size += 2 + field.count('"')
    return size


def _quoting(column: str) -> str:
    return (
        f"CASE WHEN strpos({column}, ',') + strpos({column}, '\"') + strpos({column}, chr(13)) "
        f"+ strpos({column}, chr(10)) > 0 THEN 2 + length({column}) - length(replace({column}, '\"', '')) ELSE 0 END"
    )


# line_size() in PostgreSQL's words: the commas and CRLF, each field's bytes, a date's MM/DD/ and its year
# (unpadded, as strftime writes it), the quantity without trailing zeros, and the quotes the csv module adds.
TEXT_COLUMNS = ["account_number", "uom", "subscription_number", "description", "unique_key"]


def line_size_sql(with_key: bool) -> str:
    text = TEXT_COLUMNS if with_key else TEXT_COLUMNS[:-1]
    return " + ".join(
        [
            str(len(ZUORA_COLUMNS) + (1 if with_key else 0)),
            *(f"octet_length({c})" for c in text),
            "octet_length(trim_scale(quantity)::text)",
            "6 + length(extract(year FROM start_date)::int::text)",
            "CASE WHEN end_date IS NULL THEN 0 ELSE 6 + length(extract(year FROM end_date)::int::text) END",
            *(_quoting(c) for c in text),
        ]
    )


def sized(queryset) -> Iterator[tuple[int, int]]:
    """(id, bytes of its CSV line) of each record of `queryset`, in id order. PostgreSQL measures the lines
    itself (1M rows: 1.6 s, where reading them into Python to measure took 9 s); elsewhere line_size()."""
    if connection.vendor != "postgresql":
        width = len(columns())
        yield from ((row[0], line_size(row, width)) for row in readable(queryset))
        return
    measured = queryset.annotate(line_bytes=RawSQL(line_size_sql(keyed()), ())).order_by("id")
    yield from measured.values_list("id", "line_bytes").iterator(chunk_size=20_000)


def keyed() -> bool:
    """Whether the file carries UNIQUE_KEY: only when the operator says the tenant has Advanced Consumption
    Billing (ZUORA_USAGE_UNIQUE_KEY), the only tenants Zuora documents the column for."""
    return bool(settings.ZUORA_USAGE_UNIQUE_KEY)


def columns() -> list[str]:
    return ZUORA_COLUMNS if keyed() else ZUORA_COLUMNS[:-1]


def header_line() -> str:
    out = io.StringIO()
    csv.writer(out).writerow(columns())
    return out.getvalue()


def usage_csv(rows: Iterable[tuple]) -> bytes:
    """The CSV file Zuora imports, from LINE_FIELDS rows: one writer for the whole file (the same bytes as
    LineWriter's lines, without a buffer reset per line)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns())
    if keyed():
        writer.writerows(map(fields_of, rows))
    else:
        writer.writerows(fields[:-1] for fields in map(fields_of, rows))
    return out.getvalue().encode()


def fresh_statistics() -> None:
    """PostgreSQL plans the page reads from its statistics; right after a million rows arrived they still say
    the table is small, and each page would scan every waiting row (150 ms a page instead of 2). ANALYZE
    samples the table (bounded work, whatever its size) and blocks no writer."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(UsageRecord._meta.db_table)}")


def waiting_rows(entity: ZuoraEntity | None = None):
    """Usage placed on its deal and not in a batch yet (of one Zuora entity's deals, or of none)."""
    rows = UsageRecord.objects.filter(status=UsageRecord.Status.PENDING, batch__isnull=True).exclude(account_number="")
    return rows.filter(entity=entity)


def assign_entities() -> list[ZuoraEntity | None]:
    """A multi-entity tenant's waiting usage is marked with the entity of the deal that placed it, found by its
    subscription number (one UPDATE per entity): a usage file goes to one entity. Never by account number
    alone: each entity numbers its own accounts, so A00000005 may be two customers. A row whose subscription
    number zkbridge billed in several entities, or in none (a deal from before the entities were listed), is
    not sent anywhere: it is marked unplaceable with why. Returns the entities to batch for."""
    entities = list(ZuoraEntity.objects.all())
    if not entities:
        return [None]
    unmarked = UsageRecord.objects.filter(status=UsageRecord.Status.PENDING, batch__isnull=True, entity__isnull=True)
    owners = (
        SyncRecord.objects.billed()
        .values("zuora_subscription_number")
        .annotate(
            entities=Count("entity", distinct=True),
            billed_without=Count("id", filter=Q(entity__isnull=True)),
            owner=Max("entity"),
        )
        .filter(entities=1, billed_without=0)
    )
    for entity in entities:
        numbers = owners.filter(owner=entity.pk).values("zuora_subscription_number")
        unmarked.filter(subscription_number__in=numbers).update(entity=entity)
    unmarked.exclude(account_number="").update(
        status=UsageRecord.Status.UNPLACEABLE,
        error=Concat(
            Value("which Zuora entity bills subscription "),
            F("subscription_number"),
            Value(
                " is not known: zkbridge billed it before Zuora entities were listed, or in several entities; "
                "nothing was sent (submit this usage to Zuora in the right entity yourself)"
            ),
        ),
    )
    return list(entities)


def create_batches() -> list[SyncRecord]:
    """Group placed pending records into usage_batch sync records, each CSV under Zuora's 4 MB, measured as the
    rows are read. A batch is an id range and its row count: its flow takes the rows (one UPDATE, four
    batches at once on four workers) before it uploads them. One submission at a time; rows in the range of
    a batch whose flow has not taken them yet are left to it. A multi-entity tenant's batches are per entity."""
    place_pending()
    fresh_statistics()
    with named_lock("usage-batches", timeout=300):
        batches: list[SyncRecord] = []
        for entity in assign_entities():
            batches += entity_batches(entity)
    return batches


def entity_batches(entity: ZuoraEntity | None) -> list[SyncRecord]:
    open_batches = SyncRecord.objects.filter(
        kind=SyncRecord.Kind.USAGE_BATCH, status__in=SyncRecord.OPEN, entity=entity
    )
    untaken = [int(batch.payload.get("last_id") or 0) for batch in open_batches if not batch.step_done("take")]
    waiting = waiting_rows(entity).filter(id__gt=max(untaken, default=0))
    batches: list[SyncRecord] = []
    header = len(header_line().encode())
    first = last = count = 0
    size = header
    for row_id, line in sized(waiting):
        if count and size + line > MAX_IMPORT_BYTES:
            batches.append(new_batch(first, last, count, entity))
            count, size = 0, header
        first = row_id if not count else first
        last, count, size = row_id, count + 1, size + line
    if count:
        batches.append(new_batch(first, last, count, entity))
    return batches


def new_batch(first: int, last: int, count: int, entity: ZuoraEntity | None = None) -> SyncRecord:
    """A usage_batch record for the `count` measured rows from id `first` to `last` (enqueued on commit)."""
    batch, _ = ensure_record(
        SyncRecord.Kind.USAGE_BATCH,
        f"usage_batch:{uuid.uuid4().hex}",
        payload={"records": count, "first_id": first, "last_id": last},
        summary=f"{count} usage record(s)" + (f" for {entity}" if entity else ""),
        entity=entity,
    )
    return batch


def batch_rows(batch: SyncRecord):
    """A batch's rows, found through its id range (the rows were taken from it): the batch index alone keeps
    entries for every earlier version of a million rewritten rows, and reading 45,000 rows through it took
    0.8 s where the primary key's range takes 0.15 s. Batches made before ranges existed: by the batch."""
    rows = UsageRecord.objects.filter(batch=batch)
    if "first_id" in batch.payload:
        rows = rows.filter(id__gte=batch.payload["first_id"], id__lte=batch.payload["last_id"])
    return rows


def take_rows(batch: SyncRecord) -> None:
    """The batch's first step: the waiting rows of its id range become its rows, `submitted`, in one UPDATE.
    Should the range hold more than was measured (a feed's transaction committed rows into it late), the rows
    past 4 MB are put back, for the next submission: a file never passes 4 MB, a row is never in two batches.
    Fewer (a row deleted, or taken by an older batch) is fine."""
    span = batch.payload
    with transaction.atomic():
        taken = (
            waiting_rows(batch.entity)
            .filter(id__gte=span["first_id"], id__lte=span["last_id"])
            .update(batch=batch, status=UsageRecord.Status.SUBMITTED)
        )
        if taken > span["records"]:
            size, cut = len(header_line().encode()), None
            for row_id, line in sized(batch_rows(batch)):
                size += line
                if size > MAX_IMPORT_BYTES:
                    cut = row_id
                    break
            if cut is not None:
                taken -= batch_rows(batch).filter(id__gte=cut).update(batch=None, status=UsageRecord.Status.PENDING)
        batch.mark_step("take", rows=taken)
