"""What a stranger or a broken client sends never becomes a server error: each case found probing the three
public endpoints from outside is answered 400 (or rejected row by row) and stores nothing."""

from __future__ import annotations

import base64
import json

import pytest
from django.contrib.auth.models import User
from django.db import connection

from sync.installation import kommo_webhook_token
from sync.models import ApiToken, SyncRecord, WebhookEvent
from sync.usage.models import UsageRecord

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def hook(db, settings, monkeypatch):
    settings.KOMMO_WEBHOOK_TOKEN = "a-long-secret-token-for-tests"
    monkeypatch.setattr("sync.records.enqueue_record", lambda record_id: None)
    return f"/webhooks/kommo/{kommo_webhook_token()}/"


@pytest.fixture
def token(db) -> str:
    return ApiToken.issue(User.objects.create(username="feed"))[1]


def won(lead_id: str) -> str:
    return f"leads[status][0][id]={lead_id}&leads[status][0][status_id]=142&leads[status][0][pipeline_id]=1"


@pytest.mark.parametrize(
    "lead_id, words",
    [
        ("%C2%B2", "must be a whole number"),  # "²" passes str.isdigit()
        ("--5", "must be a whole number"),
        ("%E2%91%A0", "must be a whole number"),  # "①"
        ("9" * 4301, "must be a whole number"),  # past Python's int() digit limit
        ("9" * 19, "out of range"),  # past a 64-bit column
        ("9" * 20, "must be a whole number"),
        ("-3", "positive number"),
    ],
)
def test_kommo_lead_ids_that_are_not_numbers_the_database_holds_are_a_400(client, hook, lead_id, words):
    answer = client.generic("POST", hook, won(lead_id), content_type=FORM)
    assert answer.status_code == 400 and words in answer.json()["error"]
    assert not WebhookEvent.objects.get().valid and not SyncRecord.objects.exists()


def test_a_kommo_body_with_a_nul_is_a_400(client, hook):
    answer = client.generic("POST", hook, won("1") + "&leads[status][0][name]=a%00b", content_type=FORM)
    assert answer.status_code == 400 and "NUL" in answer.json()["error"]
    stored = WebhookEvent.objects.get()  # kept, readable, with the NUL written out
    assert not stored.valid and "a%00b" in stored.body


def test_percent_encoded_bytes_that_are_not_utf8_are_read_as_replacement_characters(client, hook):
    answer = client.generic("POST", hook, won("1") + "&leads[status][0][name]=%ED%A0%80", content_type=FORM)
    assert answer.status_code == 200 and WebhookEvent.objects.count() == 1


def callout(client, body: bytes | str, **headers):
    return client.generic("POST", "/webhooks/zuora/", body, content_type="application/json", **headers)


@pytest.mark.parametrize(
    "body, words",
    [
        ("[" * 999 + "]" * 999, "nested too deeply"),
        ('{"eventType": "PaymentProcessed", "accountNumber": "A\\u0000"}', "NUL"),
        ('{"eventType": "Payment\\ud800Processed"}', "unpaired surrogate"),
    ],
)
def test_callout_bodies_that_would_crash_a_reader_are_a_400(client, db, body, words):
    answer = callout(client, body)
    assert answer.status_code == 400 and words in answer.json()["error"]
    assert not WebhookEvent.objects.get().valid


def test_basic_credentials_in_bytes_that_are_not_ascii_are_refused_not_a_crash(client, db, settings):
    settings.ZUORA_CALLOUT_USERNAME, settings.ZUORA_CALLOUT_PASSWORD = "zuora", "secret"
    answer = callout(client, '{"eventType": "PaymentProcessed"}', HTTP_AUTHORIZATION="Basic \xe9\xe9\xe9")
    assert answer.status_code == 401 and answer["WWW-Authenticate"].startswith("Basic")
    garbled = "Basic " + base64.b64encode(b"\xff\xfe:\xfd").decode()
    assert callout(client, '{"eventType": "PaymentProcessed"}', HTTP_AUTHORIZATION=garbled).status_code == 401


def usage(client, token: str, body: str, content_type: str = "application/json"):
    return client.generic("POST", "/api/usage/", body, content_type=content_type, HTTP_AUTHORIZATION=f"Token {token}")


@pytest.mark.parametrize(
    "body, content_type, words",
    [
        ("[" * 999 + "]" * 999, "application/json", "nested too deeply"),
        ("a\rb,c\n1,2\n", "text/csv", "not valid CSV"),
        ("unique_key," + "x" * 140_000 + "\n1,2\n", "text/csv", "not valid CSV"),
    ],
)
def test_usage_bodies_that_would_crash_a_reader_are_a_400(client, token, body, content_type, words, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_048_576
    answer = usage(client, token, body, content_type)
    assert answer.status_code == 400 and words in answer.json()["error"]
    assert not UsageRecord.objects.exists()


def row(**changes) -> dict:
    return {
        "kommo_lead_id": "24312345",
        "uom": "API call",
        "quantity": "5",
        "start_date": "2026-11-01",
        "unique_key": "k1",
        **changes,
    }


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"kommo_lead_id": "²"}, "kommo_lead_id must be a whole number"),
        ({"kommo_lead_id": "9" * 21}, "kommo_lead_id must be a whole number"),
        ({"quantity": "1e-999999"}, "more than 6 decimal places"),
        ({"quantity": "999999999999.999999"}, "more than 15 significant digits"),
        ({"quantity": "1e12"}, "less than 1,000,000,000,000"),
    ],
)
def test_usage_rows_the_database_could_not_hold_are_rejected_one_by_one(client, token, changes, words):
    body = json.dumps([row(**changes), row(unique_key="good")])
    answer = usage(client, token, body)
    assert answer.status_code == 202, answer.content
    result = answer.json()
    assert result["accepted"] == 1 and len(result["rejected"]) == 1
    assert any(words in error for error in result["rejected"][0]["errors"])
    assert list(UsageRecord.objects.values_list("unique_key", flat=True)) == ["good"]


