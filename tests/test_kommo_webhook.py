"""POST /webhooks/kommo/<token>/: stored raw, de-duplicated, 200 fast; garbage gets a short 4xx."""

from __future__ import annotations

import threading
from urllib.parse import quote

import pytest
import requests
from django.db import connection
from django_q.models import OrmQ

from sync.installation import kommo_webhook_token
from sync.models import SyncRecord, WebhookEvent
from tests.conftest import fixture_text, requires_postgres

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def url(db, settings):
    settings.KOMMO_WEBHOOK_TOKEN = "a-long-secret-token-for-tests"
    return f"/webhooks/kommo/{kommo_webhook_token()}/"


@pytest.fixture
def quiet_queue(settings, monkeypatch):
    """Record what would be enqueued instead of running flows (these tests are about the endpoint)."""
    queued = []
    monkeypatch.setattr("sync.records.enqueue_record", queued.append)
    return queued


def post(client, url, body: str, content_type: str = FORM):
    return client.generic("POST", url, body.encode() if isinstance(body, str) else body, content_type=content_type)


def won_body(lead_id: int = 24312345, status_id: int = 142) -> str:
    return (
        f"leads%5Bstatus%5D%5B0%5D%5Bid%5D={lead_id}&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D={status_id}"
        f"&leads%5Bstatus%5D%5B0%5D%5Bpipeline_id%5D=4520110&account%5Bsubdomain%5D=acme"
    )


def test_the_real_kommo_body_makes_one_record_queued_for_the_workers_in_its_transaction(
    client, url, monkeypatch, django_capture_on_commit_callbacks
):
    from django_q.conf import Conf
    from django_q.models import OrmQ

    monkeypatch.setattr(Conf, "SYNC", False)  # the real broker (the database), as in production
    with django_capture_on_commit_callbacks(execute=False) as on_commit:
        answer = post(client, url, fixture_text("kommo-webhook-lead-won.form").strip())
    assert on_commit == []  # the task row was written with the record: one commit, no hand-over after it
    assert answer.status_code == 200 and answer.json()["won"] == 1
    record = SyncRecord.objects.get()
    assert record.key == "deal_won:24312345" and record.kommo_lead_id == 24312345 and record.status == "pending"
    assert record.payload["custom_fields"][1]["values"] == ["1763769600"]  # the date field's quirk survives
    [queued] = OrmQ.objects.all()
    assert queued.func() == "sync.tasks.run_sync" and queued.task["args"] == (record.id,)
    event = WebhookEvent.objects.get()
    assert event.body.startswith("leads%5Bstatus%5D") and event.processed_at is not None


def test_a_record_and_its_task_are_committed_together_or_not_at_all(client, url, monkeypatch):
    from django_q.conf import Conf
    from django_q.models import OrmQ

    monkeypatch.setattr(Conf, "SYNC", False)

    def crash(*args, **kwargs):
        raise RuntimeError("the process dies after the task row was written")

    monkeypatch.setattr("sync.webhooks.views.lifecycle_records", crash)
    client.raise_request_exception = False
    assert post(client, url, won_body()).status_code == 500
    assert not SyncRecord.objects.exists() and not OrmQ.objects.exists()
    # the delivery itself was stored first: kept, unprocessed, with what stopped it
    [kept] = WebhookEvent.objects.all()
    assert kept.processed_at is None and kept.valid and "RuntimeError: the process dies" in kept.error
    monkeypatch.undo()
    monkeypatch.setattr(Conf, "SYNC", False)
    assert post(client, url, won_body()).json()["new_records"] == 1  # Kommo's retry of the delivery
    [task] = OrmQ.objects.all()
    assert task.task["args"] == (SyncRecord.objects.get().id,)
    kept.refresh_from_db()
    assert kept.processed_at is not None and kept.error == "" and kept.duplicates == 1
    assert SyncRecord.objects.get().source_event_id == kept.pk
    assert post(client, url, won_body()).json()["duplicate"] is True  # processed: a third delivery is a duplicate


