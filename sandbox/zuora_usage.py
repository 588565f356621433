"""The Zuora emulator's usage import: POST /v1/usage (CSV ≤ 4 MB), status polled until it completes."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import logging
import threading
from decimal import Decimal, InvalidOperation

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse

from sandbox.common import get_setting
from sandbox.models import (
    ZAccount,
    ZSubscription,
    ZUsage,
    ZUsageImport,
)
from sandbox.zuora import failure, idempotent, zuora_view

log = logging.getLogger("zkbridge.sandbox")

# --- Usage -----------------------------------------------------------------------------------------
# The headings Zuora's usage file must have (the values of ENDDATE, SUBSCRIPTION_ID and CHARGE_ID are optional,
# "but the column header is required"); DESCRIPTION may be left out; UNIQUE_KEY is supported by the Advanced
# Consumption Billing features only (the emulator's tenant has them when `zuora_usage_unique_key` is on).
USAGE_COLUMNS = ["ACCOUNT_ID", "UOM", "QTY", "STARTDATE", "ENDDATE", "SUBSCRIPTION_ID", "CHARGE_ID"]
OPTIONAL_COLUMNS = ["DESCRIPTION", "UNIQUE_KEY"]


@zuora_view
@idempotent
def usage_import(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return failure(90000045, "Method not allowed", status=405)
    upload = request.FILES.get("file")
    if upload is None:
        return failure(90000023, "The multipart field 'file' is required", status=400)
    if upload.size > 4 * 1024 * 1024:
        return failure(90000070, "The usage file exceeds 4 MB")
    if len(upload.name) > 50:
        return failure(90000020, "The file name must be at most 50 characters")
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        return failure(90000020, "The usage file must be UTF-8 CSV")
    # Like Zuora, the upload is checked for its shape only; its rows are read when the file is imported.
    header = next(csv.reader(io.StringIO(text[: text.find("\n") + 1 or len(text)])), [])
    missing = [c for c in USAGE_COLUMNS if c not in header]
    if missing:
        return failure(90000022, f"Missing header(s): {', '.join(missing)}")
    unknown = [c for c in header if c not in USAGE_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        return failure(90000021, f"Unknown header(s): {', '.join(unknown)}")
    if "UNIQUE_KEY" in header and not get_setting("zuora_usage_unique_key"):
        return failure(
            90000021,
            "UNIQUE_KEY is supported with Advanced Consumption Billing (Prepaid with Drawdown, Unbilled Usage), "
            "which this tenant does not have",
        )
    record = ZUsageImport.objects.create(file_name=upload.name, size=upload.size, content=text)
    if get_setting("zuora_usage_import") == "background":
        thread = threading.Thread(target=_import_in_background, args=(record.id,), daemon=True)
        transaction.on_commit(thread.start)
    return JsonResponse({"success": True, "size": upload.size, "checkImportStatus": f"/v1/usage/{record.id}/status"})


@functools.lru_cache(maxsize=4096)
def _date(text: str) -> dt.date:
    """MM/DD/YYYY; a file's rows share a few dates, so each is parsed once."""
    return dt.datetime.strptime(text, "%m/%d/%Y").date()


