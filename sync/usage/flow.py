"""A batch of usage records becomes one Zuora usage import, polled until Zuora says how it went.

Steps: take (the waiting rows of the batch's id range become its rows, one UPDATE), upload (POST /v1/usage
with an Idempotency-Key), then status (looked at right after the upload; while Zuora still imports, the record
waits and looks again later without holding a worker — resuming at the look, never re-uploading).
"""

from __future__ import annotations

import datetime as dt

from sync.clients.errors import BusinessError
from sync.clients.zuora import ZuoraClient
from sync.models import SyncRecord
from sync.outcomes import NeedsAttention, Waiting
from sync.registry import flow
from sync.usage.batches import LINE_FIELDS, batch_rows, take_rows, usage_csv
from sync.usage.models import UsageRecord

FIRST_LOOK_SECONDS = 1
MAX_LOOK_SECONDS = 300


@flow(SyncRecord.Kind.USAGE_BATCH)
def usage_batch(record: SyncRecord) -> None:
    zuora = ZuoraClient.for_entity(record.entity)  # a usage file goes to its rows' entity
    if "first_id" in record.payload and not record.step_done("take"):
        take_rows(record)
    rows = batch_rows(record).order_by("id").values_list(*LINE_FIELDS)
    count = rows.count()
    if not count:
        return  # its records were moved or deleted by staff: nothing to send
    if not record.step_done("upload"):
        name = f"zkbridge-usage-{record.id}.csv"
        try:
            status_path = zuora.import_usage(
                usage_csv(rows.iterator(chunk_size=5_000)), name, idempotency_key=record.idempotency_key("upload")
            )
        except BusinessError as exc:
            batch_rows(record).update(status=UsageRecord.Status.FAILED, error=str(exc))
            raise NeedsAttention(f"Zuora refused the usage file: {exc.message}") from None
        record.mark_step("upload", status_path=status_path, rows=count)  # (its rows are `submitted` since batched)
    status_path = record.step_data("upload")["status_path"]
    answer = zuora.usage_import_status(status_path)
    status = answer.get("importStatus")
    if status == "Completed":
        batch_rows(record).update(status=UsageRecord.Status.IMPORTED, error="")
        record.mark_step("status", import_status=status, looks=record.step_data("status").get("looks", 0) + 1)
        return
    if status in ("Failed", "Canceled"):
        message = answer.get("message") or status
        batch_rows(record).update(status=UsageRecord.Status.FAILED, error=message[:2000])
        record.mark_step("status", import_status=status)
        raise NeedsAttention(f"Zuora's usage import {status.lower()}: {message}")
    # Zuora imports the file in its own time: the worker is not kept waiting (it uploads the next batch
    # meanwhile); the record looks again later, 1 s after the upload, then 2, 4 … up to 5 minutes apart.
    looks = record.step_data("status").get("looks", 0) + 1
    record.mark_step("status", done=False, import_status=status or "", looks=looks)
    delay = dt.timedelta(seconds=min(FIRST_LOOK_SECONDS * 2 ** (looks - 1), MAX_LOOK_SECONDS))
    raise Waiting(f"Zuora is importing the file ({status or 'no status yet'}); looking again in {delay}", delay)
