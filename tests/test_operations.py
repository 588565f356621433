"""The operator's and RevOps' surfaces: dashboard, connection checks, /metrics, /healthz, logs, retention."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
from django.core.management import call_command
from django.utils import timezone

from sandbox.models import KWebhook
from sync.models import ApiCall, SyncRecord, WebhookEvent
from sync.ops.logs import JsonFormatter


@pytest.fixture
def history(db):
    now = timezone.now()
    SyncRecord.objects.bulk_create(
        [
            SyncRecord(
                kind="deal_won", key=f"deal_won:{n}", status="succeeded", created_at=now - dt.timedelta(days=n % 5)
            )
            for n in range(20)
        ]
        + [
            SyncRecord(
                kind="deal_won",
                key="deal_won:old",
                kommo_lead_id=7,
                status="needs_attention",
                reason="no plan mapping for X",
                created_at=now - dt.timedelta(days=3),
            ),
            SyncRecord(kind="deal_won", key="deal_won:f", status="failed", created_at=now),
        ]
    )
    ApiCall.objects.bulk_create(
        [ApiCall(provider="zuora", method="GET", path="/x", status=200 if n % 4 else 500) for n in range(8)]
    )
    WebhookEvent.objects.create(source="kommo", dedup_key="a", body="x")


def test_the_dashboard_shows_outcomes_attention_freshness_and_the_chart(admin_client, history):
    page = admin_client.get("/admin/").content.decode()
    assert 'id="zk-dashboard"' in page
    attention = page[page.index('id="zk-attention"') : page.index('id="zk-syncs"')]
    assert "lead 7" in attention and "no plan mapping for X" in attention and ">3 d<" in attention
    assert "deal_won:old" not in attention  # deals by name or lead, never by record key
    assert "Last Kommo web hook" in page and "ago" in page
    assert "2 / 8" in page and "25.0 %" in page  # Zuora error rate
    syncs = page[page.index('id="zk-syncs"') : page.index('id="zk-reconciliation"')]
    assert syncs.count('class="zk-bar"') == 30


def test_the_dashboard_is_only_for_revops(client, history):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_user("sam", password="x", is_staff=True))
    assert 'id="zk-dashboard"' not in client.get("/admin/").content.decode()


def test_the_dashboard_query_count_does_not_grow_with_records(admin_client, history, django_assert_max_num_queries):
    SyncRecord.objects.bulk_create(
        [SyncRecord(kind="deal_won", key=f"more:{n}", status="succeeded") for n in range(500)]
    )
    with django_assert_max_num_queries(25):
        admin_client.get("/admin/")


def check_now(admin_client) -> str:
    """Press "Check now" (the workers run the check; inline in the tests' sync mode) and read the page."""
    return admin_client.post("/admin/connections/", follow=True).content.decode()


def test_connection_checks_report_live_status_and_a_disabled_web_hook(admin_client, emulators):
    page = admin_client.get("/admin/connections/").content.decode()
    from sync.installation import kommo_webhook_url

    assert "No connection check has run yet" in page and kommo_webhook_url(masked=True) in page
    assert emulators.webhook_url not in page  # the token is never shown, superusers included
    page = check_now(admin_client)
    assert page.count("✔ connected") == 2 and "Registered and enabled" in page and "asked by admin" in page
    KWebhook.objects.update(disabled=True)
    assert "Kommo has disabled this web hook" in check_now(admin_client)
    emulators.fault("zuora", "unauthorized", "/oauth/token")
    assert "✘" in check_now(admin_client)


def test_a_requested_check_waits_for_the_workers_and_the_page_refreshes(admin_client, emulators, monkeypatch):
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)  # as in production: queued, run by a worker later
    page = check_now(admin_client)
    assert "running" in page and 'http-equiv="refresh"' in page and "✔ connected" not in page
    from sync.models import ConnectionCheck
    from sync.ops.connections import run_check

    run_check(ConnectionCheck.objects.get().id)
    page = admin_client.get("/admin/connections/").content.decode()
    assert page.count("✔ connected") == 2 and 'http-equiv="refresh"' not in page


def test_metrics_are_prometheus_text_for_the_machine_itself(client, history):
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'zkbridge_sync_records{kind="deal_won",status="succeeded"} 20' in text
    assert 'zkbridge_api_calls_last_hour{provider="zuora",status="500"} 2' in text
    assert "zkbridge_queue_oldest_age_seconds" in text and 'zkbridge_webhooks_received_total{source="kommo"} 1' in text


def test_metrics_need_the_token_from_elsewhere(client, history, settings):
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    settings.ZKBRIDGE_METRICS_TOKEN = "metrics-secret"
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-secret").status_code == 200