def _process_usage(record: ZUsageImport) -> None:
    errors = []
    parsed = []
    # What the file refers to, read once per file (not three queries a row: files hold ~40,000 rows).
    rows = list(csv.DictReader(io.StringIO(record.content)))
    accounts = set(
        ZAccount.objects.filter(account_number__in={r.get("ACCOUNT_ID") for r in rows}).values_list(
            "account_number", flat=True
        )
    )
    subscriptions = set(
        ZSubscription.objects.filter(subscription_number__in={r.get("SUBSCRIPTION_ID") for r in rows}).values_list(
            "subscription_number", flat=True
        )
    )
    imported = _imported_keys([r.get("UNIQUE_KEY") for r in rows if r.get("UNIQUE_KEY")])
    for line, row in enumerate(rows, start=2):
        try:
            start = _date(row["STARTDATE"])
            end = _date(row["ENDDATE"]) if row.get("ENDDATE") else None
            qty = Decimal(row["QTY"])
        except (ValueError, InvalidOperation, KeyError):
            errors.append(f"line {line}: bad QTY or date (dates are MM/DD/YYYY)")
            continue
        if row["ACCOUNT_ID"] not in accounts:
            errors.append(f"line {line}: account {row['ACCOUNT_ID']} not found")
        if row.get("SUBSCRIPTION_ID") and row["SUBSCRIPTION_ID"] not in subscriptions:
            errors.append(f"line {line}: subscription {row['SUBSCRIPTION_ID']} not found")
        if row.get("UNIQUE_KEY") and row["UNIQUE_KEY"] in imported:
            errors.append(f"line {line}: UNIQUE_KEY {row['UNIQUE_KEY']} was already imported")
        parsed.append(
            ZUsage(
                unique_key=row.get("UNIQUE_KEY", ""),
                account_number=row["ACCOUNT_ID"],
                subscription_number=row.get("SUBSCRIPTION_ID", ""),
                uom=row["UOM"],
                quantity=qty,
                start_date=start,
                end_date=end,
                usage_import=record,
            )
        )
    if errors:  # one bad row rejects the whole file
        record.status, record.error = "Failed", "; ".join(errors)[:5000]
    else:
        _store(parsed)
        record.status = "Completed"


# The emulator stands in for Zuora's own servers but runs on the machine it is measured on: on PostgreSQL a
# file's 45,000 rows are looked up with one array query and stored with COPY (bulk_create took ~5 s a file).
def _imported_keys(keys: list[str]) -> set[str]:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT unique_key FROM sandbox_zusage WHERE unique_key = ANY(%s)", [keys])
            return {row[0] for row in cursor.fetchall()}
    found: set[str] = set()
    for start in range(0, len(keys), 900):
        found.update(
            ZUsage.objects.filter(unique_key__in=keys[start : start + 900]).values_list("unique_key", flat=True)
        )
    return found


COPIED = ["unique_key", "account_number", "subscription_number", "uom", "quantity", "start_date", "end_date"]


def _store(rows: list[ZUsage]) -> None:
    if connection.vendor != "postgresql":
        ZUsage.objects.bulk_create(rows, batch_size=2000)
        return
    table = ZUsage._meta.db_table
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({', '.join(COPIED)}, usage_import_id) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([*(getattr(row, name) for name in COPIED), row.usage_import_id])


def _import_in_background(import_id: int) -> None:
    """Zuora's own time: the file is imported after the upload was answered, whoever polls meanwhile."""
    try:
        with transaction.atomic():
            record = ZUsageImport.objects.select_for_update().filter(id=import_id, status="Pending").first()
            if record is not None:
                _process_usage(record)
                record.save()
    except Exception:  # a thread must not die silently
        log.exception("sandbox zuora: usage import %s failed", import_id)
    finally:
        connection.close()


@zuora_view
def usage_status(request: HttpRequest, import_id: str) -> HttpResponse:
    if get_setting("zuora_usage_import") == "background":  # answered at once, never waiting for the import
        found = ZUsageImport.objects.filter(id=import_id).first() if import_id.isdigit() else None
        if found is None:
            return failure(50000040, f"Usage import {import_id} not found", status=404)
        status = found.status if found.status in ("Completed", "Failed") else "Processing"
        return JsonResponse(
            {"success": True, "importStatus": status, "message": found.error or None, "id": str(found.id)}
        )
    record = ZUsageImport.objects.select_for_update().filter(id=import_id).first() if import_id.isdigit() else None
    if record is None:
        return failure(50000040, f"Usage import {import_id} not found", status=404)
    if record.status in ("Pending", "Processing"):
        record.polls += 1
        if record.polls > get_setting("zuora_usage_polls_before_done"):
            _process_usage(record)
        else:
            record.status = "Processing"
        record.save()
    return JsonResponse(
        {"success": True, "importStatus": record.status, "message": record.error or None, "id": str(record.id)}
    )
