"""Sending usage to Zuora: placing pending records on their subscriptions and grouping them into
usage_batch sync records, each one CSV import under Zuora's 4 MB (the flow in sync/usage/flow.py sends it)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator

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


UNREADABLE = (
    "the stored quantity cannot be read back exactly (a value accepted before zkbridge bounded quantities); "
    "send it again with at most 15 significant digits"
)


def readable(queryset) -> Iterator[UsageRecord]:
    """The records of `queryset`, in id order; one that cannot be read (a quantity SQLite stored as a
    float too large to read back) fails alone with its reason, and never stops the others."""
    ids = list(queryset.order_by("id").values_list("id", flat=True))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        try:
            yield from list(UsageRecord.objects.filter(id__in=chunk).order_by("id"))
            continue
        except (ArithmeticError, ValueError, TypeError):
            pass
        for record_id in chunk:
            try:
                record = UsageRecord.objects.get(id=record_id)
            except (ArithmeticError, ValueError, TypeError):
                UsageRecord.objects.filter(id=record_id).update(status=UsageRecord.Status.FAILED, error=UNREADABLE)
                continue
            yield record


def place_pending() -> int:
    """Fill account and subscription numbers from the deals zkbridge synced; unknown ones are flagged."""
    deals = SyncRecord.objects.filter(kind=SyncRecord.Kind.DEAL_WON).exclude(zuora_subscription_number="")
    by_subscription = dict(deals.values_list("zuora_subscription_number", "zuora_account_number"))
    by_lead = {
        lead: (sub, acc)
        for lead, sub, acc in deals.values_list("kommo_lead_id", "zuora_subscription_number", "zuora_account_number")
    }
    placed = 0
    for record in readable(UsageRecord.objects.filter(status=UsageRecord.Status.PENDING, account_number="")):
        if record.subscription_number and record.subscription_number in by_subscription:
            record.account_number = by_subscription[record.subscription_number]
        elif record.kommo_lead_id in by_lead:
            record.subscription_number, record.account_number = by_lead[record.kommo_lead_id]
        else:
            record.status = UsageRecord.Status.UNPLACEABLE
            record.error = "no Zuora subscription synced by zkbridge for this subscription number / Kommo lead"
        record.save(update_fields=["account_number", "subscription_number", "status", "error"])
        placed += record.status == UsageRecord.Status.PENDING
    return placed


def usage_csv(records: list[UsageRecord]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(ZUORA_COLUMNS)
    for r in records:
        writer.writerow(
            [
                r.account_number,
                r.uom,
                f"{r.quantity.normalize():f}",
                r.start_date.strftime("%m/%d/%Y"),
                r.end_date.strftime("%m/%d/%Y") if r.end_date else "",
                r.subscription_number,
                "",
                r.description,
                r.unique_key,
            ]
        )
    return out.getvalue().encode()


def create_batches() -> list[SyncRecord]:
    """Group placed pending records into usage_batch sync records (each CSV under Zuora's 4 MB)."""
    place_pending()
    batches = []
    pending = list(
        readable(
            UsageRecord.objects.filter(status=UsageRecord.Status.PENDING, batch__isnull=True).exclude(account_number="")
        )
    )
    chunk: list[UsageRecord] = []
    size = 0
    for record in pending + [None]:  # type: ignore[list-item]
        line = len(usage_csv([record])) if record else 0
        if chunk and (record is None or size + line > MAX_IMPORT_BYTES):
            with transaction.atomic():  # the batch is enqueued on commit, with its records attached
                batch, _ = ensure_record(
                    SyncRecord.Kind.USAGE_BATCH,
                    f"usage_batch:{uuid.uuid4().hex}",
                    payload={"records": len(chunk)},
                    summary=f"{len(chunk)} usage record(s)",
                )
                UsageRecord.objects.filter(id__in=[r.id for r in chunk]).update(batch=batch)
            batches.append(batch)
            chunk, size = [], 0
        if record:
            chunk.append(record)
            size += line
    return batches