def test_healthz_reports_queue_age_and_freshness(client, history):
    body = client.get("/healthz").json()
    assert body["queue"]["oldest_waiting_seconds"] == 0 and body["last_kommo_webhook"]
    SyncRecord.objects.create(
        kind="deal_won", key="waiting", status="pending", created_at=timezone.now() - dt.timedelta(minutes=5)
    )
    assert client.get("/healthz").json()["queue"]["oldest_waiting_seconds"] >= 299


def test_retention_blanks_old_bodies_and_keeps_sync_records(db, capsys):
    old = timezone.now() - dt.timedelta(days=100)
    ApiCall.objects.create(
        provider="zuora", method="POST", path="/v1/orders", request_body="{}", response_body="{}", at=old
    )
    ApiCall.objects.create(provider="zuora", method="POST", path="/v1/orders", request_body="{}", response_body="{}")
    WebhookEvent.objects.create(source="kommo", dedup_key="old", body="leads=1", received_at=old)
    SyncRecord.objects.create(kind="deal_won", key="deal_won:1", created_at=old)
    call_command("prune")
    assert "1 API call(s), 1 webhook(s) and 0 usage body(ies) pruned; 0 old successful task result(s) deleted" in (
        capsys.readouterr().out
    )
    assert list(ApiCall.objects.order_by("at").values_list("request_body", flat=True)) == ["", "{}"]
    assert WebhookEvent.objects.get().body == "" and SyncRecord.objects.count() == 1


def test_prune_keeps_the_newest_successful_task_results_and_every_failure(db, capsys):
    from django_q.models import Task

    from sync.ops import retention

    start = timezone.now() - dt.timedelta(hours=5)
    for n in range(5):
        at = start + dt.timedelta(minutes=n)
        for success in (True, False):
            Task.objects.create(
                id=f"{n}{success}",
                name=f"t{n}{success}",
                func="sync.tasks.run_sync",
                started=at,
                stopped=at,
                success=success,
            )
    assert retention.trim_task_results(keep=2) == 3
    kept = Task.objects.filter(success=True).order_by("stopped").values_list("name", flat=True)
    assert list(kept) == ["t3True", "t4True"] and Task.objects.filter(success=False).count() == 5
    assert retention.trim_task_results(keep=2) == 0  # nothing more to trim
    Task.objects.all().delete()
    assert retention.trim_task_results(keep=2) == 0  # an empty table


def test_every_log_line_of_a_flow_names_its_sync_record(catalog, caplog):
    caplog.set_level(logging.INFO, logger="zkbridge")
    catalog.win(24312346)
    record = SyncRecord.objects.get(key="deal_won:24312346")
    flow_lines = [r for r in caplog.records if r.name == "zkbridge.sync"]
    assert flow_lines and all(getattr(r, "sync_record", None) == record.id for r in flow_lines)
    line = json.loads(JsonFormatter().format(flow_lines[0]))
    assert line["sync_record"] == record.id and line["level"] == "INFO"


def test_the_chart_counts_each_day_in_the_business_time_zone(history):
    from sync.ops.dashboard import daily_chart

    chart = daily_chart()
    outcomes = [(c["succeeded"], c["needs_attention"], c["failed"]) for c in chart[-5:]]
    assert outcomes == [(4, 0, 0), (4, 1, 0), (4, 0, 0), (4, 0, 0), (4, 0, 1)]
    assert sum(c["succeeded"] for c in chart) == 20 and chart[-1]["day"] == timezone.localdate()


def bar_total(svg: str, index: int) -> str:
    """The number the index-th bar of a chart carries (its data-total attribute)."""
    bars = svg.split('class="zk-bar"')[1:]
    return bars[index].split('data-total="')[1].split('"')[0]


def test_the_dashboard_charts_the_reconciliation_trend(admin_client, history):
    from sync.reconcile.models import ReconciliationRun

    assert "No reconciliation has run yet" in admin_client.get("/admin/").content.decode()
    for found in (12, 7, 3):
        ReconciliationRun.objects.create(ok=True, summary={"discrepancies": found})
    ReconciliationRun.objects.create(ok=False, error="Kommo failed half-way")
    page = admin_client.get("/admin/").content.decode()
    trend = page[page.index('id="zk-reconciliation"') : page.index('id="zk-legacy"')]
    assert trend.count('class="zk-bar"') == 3 and "latest: 3 on" in trend
    # Each bar says its number, on a y axis of round numbers up to the highest (12 → 0, 5, 10, 15).
    assert [bar_total(trend, i) for i in range(3)] == ["12", "7", "3"]
    assert all(f">{tick}</text>" in trend for tick in ("0", "5", "10", "15"))


def test_the_chart_axis_is_round_numbers_above_the_highest_bar():
    from sync.ops.charts import nice_scale, number

    assert nice_scale(0) == (1.0, 1.0) and nice_scale(1) == (1.0, 1.0) and nice_scale(3) == (3.0, 1.0)
    assert nice_scale(12) == (15.0, 5.0) and nice_scale(97) == (100.0, 25.0) and nice_scale(1234) == (1500.0, 500.0)
    assert number(1234) == "1,234" and number(12500, compact=True) == "12.5k" and number(2_000_000, True) == "2M"


