"""What RevOps sees first: today's and this week's syncs, what needs attention, webhook freshness, queue
depth and age, API error rates, and 30 days of synced/failed. Aggregates only: no per-row queries."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import TruncMonth
from django.utils import timezone

from catalog.models import ProductRatePlan, ZuoraEntity
from sync.lifecycle.models import Subscription
from sync.models import ApiCall, SyncRecord, WebhookEvent
from sync.ops import charts
from sync.reconcile.models import ReconciliationRun
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


SUCCEEDED, ATTENTION, FAILED = "#2da44e", "#d4a72c", "#cf222e"


def daily_chart(days: int = 30, records=None) -> list[dict[str, Any]]:
    """Each of the last `days` business days: records that succeeded, need attention, failed (by the day
    they were created, in ZKBRIDGE_TIME_ZONE)."""
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
        {"day": (start + dt.timedelta(days=i)).date(), S.SUCCEEDED: 0, S.NEEDS_ATTENTION: 0, S.FAILED: 0}
        for i in range(days)
    ]
    for row in rows:
        if 0 <= row["day"] < days:
            chart[row["day"]][row["status"]] += row["n"]
    return chart


def daily_svg(chart: list[dict[str, Any]]) -> str:
    return charts.bars(
        [c["day"].strftime("%b %d") for c in chart],
        [
            charts.Series("succeeded", SUCCEEDED, [c[S.SUCCEEDED] for c in chart]),
            charts.Series("need attention", ATTENTION, [c[S.NEEDS_ATTENTION] for c in chart]),
            charts.Series("failed", FAILED, [c[S.FAILED] for c in chart]),
        ],
        title=f"Syncs per day, {chart[0]['day']:%b %d} to {chart[-1]['day']:%b %d}",
        label_every=5,
    )


def reconciliation_trend(runs: int = 14) -> list[dict[str, Any]]:
    """Discrepancies found by the latest successful reconciliation runs, oldest first."""
    found: list[dict[str, Any]] = [
        {"at": run.started_at, "count": int(run.summary.get("discrepancies", 0))}
        for run in ReconciliationRun.objects.filter(ok=True).only("started_at", "summary")[:runs]
    ]
    found.reverse()
    return found


def reconciliation_svg(trend: list[dict[str, Any]]) -> str:
    labels = [timezone.localtime(t["at"]).strftime("%b %d %H:%M") for t in trend]
    return charts.bars(
        labels,
        [charts.Series("discrepancies", FAILED, [t["count"] for t in trend])],
        title="Discrepancies found per reconciliation run",
        width=480,
        label_every=max(len(trend) // 4, 1),
    )


def months_ahead(count: int) -> list[dt.date]:
    first = business_today().replace(day=1)
    return [dt.date(first.year + (first.month - 1 + i) // 12, (first.month - 1 + i) % 12 + 1, 1) for i in range(count)]


def renewals_by_month(months: int = 13) -> dict[str, Any]:
    """This month and the next twelve (a yearly term sold today renews in the last), from the subscription
    mirror: active termed subscriptions whose term ends in the month (renewing on their own when auto-renew
    is on), and the MRR that ends in the month — subscriptions that will not renew (auto-renew off) or are
    cancelled to end then. MRR is per currency: amounts in different currencies are never added."""
    calendar = months_ahead(months)
    first, after = calendar[0], months_ahead(months + 1)[-1]
    renewing = {m: 0 for m in calendar}
    ending: dict[str, dict[dt.date, Decimal]] = {}
    month = TruncMonth("term_end")
    active = Subscription.objects.filter(status="Active", term_end__gte=first, term_end__lt=after)
    for counted in active.filter(auto_renew=True).annotate(month=month).values("month").annotate(n=Count("id")):
        renewing[counted["month"]] += counted["n"]
    lapsing = active.filter(auto_renew=False).annotate(month=month).values("month", "currency")
    cancelled = (
        Subscription.objects.filter(status="Cancelled", ends_on__gte=first, ends_on__lt=after)
        .annotate(month=TruncMonth("ends_on"))
        .values("month", "currency")
    )
    for rows in (lapsing, cancelled):
        for row in rows.annotate(total=Sum("mrr")):
            per_month = ending.setdefault(row["currency"] or "—", {m: Decimal(0) for m in calendar})
            per_month[row["month"]] += row["total"] or Decimal(0)
    return {"months": calendar, "renewing": renewing, "ending": ending}


def renewals_svg(renewals: dict[str, Any]) -> dict[str, Any]:
    labels = [m.strftime("%b %Y") for m in renewals["months"]]
    ending = sorted(renewals["ending"].items(), key=lambda item: -sum(item[1].values()))
    return {
        "renewing": charts.bars(
            labels,
            [charts.Series("renewing", SUCCEEDED, list(renewals["renewing"].values()))],
            title="Subscriptions renewing per month",
            width=480,
            label_every=3,
        ),
        "ending": [
            {
                "currency": currency,
                "svg": charts.bars(
                    labels,
                    [charts.Series(f"MRR ending ({currency})", FAILED, list(amounts.values()))],
                    title=f"MRR ending per month, {currency}",
                    width=480,
                    label_every=3,
                    unit=f" {currency}",
                ),
            }
            for currency, amounts in ending[:3]
        ],
        "more_currencies": [currency for currency, _ in ending[3:]],
    }


LEGACY_HORIZON = dt.timedelta(days=90)


def legacy_subscribers(limit: int = 12) -> list[dict[str, Any]]:
    """Active mirrored subscriptions still on each retired, removed or soon-retiring rate plan (those with a
    subscriber, most first): what the migrations have left to move. One query for the plans, one for all
    the counts."""
    horizon = business_today() + LEGACY_HORIZON
    plans = list(
        ProductRatePlan.objects.select_related("product")
        .filter(Q(effective_end__lte=horizon) | Q(product__effective_end__lte=horizon) | Q(removed_at__isnull=False))
        .order_by("effective_end")[:200]
    )
    if not plans:
        return []
    # Zuora's ids are distinct strings: a plan's quoted id in the mirror's JSON names it (one text match per
    # plan, counted in one aggregate: SQLite has no JSON containment).
    counts = Subscription.objects.filter(status="Active").aggregate(
        **{f"p{i}": Count("id", filter=Q(rate_plans__icontains=f'"{p.zuora_id}"')) for i, p in enumerate(plans)}
    )
    rows = [
        {"plan": plan, "label": f"{plan.product.name} / {plan.name}", "count": counts[f"p{i}"]}
        for i, plan in enumerate(plans)
    ]
    rows = sorted((r for r in rows if r["count"]), key=lambda r: -r["count"])
    return rows[:limit]


def legacy_svg(rows: list[dict[str, Any]]) -> str:
    return charts.hbars(
        [r["label"] for r in rows],
        [r["count"] for r in rows],
        title="Subscribers still on retired or retiring rate plans",
        colour=ATTENTION,
    )


def attention(records, limit: int = 10) -> list[dict[str, Any]]:
    """Records needing attention, oldest first, as RevOps name them: the deal, what it was, why, how long."""
    from sync.admin_common import age, deal_title

    rows = (
        records.filter(status=S.NEEDS_ATTENTION)
        .order_by("created_at")
        .only("id", "key", "kind", "reason", "created_at", "kommo_lead_id", "steps", "zuora_subscription_number")
    )
    return [
        {
            "id": r.id,
            "deal": deal_title(r),
            "lead": r.kommo_lead_id if deal_title(r) != f"lead {r.kommo_lead_id}" else None,
            "kind": r.get_kind_display(),
            "reason": r.reason,
            "age": age(r.created_at),
            "since": r.created_at,
        }
        for r in rows[:limit]
    ]


def dashboard(entity: ZuoraEntity | None = None) -> dict[str, Any]:
    """Everything, or (`entity`) the syncs of one Zuora entity's deals."""
    now = timezone.now()
    records = SyncRecord.objects.all() if entity is None else SyncRecord.objects.filter(entity=entity)
    day = business_today()
    start_of_day = start_of_business_day(day)
    start_of_week = start_of_business_day(day - dt.timedelta(days=day.weekday()))
    hooks = WebhookEvent.objects.values("source").annotate(last=Max("received_at"))
    trend = reconciliation_trend()
    legacy = legacy_subscribers()
    return {
        "entity": entity,
        "entities": list(ZuoraEntity.objects.all()),
        "today": outcome_counts(start_of_day, records),
        "week": outcome_counts(start_of_week, records),
        "attention": attention(records),
        "attention_total": records.filter(status=S.NEEDS_ATTENTION).count(),
        "failed_total": records.filter(status=S.FAILED).count(),
        "last_webhook": {row["source"]: row["last"] for row in hooks},
        "queue": queue_state(),
        "errors": error_rates(now - dt.timedelta(hours=24)),
        "chart": daily_svg(daily_chart(records=records)),
        "reconciliation": trend,
        "reconciliation_chart": reconciliation_svg(trend) if trend else "",
        "renewals": renewals_svg(renewals_by_month()),
        "legacy": legacy,
        "legacy_chart": legacy_svg(legacy) if legacy else "",
    }