@pytest.mark.parametrize(
    "changes, words", [({"uom": "API\x00call"}, "NUL"), ({"unique_key": "k\ud800"}, "unpaired surrogate")]
)
def test_a_usage_row_with_nul_or_a_lone_surrogate_is_rejected_alone(client, token, changes, words):
    """The body is read as it arrives, so a bad row fails alone (named, with its reason) and the rest count."""
    answer = usage(client, token, json.dumps([row(**changes), row(unique_key="good")]))
    assert answer.status_code == 202
    [rejected] = answer.json()["rejected"]
    assert rejected["index"] == 0 and any(words in error for error in rejected["errors"])
    assert list(UsageRecord.objects.values_list("unique_key", flat=True)) == ["good"]


def test_a_csv_header_with_nul_is_a_400_kept_in_the_inbox(client, token):
    """Found by the fuzzer on PostgreSQL (which refuses NUL in text): the refusal quotes the header."""
    answer = usage(client, token, "\x00", "text/csv")
    assert answer.status_code == 400 and "unknown: \x00" in answer.json()["error"]
    stored = WebhookEvent.objects.get(source="usage")
    assert not stored.valid and stored.error.endswith("unknown: \\0") and stored.body == "\\0"
    from sync.usage.models import UsageDelivery

    kept = UsageDelivery.objects.get()  # the whole body kept as sent; its problem written without the NUL
    assert kept.body() == b"\x00" and kept.problem.endswith("unknown: \\0")


def test_a_csv_row_with_nul_is_rejected_alone(client, token):
    answer = usage(
        client,
        token,
        "unique_key,uom,quantity,start_date,kommo_lead_id\nk\x00,API,1,2026-11-01,1\ngood,API,1,2026-11-01,1\n",
        "text/csv",
    )
    assert answer.status_code == 202 and answer.json()["accepted"] == 1
    assert "NUL" in answer.json()["rejected"][0]["errors"][0]


@pytest.fixture
def production_logging():
    """zkbridge's production logging configuration (the test settings keep pytest's own), into a buffer."""
    import copy
    import io
    import logging
    import logging.config

    from zkbridge import settings as production

    config = copy.deepcopy(production.LOGGING)
    stream = io.StringIO()
    config["handlers"]["console"]["stream"] = stream
    logging.config.dictConfig(config)
    yield stream
    for name in config["loggers"]:
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = [], True


def test_every_server_error_is_logged_with_its_traceback_and_the_request_id(db, monkeypatch, production_logging):
    from django.test import Client

    from sync.ops import health

    def broken(*args, **kwargs):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(health.SyncRecord.objects, "filter", broken)
    answer = Client(raise_request_exception=False).get("/healthz", HTTP_X_REQUEST_ID="req-123")
    assert answer.status_code == 500 and answer["X-Request-Id"] == "req-123"
    logged = production_logging.getvalue()
    assert "ERROR django.request" in logged and "request=req-123" in logged
    assert "Traceback" in logged and "RuntimeError: the disk is full" in logged


def test_a_request_id_is_made_when_the_proxy_sends_none_or_garbage(client, db):
    made = client.get("/healthz", HTTP_X_REQUEST_ID="x" * 500 + "\n")["X-Request-Id"]
    assert len(made) == 32 and made.isalnum()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL never stores such a quantity")
def test_one_unreadable_usage_row_fails_alone_and_the_admin_lists_it(catalog, admin_client):
    """A quantity accepted before zkbridge bounded them, stored by SQLite as a float it cannot read back."""
    from django.db import connection as db

    from sync.usage.batches import UNREADABLE, create_batches

    catalog.win(24312346)
    deal = SyncRecord.objects.get(key="deal_won:24312346")
    for key in ("before", "bad", "after"):
        UsageRecord.objects.create(
            unique_key=key,
            subscription_number=deal.zuora_subscription_number,
            uom="API call",
            quantity=1,
            start_date="2026-11-01",
        )
    with db.cursor() as cursor:
        cursor.execute("UPDATE sync_usagerecord SET quantity = 1e20 WHERE unique_key = 'bad'")
    page = admin_client.get("/admin/sync/usagerecord/")
    assert page.status_code == 200 and "bad" in page.content.decode()
    batches = create_batches()
    assert len(batches) == 1 and sorted(r.unique_key for r in batches[0].usage.all()) == ["after", "before"]
    bad = UsageRecord.objects.filter(unique_key="bad").values("status", "error").get()
    assert bad == {"status": "failed", "error": UNREADABLE}
