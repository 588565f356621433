"""GET /healthz for load balancers and monitors; /sandbox/ is 404 once the sandbox is off."""

from __future__ import annotations

from unittest import mock

from django.db.utils import OperationalError


def test_healthz_reports_database_and_queue(client, db):
    body = client.get("/healthz").json()
    assert body["database"] == "ok" and body["queue"]["queued"] == 0 and body["last_successful_sync"] is None


def test_healthz_is_503_when_the_database_is_down(client, db):
    with mock.patch("django.db.backends.utils.CursorWrapper.execute", side_effect=OperationalError("gone")):
        answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.json()["database"] == "error"


def test_sandbox_pages_render(client, db):
    from sandbox import demo

    demo.seed()
    assert b"Move to Won" in client.get("/sandbox/kommo/").content
    assert client.get("/sandbox/zuora/").status_code == 200


def test_healthz_says_what_a_monitor_alerts_on(client, db):
    """Each figure as the records say: the last success, the deals needing a person, the oldest record
    waiting (a retry not yet due is not waiting), the last web hook and callout."""
    import datetime as dt

    from django.utils import timezone

    from sync.models import SyncRecord, WebhookEvent

    now = timezone.now()
    done = now - dt.timedelta(minutes=3)
    SyncRecord.objects.create(kind="deal_won", key="deal_won:1", status="succeeded", finished_at=done)
    SyncRecord.objects.create(kind="deal_won", key="deal_won:2", status="succeeded", finished_at=done - dt.timedelta(1))
    for n in (3, 4):
        SyncRecord.objects.create(kind="deal_won", key=f"deal_won:{n}", status="needs_attention")
    waiting = SyncRecord.objects.create(kind="deal_won", key="deal_won:5", status="pending")
    SyncRecord.objects.filter(pk=waiting.pk).update(created_at=now - dt.timedelta(seconds=90))
    later = SyncRecord.objects.create(
        kind="deal_won", key="deal_won:6", status="retrying", next_attempt_at=now + dt.timedelta(hours=1)
    )
    SyncRecord.objects.filter(pk=later.pk).update(created_at=now - dt.timedelta(hours=5))
    hook = WebhookEvent.objects.create(source="kommo", dedup_key="a", body="x", received_at=now - dt.timedelta(1))
    callout = WebhookEvent.objects.create(source="zuora", dedup_key="b", body="y", received_at=now)

    body = client.get("/healthz").json()

    assert body["last_successful_sync"] == done.isoformat()
    assert body["needs_attention"] == 2
    assert 90 <= body["queue"]["oldest_waiting_seconds"] < 120  # not the retry due in an hour (5 hours old)
    assert body["last_kommo_webhook"] == hook.received_at.isoformat()
    assert body["last_zuora_callout"] == callout.received_at.isoformat()
    assert "instance" not in body