def test_the_dashboard_charts_renewals_and_the_mrr_ending_per_month(admin_client, db):
    """From the subscription mirror: renewals counted in the month their term ends; MRR ending summed per
    currency (auto-renew off, or cancelled to end that month), never across currencies."""
    from decimal import Decimal

    from sync.lifecycle.models import Subscription
    from zkbridge.business_time import business_today

    first = business_today().replace(day=1)
    next_month = (first + dt.timedelta(days=32)).replace(day=1)
    rows = [
        ("S1", "Active", True, first + dt.timedelta(days=20), None, "100", "USD"),
        ("S2", "Active", True, next_month + dt.timedelta(days=3), None, "200", "USD"),
        ("S3", "Active", True, next_month + dt.timedelta(days=9), None, "300", "USD"),
        ("S4", "Active", False, next_month + dt.timedelta(days=9), None, "450.50", "USD"),
        ("S5", "Cancelled", True, None, next_month, "1000", "USD"),
        ("S6", "Active", False, first + dt.timedelta(days=20), None, "80", "EUR"),
        ("S7", "Active", True, first - dt.timedelta(days=40), None, "999", "USD"),  # term ended: not ahead
    ]
    Subscription.objects.bulk_create(
        Subscription(number=n, status=st, auto_renew=ar, term_end=te, ends_on=eo, mrr=Decimal(m), currency=c)
        for n, st, ar, te, eo, m, c in rows
    )
    page = admin_client.get("/admin/").content.decode()
    renewals = page[page.index('id="zk-renewals"') : page.index('id="zk-mrr-ending"')]
    assert [bar_total(renewals, i) for i in range(3)] == ["1", "2", "0"]
    ending = page[page.index('id="zk-mrr-ending"') : page.index('id="zk-my-actions"')]
    usd, eur = ending.split("<svg")[1:3]
    assert "MRR ending (USD)" in usd and [bar_total(usd, i) for i in range(2)] == ["0", "1,450.50"]
    assert "MRR ending (EUR)" in eur and [bar_total(eur, i) for i in range(2)] == ["80", "0"]


def test_the_dashboard_charts_subscribers_left_on_retired_plans(admin_client, db):
    from catalog.models import Product, ProductRatePlan
    from sync.lifecycle.models import Subscription

    product = Product.objects.create(
        zuora_id="p", name="Platform", effective_start=dt.date(2020, 1, 1), effective_end=dt.date(2099, 1, 1)
    )
    old = ProductRatePlan.objects.create(
        zuora_id="rp-old",
        product=product,
        name="Growth (2024)",
        effective_start=dt.date(2024, 1, 1),
        effective_end=dt.date(2026, 6, 30),
    )
    ProductRatePlan.objects.create(
        zuora_id="rp-new",
        product=product,
        name="Growth",
        effective_start=dt.date(2026, 7, 1),
        effective_end=dt.date(2099, 1, 1),
    )
    empty = page_of(admin_client, "zk-legacy", "zk-renewals")
    assert "No active subscription is on a retired or retiring plan" in empty
    plans = [{"id": "x", "productRatePlanId": "rp-old", "name": "Growth (2024)"}]
    Subscription.objects.bulk_create(
        [Subscription(number=f"S{n}", status="Active", rate_plans=plans) for n in range(3)]
        + [Subscription(number="C1", status="Cancelled", rate_plans=plans)]
        + [Subscription(number="N1", status="Active", rate_plans=[{"productRatePlanId": "rp-new"}])]
    )
    legacy = page_of(admin_client, "zk-legacy", "zk-renewals")
    assert legacy.count('class="zk-bar"') == 1 and 'data-label="Platform / Growth (2024)"' in legacy
    assert bar_total(legacy, 0) == "3"
    assert old.pk  # (the retired plan the bar names)


def page_of(client, start: str, end: str) -> str:
    page = client.get("/admin/").content.decode()
    return page[page.index(f'id="{start}"') : page.index(f'id="{end}"')]


def test_revops_apps_come_first_and_the_operators_apart(admin_client, db):
    page = admin_client.get("/admin/").content.decode()
    revops = page[page.index('id="zk-revops-apps"') : page.index('id="zk-ops-apps"')]
    ops = page[page.index('id="zk-ops-apps"') :]
    assert revops.index("Sync records") < revops.index("Plan mappings")
    for name in ("Sync records", "Subscriptions", "Discrepancies", "Plan mappings", "Migration rules"):
        assert name in revops and name not in ops, name
    for name in ("Api calls", "Webhook events", "API tokens", "Access attempts", "Scheduled tasks", "Users"):
        assert name in ops and name not in revops, name
