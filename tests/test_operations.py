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
    assert "deal_won:old" in page and "no plan mapping for X" in page
    assert "Last Kommo web hook" in page and "ago" in page
    assert "2 / 8" in page and "25.0 %" in page  # Zuora error rate
    assert page.count('class="zk-bar"') == 30


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
    assert "1 API call(s) and 1 webhook(s) pruned; 0 old successful task result(s) deleted" in capsys.readouterr().out
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
    assert [(c["synced"], c["failed"]) for c in chart[-5:]] == [(4, 0), (4, 1), (4, 0), (4, 0), (4, 1)]
    assert sum(c["synced"] for c in chart) == 20 and chart[-1]["day"] == timezone.localdate()


def test_the_dashboard_charts_the_reconciliation_trend(admin_client, history):
    from sync.models import ReconciliationRun

    assert "No reconciliation has run yet" in admin_client.get("/admin/").content.decode()
    for found in (12, 7, 3):
        ReconciliationRun.objects.create(ok=True, summary={"discrepancies": found})
    ReconciliationRun.objects.create(ok=False, error="Kommo failed half-way")
    page = admin_client.get("/admin/").content.decode()
    trend = page[page.index('id="zk-reconciliation"') :]
    assert trend.count('class="zk-bar"') == 3 and "latest: 3 on" in trend
