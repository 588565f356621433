"""What RevOps sees first: today's and this week's syncs, what needs attention, webhook freshness, queue
depth and age, API error rates, and 30 days of synced/failed. Aggregates only: no per-row queries."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection
from django.db.models import Count, Max, Min, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from catalog.models import ZuoraEntity
from sync.models import ApiCall, ReconciliationRun, SyncRecord, WebhookEvent
from zkbridge.business_time import business_today, start_of_business_day

S = SyncRecord.Status


def queue_state() -> dict[str, Any]:
    """Broker depth (tasks waiting for a worker) and the age of the oldest record waiting to run."""
    from django_q.brokers import get_broker

    try:
        depth = get_broker().queue_size()
    except Exception:  # a broker that is down must not take the dashboard or /healthz with it
        depth = None
    now = timezone.now()
    oldest = SyncRecord.objects.filter(Q(status=S.PENDING) | Q(status=S.RETRYING, next_attempt_at__lte=now)).aggregate(
        oldest=Min("created_at")
    )
    age = (now - oldest["oldest"]).total_seconds() if oldest["oldest"] else 0.0
    return {"depth": depth, "oldest_age_seconds": round(age, 1)}


def outcome_counts(since: dt.datetime, records=None) -> dict[str, int]:
    records = SyncRecord.objects.all() if records is None else records
    rows = records.filter(created_at__gte=since).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def error_rates(since: dt.datetime) -> list[dict[str, Any]]:
    rows = (
        ApiCall.objects.filter(at__gte=since)
        .values("provider")
        .annotate(total=Count("id"), errors=Count("id", filter=Q(status__isnull=True) | Q(status__gte=400)))
    )
    return [{**row, "rate": round(100 * row["errors"] / row["total"], 1) if row["total"] else 0.0} for row in rows]


def daily_chart(days: int = 30, records=None) -> list[dict[str, Any]]:
    records = SyncRecord.objects.all() if records is None else records
    start = start_of_business_day(business_today() - dt.timedelta(days=days - 1))
    # Days counted from `start` with the database's own arithmetic (a per-row date conversion through
    # Django's SQLite functions is slow on 100,000 rows); grouped by day and outcome in one query.
    if connection.vendor == "sqlite":
        bucket = RawSQL(
            "CAST(julianday(created_at) - julianday(%s) AS INTEGER)",
            (start.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),),
        )
    else:
        bucket = RawSQL("FLOOR(EXTRACT(EPOCH FROM (created_at - %s)) / 86400)::integer", (start,))
    rows = (
        records.filter(created_at__gte=start, status__in=[S.SUCCEEDED, S.FAILED, S.NEEDS_ATTENTION])
        .annotate(day=bucket)
        .values("day", "status")
        .annotate(n=Count("id"))
    )
    chart: list[dict[str, Any]] = [
        {"day": (start + dt.timedelta(days=i)).date(), "synced": 0, "failed": 0} for i in range(days)
    ]
    for row in rows:
        if 0 <= row["day"] < days:
            chart[row["day"]]["synced" if row["status"] == S.SUCCEEDED else "failed"] += row["n"]
    peak = max([c["synced"] + c["failed"] for c in chart] + [1])
    for c in chart:  # bar heights in percent, for a server-rendered chart
        c["synced_pct"] = round(100 * c["synced"] / peak, 1)
        c["failed_pct"] = round(100 * c["failed"] / peak, 1)
    return chart


def reconciliation_trend(runs: int = 14) -> list[dict[str, Any]]:
    """Discrepancies found by the latest successful reconciliation runs, oldest first."""
    found: list[dict[str, Any]] = [
        {"at": run.started_at, "count": int(run.summary.get("discrepancies", 0))}
        for run in ReconciliationRun.objects.filter(ok=True).only("started_at", "summary")[:runs]
    ]
    found.reverse()
    peak = max([f["count"] for f in found] + [1])
    for item in found:
        item["pct"] = round(100 * item["count"] / peak, 1)
    return found


def dashboard(entity: ZuoraEntity | None = None) -> dict[str, Any]:
    """Everything, or (`entity`) the syncs of one Zuora entity's deals."""
    now = timezone.now()
    records = SyncRecord.objects.all() if entity is None else SyncRecord.objects.filter(entity=entity)
    day = business_today()
    start_of_day = start_of_business_day(day)
    start_of_week = start_of_business_day(day - dt.timedelta(days=day.weekday()))
    hooks = WebhookEvent.objects.values("source").annotate(last=Max("received_at"))
    return {
        "entity": entity,
        "entities": list(ZuoraEntity.objects.all()),
        "today": outcome_counts(start_of_day, records),
        "week": outcome_counts(start_of_week, records),
        "attention": list(
            records.filter(status=S.NEEDS_ATTENTION)
            .order_by("created_at")
            .only("id", "key", "kind", "reason", "created_at", "kommo_lead_id")[:10]
        ),
        "attention_total": records.filter(status=S.NEEDS_ATTENTION).count(),
        "failed_total": records.filter(status=S.FAILED).count(),
        "last_webhook": {row["source"]: row["last"] for row in hooks},
        "queue": queue_state(),
        "errors": error_rates(now - dt.timedelta(hours=24)),
        "chart": daily_chart(records=records),
        "reconciliation": reconciliation_trend(),
    }
