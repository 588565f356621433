"""A batch of usage records becomes one Zuora usage import, polled until Zuora says how it went.

Steps: upload (POST /v1/usage with an Idempotency-Key), then status (polled; still processing means
"retry later", which resumes at the poll, never re-uploads).
"""

from __future__ import annotations

import time

from django.utils import timezone

from sync.clients.errors import BusinessError, TransientError
from sync.clients.zuora import ZuoraClient
from sync.flows import NeedsAttention, flow
from sync.models import SyncRecord, UsageRecord
from sync.usage.batches import LINE_FIELDS, usage_csv

POLLS = 5
POLL_SECONDS = 1.0


@flow(SyncRecord.Kind.USAGE_BATCH)
def usage_batch(record: SyncRecord) -> None:
    zuora = ZuoraClient.from_settings()
    rows = record.usage.order_by("id").values_list(*LINE_FIELDS)
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
            record.usage.update(status=UsageRecord.Status.FAILED, error=str(exc))
            raise NeedsAttention(f"Zuora refused the usage file: {exc.message}") from None
        record.mark_step("upload", status_path=status_path, rows=count)  # (its rows are `submitted` since batched)
    status_path = record.step_data("upload")["status_path"]
    for poll in range(POLLS):
        answer = zuora.usage_import_status(status_path)
        status = answer.get("importStatus")
        if status == "Completed":
            record.usage.update(status=UsageRecord.Status.IMPORTED, error="")
            record.mark_step("status", import_status=status, at_poll=poll)
            return
        if status in ("Failed", "Canceled"):
            message = answer.get("message") or status
            record.usage.update(status=UsageRecord.Status.FAILED, error=message[:2000])
            record.mark_step("status", import_status=status)
            raise NeedsAttention(f"Zuora's usage import {status.lower()}: {message}")
        time.sleep(POLL_SECONDS)
    raise TransientError(
        f"Zuora is still processing the usage import ({timezone.now():%H:%M}); polling again later", retry_after=60
    )