def test_a_body_naming_a_lead_that_has_its_record_and_a_new_one(
    client, url, quiet_queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        post(client, url, won_body(7))
    both = won_body(7) + "&leads%5Bstatus%5D%5B1%5D%5Bid%5D=8&leads%5Bstatus%5D%5B1%5D%5Bstatus_id%5D=142"
    with django_capture_on_commit_callbacks(execute=True):
        answer = post(client, url, both).json()
    assert answer["won"] == 2 and answer["new_records"] == 1  # the conflict was redone carefully, nothing lost
    assert sorted(SyncRecord.objects.values_list("kommo_lead_id", flat=True)) == [7, 8]
    assert len(quiet_queue) == 2 and WebhookEvent.objects.count() == 2


def test_a_duplicate_body_is_acknowledged_and_changes_nothing(client, url, quiet_queue):
    for _ in range(3):
        assert post(client, url, won_body()).status_code == 200
    assert SyncRecord.objects.count() == 1 and WebhookEvent.objects.get().duplicates == 2


def test_a_second_body_for_the_same_lead_maps_onto_the_same_record(client, url, quiet_queue):
    post(client, url, won_body())
    post(client, url, won_body() + "&account%5Bid%5D=1")
    assert WebhookEvent.objects.count() == 2 and SyncRecord.objects.count() == 1


def test_a_lead_that_is_not_won_is_stored_and_ignored(client, url, quiet_queue):
    answer = post(client, url, won_body(status_id=39402112))
    assert answer.status_code == 200 and answer.json()["won"] == 0
    assert WebhookEvent.objects.count() == 1 and not SyncRecord.objects.exists()


def test_several_leads_and_actions_in_one_body(client, url, quiet_queue):
    body = (
        won_body(1) + "&leads%5Bstatus%5D%5B1%5D%5Bid%5D=2&leads%5Bstatus%5D%5B1%5D%5Bstatus_id%5D=142"
        "&leads%5Bupdate%5D%5B0%5D%5Bid%5D=3&leads%5Bupdate%5D%5B0%5D%5Bstatus_id%5D=39402112"
        "&contacts%5Bupdate%5D%5B0%5D%5Bid%5D=9"
    )
    assert post(client, url, body).json()["won"] == 2
    assert sorted(SyncRecord.objects.values_list("kommo_lead_id", flat=True)) == [1, 2]


def test_edits_of_leads_in_won_make_records_only_for_leads_without_one(
    client, url, quiet_queue, django_capture_on_commit_callbacks
):
    # Kommo reports zkbridge's own field writes as edits of leads in Won, 50 to a delivery after a burst:
    # leads that have their record are found in one query; a lead edited into Won gets its record.
    def edit(n: int, lead_id: int) -> str:
        return f"&leads%5Bupdate%5D%5B{n}%5D%5Bid%5D={lead_id}&leads%5Bupdate%5D%5B{n}%5D%5Bstatus_id%5D=142"

    both = won_body(1) + "&leads%5Bstatus%5D%5B1%5D%5Bid%5D=2&leads%5Bstatus%5D%5B1%5D%5Bstatus_id%5D=142"
    with django_capture_on_commit_callbacks(execute=True):
        post(client, url, both)
        answer = post(client, url, "account%5Bid%5D=1" + edit(0, 1) + edit(1, 2) + edit(2, 3)).json()
    assert answer["won"] == 3 and answer["new_records"] == 1 and answer["changes"] == 0
    assert sorted(SyncRecord.objects.values_list("kommo_lead_id", flat=True)) == [1, 2, 3]
    assert len(quiet_queue) == 3 and WebhookEvent.objects.count() == 2


def test_a_wrong_token_is_404_and_nothing_is_stored(client, url, quiet_queue):
    answer = post(client, "/webhooks/kommo/wrong-token-wrong-token/", won_body())
    assert answer.status_code == 404 and not WebhookEvent.objects.exists()


@pytest.mark.parametrize(
    "body, words",
    [
        ("", "empty"),
        ("hello world", "no Kommo entity"),
        ('{"leads": {"status": [{"id": 1}]}}', "JSON"),
        ("leads%5Bstatus%5D%5B0%5D%5Bid%5D=abc&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=142", "must be a whole number"),
        ("leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=142", "has no id"),
        ("leads%5Bstatus%5D%5B0%5D%5Bid%5D=-5", "positive"),
        ("leads%5Bstatus%5D=flat", "not a list"),
        ("leads%5Bstatus%5D%5B5000%5D%5Bid%5D=1", "cannot be decoded"),
        ("a=1&" * 6000, "cannot be decoded"),
        (quote("é").encode("latin-1").decode() + "%FF=%FF", "no Kommo entity"),
    ],
)
def test_garbage_gets_a_short_400_and_is_kept_in_the_inbox_as_refused(client, url, quiet_queue, body, words):
    answer = post(client, url, body)
    assert answer.status_code == 400 and words in answer.json()["error"]
    assert not quiet_queue and not SyncRecord.objects.exists()
    if body:  # stored first, judged after: visible in the admin's inbox with the reason
        stored = WebhookEvent.objects.get()
        assert not stored.valid and words in stored.error and stored.body.startswith(body[:20])


def test_binary_junk_is_a_400_and_kept_readable(client, url, quiet_queue):
    answer = client.generic("POST", url, b"\xff\xfe\x00garbage", content_type=FORM)
    assert answer.status_code == 400
    stored = WebhookEvent.objects.get()
    assert not stored.valid and stored.body == "\ufffd\ufffd\\0garbage"


def test_an_unknown_action_is_ignored_and_the_rest_of_the_body_read(client, url, quiet_queue):
    body = "leads%5Bexplode%5D%5B0%5D%5Bid%5D=5&" + won_body()
    answer = post(client, url, body)
    assert answer.status_code == 200 and answer.json()["won"] == 1 and WebhookEvent.objects.get().valid


def test_a_body_naming_too_many_won_leads_is_kept_and_refused(client, url, quiet_queue, settings):
    settings.ZKBRIDGE_MAX_LEADS_PER_WEBHOOK = 3
    body = "&".join(
        f"leads%5Bstatus%5D%5B{n}%5D%5Bid%5D={100 + n}&leads%5Bstatus%5D%5B{n}%5D%5Bstatus_id%5D=142" for n in range(4)
    )
    answer = post(client, url, body)
    assert answer.status_code == 400 and "4 won leads in one web hook; at most 3" in answer.json()["error"]
    assert not SyncRecord.objects.exists() and not WebhookEvent.objects.get().valid


def test_an_address_that_keeps_guessing_the_token_is_answered_429(client, url, quiet_queue, settings):
    from django.core.cache import cache

    cache.clear()
    settings.ZKBRIDGE_AUTH_FAILURES_PER_MINUTE = 3
    for _ in range(3):
        assert post(client, "/webhooks/kommo/a-wrong-guess-of-the-token/", won_body()).status_code == 404
    assert post(client, "/webhooks/kommo/a-wrong-guess-of-the-token/", won_body()).status_code == 429
    # Kommo itself is not slowed by someone else's guessing, from its own address or from the same one (a proxy).
    assert client.generic("POST", url, won_body(), content_type=FORM, REMOTE_ADDR="192.0.2.10").status_code == 200
    assert post(client, url, won_body(lead_id=24312346)).status_code == 200
    cache.clear()


def test_an_oversized_body_is_413(client, url, quiet_queue, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    answer = post(client, url, won_body() + "&x=" + "a" * 20_000)
    assert answer.status_code == 413 and not WebhookEvent.objects.exists()


def test_get_is_not_allowed(client, url):
    assert client.get(url).status_code == 405


@requires_postgres
def test_five_concurrent_copies_make_one_record(live_server, transactional_db, settings, monkeypatch):
    settings.KOMMO_WEBHOOK_TOKEN = "a-long-secret-token-for-tests"
    monkeypatch.setattr("sync.records.enqueue_record", lambda record_id: None)
    target = f"{live_server.url}/webhooks/kommo/a-long-secret-token-for-tests/"
    barrier = threading.Barrier(5)
    statuses = []

    def send(n: int):
        barrier.wait()
        # Each copy differs a little (Kommo re-sends with new timestamps): the record key still unites them.
        statuses.append(
            requests.post(target, data=won_body() + f"&n={n}", headers={"Content-Type": FORM}, timeout=10).status_code
        )
        connection.close()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 5
    assert SyncRecord.objects.count() == 1 and WebhookEvent.objects.count() == 5
    assert not OrmQ.objects.exists()


def test_a_broker_outage_still_acknowledges_and_keeps_the_record(
    client, url, monkeypatch, django_capture_on_commit_callbacks
):
    def broken(*args, **kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr("django_q.tasks.async_task", broken)
    with django_capture_on_commit_callbacks(execute=True):
        answer = post(client, url, won_body())
    assert answer.status_code == 200
    assert SyncRecord.objects.get().status == "pending"  # dispatch_due enqueues it once the broker is back


def test_a_flood_of_won_leads_from_one_source_is_handed_over_at_its_budget_in_order(
    client, url, quiet_queue, settings, django_capture_on_commit_callbacks
):
    import datetime as dt

    from django.core.cache import cache
    from django.utils import timezone

    from sync.workers.dispatcher import dispatch_once

    cache.clear()
    settings.ZKBRIDGE_MAX_RECORDS_PER_MINUTE = 3
    body = "&".join(
        f"leads%5Bstatus%5D%5B{n}%5D%5Bid%5D={100 + n}&leads%5Bstatus%5D%5B{n}%5D%5Bstatus_id%5D=142" for n in range(5)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, url, body).json()["new_records"] == 5
    first = sorted(SyncRecord.objects.filter(kommo_lead_id__in=[100, 101, 102]).values_list("id", flat=True))
    assert sorted(quiet_queue) == first  # three now; two wait for the next minute, nothing is lost
    held = list(SyncRecord.objects.filter(next_attempt_at__isnull=False).order_by("id"))
    assert [r.kommo_lead_id for r in held] == [103, 104] and all(r.status == "pending" for r in held)
    assert dispatch_once(timezone.now()) == 0
    assert dispatch_once(timezone.now() + dt.timedelta(minutes=1)) == 2
    assert quiet_queue[-2:] == [r.id for r in held]  # handed over in the order they arrived
    cache.clear()


def test_a_cache_outage_never_fails_a_web_hook(
    client, url, quiet_queue, monkeypatch, django_capture_on_commit_callbacks
):
    from django.core.cache import cache

    def down(*args, **kwargs):
        raise ConnectionError("Redis is away")

    for method in ("get", "add", "incr", "set"):
        monkeypatch.setattr(cache, method, down)
    with django_capture_on_commit_callbacks(execute=True):
        answer = post(client, url, won_body())
    assert answer.status_code == 200 and answer.json()["new_records"] == 1 and len(quiet_queue) == 1
    assert post(client, "/webhooks/kommo/a-wrong-guess-of-the-token/", won_body()).status_code == 404
