"""A reconciliation run: read the snapshot, run every check, keep the report.

Everything is read first; the report is written in one transaction at the end, so a run that loses
Kommo or Zuora half-way leaves the previous report in force and says what failed.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from sync.clients.errors import ApiError
from sync.models import ApiCall
from sync.reconcile.checks import compare
from sync.reconcile.models import Discrepancy, ReconciliationRun
from sync.reconcile.snapshot import read_snapshot
from zkbridge import spreadsheet

log = logging.getLogger("zkbridge.reconcile")


def run_reconciliation(requested_by: str = "") -> ReconciliationRun:
    run = ReconciliationRun.objects.create(progress="starting", requested_by=requested_by[:150])
    started_calls = ApiCall.objects.order_by("-id").values_list("id", flat=True).first() or 0

    def progress(text: str) -> None:
        run.progress = text[:200]
        run.save(update_fields=["progress"])

    try:
        snap = read_snapshot(progress)
        rows = compare(snap)
    except ApiError as exc:
        run.error = f"{exc.provider or 'API'} failed half-way: {exc}; the previous report stays in force"
        run.finished_at = timezone.now()
        run.progress = "failed"
        run.save()
        log.error("reconciliation %s failed: %s", run.id, exc)
        return run
    calls = ApiCall.objects.filter(id__gt=started_calls)
    summary: dict[str, Any] = {
        "won_deals": len(snap.won),
        "zuora_subscriptions": len(snap.subscriptions),
        "zuora_accounts": len(snap.accounts),
        "discrepancies": len(rows),
        "zuora_calls": calls.filter(provider="zuora").exclude(path="/oauth/token").count(),
        "kommo_calls": calls.filter(provider="kommo").count(),
    }
    for item in rows:
        summary[item.kind] = summary.get(item.kind, 0) + 1
    with transaction.atomic():
        for item in rows:
            item.run = run
        Discrepancy.objects.bulk_create(rows, batch_size=1000)
        run.summary = summary
        run.ok = True
        run.progress = "done"
        run.finished_at = timezone.now()
        run.save()
    return run


def latest_report() -> ReconciliationRun | None:
    return ReconciliationRun.objects.filter(ok=True).first()


def report_csv(run: ReconciliationRun) -> str:
    out = io.StringIO()
    writer = spreadsheet.writer(out)  # subscription numbers and details come from outside: never a live formula
    writer.writerow(
        ["kind", "action", "kommo_lead_id", "zuora_account_number", "zuora_subscription_number", "detail", "fixed_at"]
    )
    for item in run.discrepancies.order_by("kind", "kommo_lead_id").iterator(chunk_size=2000):
        writer.writerow(
            [
                item.kind,
                item.action,
                item.kommo_lead_id or "",
                item.zuora_account_number,
                item.zuora_subscription_number,
                item.detail,
                item.fixed_at.isoformat() if item.fixed_at else "",
            ]
        )
    return out.getvalue()


def scheduled(requested_by: str = "") -> str:
    """The daily schedule's entry point (and the admin's "Run reconciliation now", which names who asked)."""
    run = run_reconciliation(requested_by)
    return "ok" if run.ok else run.error
