"""Zuora billing events reach the salesperson as notes and tasks on the right Kommo deal.

Over real HTTP: callouts are posted to zkbridge on a live server as Zuora sends them; the notes and
tasks land in the Kommo emulator.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json

import pytest
import requests
from django.core.management import call_command

from sandbox.models import KNote, KTask
from sync.billing.models import BillingEventRule
from sync.models import SyncRecord, WebhookEvent

ACME_EXPANSION, SOLO = 24312346, 24312349
AUTH = ("zuora", "callout-password")


@pytest.fixture
def synced(catalog, settings):
    """Two deals already billed by zkbridge; callouts need Basic credentials."""
    settings.ZUORA_CALLOUT_USERNAME, settings.ZUORA_CALLOUT_PASSWORD = AUTH
    catalog.win(ACME_EXPANSION)
    catalog.win(SOLO)
    deal = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    assert deal.status == "succeeded"
    KNote.objects.all().delete()
    catalog.deal = deal
    return catalog


def callout(env, body, *, auth=AUTH, notification_id: str | None = None, headers: dict | None = None):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if notification_id:
        sent["Zuora-Notification-Id"] = notification_id
    return requests.post(f"{env.url}/webhooks/zuora/", data=data, auth=auth, headers=sent, timeout=30)


def event(env, event_type: str, **extra) -> dict:
    return {
        "eventType": event_type,
        "accountNumber": env.deal.zuora_account_number,
        "crmId": "company:5550001",
        "subscriptionNumber": env.deal.zuora_subscription_number,
        "amount": "1200.00",
        "currency": "USD",
        **extra,
    }


def test_payment_processed_is_a_note_with_the_money_formatted(synced):
    assert callout(synced, event(synced, "PaymentProcessed"), notification_id="n1").status_code == 200
    assert synced.notes(ACME_EXPANSION) == [
        f"Zuora: payment of $1,200.00 received on account {synced.deal.zuora_account_number}."
    ]
    assert synced.tasks(ACME_EXPANSION) == []


def test_a_failed_payment_is_a_note_and_a_task_due_today_for_the_deal_owner(synced):
    callout(synced, event(synced, "PaymentProcessingError", amount="99.5", currency="EUR"), notification_id="n2")
    account = synced.deal.zuora_account_number
    assert synced.notes(ACME_EXPANSION)[0].startswith(f"Zuora: payment of €99.50 failed on account {account} on ")
    [task] = synced.tasks(ACME_EXPANSION)
    assert task.text == f"Zuora: payment of €99.50 failed on account {account}. Contact the client about it."
    assert task.responsible_user_id == 7720001
    due = dt.datetime.fromtimestamp(task.complete_till, dt.UTC)
    assert due.date() == dt.datetime.now(dt.UTC).date() and due.hour == 23


@pytest.mark.parametrize(
    "event_type, note",
    [
        ("SubscriptionCanceled", "is cancelled, effective"),
        ("SubscriptionCancelled", "is cancelled, effective"),  # alias
        ("SubscriptionRenewed", "renewed"),
    ],
)
def test_subscription_events_are_notes(synced, event_type, note):
    callout(synced, event(synced, event_type, amount="<Payment.Amount>"))
    [text] = synced.notes(ACME_EXPANSION)
    assert note in text and synced.deal.zuora_subscription_number in text


def test_a_renewal_reminder_is_a_task(synced):
    callout(synced, event(synced, "ContractRenewalReminder"))
    assert synced.notes(ACME_EXPANSION) == []
    number = synced.deal.zuora_subscription_number
    assert synced.tasks(ACME_EXPANSION)[0].text == (
        f"Zuora: subscription {number} ends in 30 days. Discuss the renewal with the client."
    )


def test_the_nested_body_and_the_payment_declined_alias_are_read(synced):
    body = {
        "eventType": "PaymentDeclined",
        "Account": {"AccountNumber": synced.deal.zuora_account_number, "crmId": "company:5550001"},
        "Payment": {"amount": "10"},
        "Subscription": {"SubscriptionNumber": ""},
    }
    assert callout(synced, body).json()["event"] == "PaymentProcessingError"
    assert "payment of $10.00 failed" in synced.notes(ACME_EXPANSION)[0]


def test_template_edits_take_effect(synced):
    BillingEventRule.objects.filter(event_type="PaymentProcessed").update(
        note_template="Zuora: paid {amount} ({event}), subscription {subscription}."
    )
    callout(synced, event(synced, "PaymentProcessed"))
    assert synced.notes(ACME_EXPANSION) == [
        f"Zuora: paid $1,200.00 (PaymentProcessed), subscription {synced.deal.zuora_subscription_number}."
    ]


def test_zuoras_retries_of_one_notification_make_one_note(synced):
    body = event(synced, "PaymentProcessed")
    for retry in range(3):  # same Zuora-Notification-Id, a new Zuora-Request-Id each time
        answer = callout(synced, body, notification_id="stable-id", headers={"Zuora-Request-Id": f"r{retry}"})
        assert answer.status_code == 200
    assert len(synced.notes(ACME_EXPANSION)) == 1 and WebhookEvent.objects.filter(source="zuora").count() == 1


def test_without_a_notification_id_the_body_de_duplicates(synced):
    for _ in range(2):
        callout(synced, event(synced, "PaymentProcessed"))
    assert len(synced.notes(ACME_EXPANSION)) == 1


def test_basic_auth_as_zuora_performs_it_challenge_first(synced):
    first = callout(synced, event(synced, "PaymentProcessed"), auth=None)
    assert first.status_code == 401 and first.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert not WebhookEvent.objects.filter(source="zuora").exists()
    second = callout(synced, event(synced, "PaymentProcessed"))  # then with the credentials
    assert second.status_code == 200 and len(synced.notes(ACME_EXPANSION)) == 1


@pytest.mark.parametrize("auth", [("zuora", "wrong"), ("other", "callout-password"), ("", "")])
def test_wrong_credentials_are_refused_and_nothing_is_stored(synced, auth):
    answer = callout(synced, event(synced, "PaymentProcessed"), auth=auth)
    assert answer.status_code == 401 and "WWW-Authenticate" in answer.headers
    assert not WebhookEvent.objects.filter(source="zuora").exists() and not KNote.objects.exists()


def test_garbled_basic_header_is_refused(synced):
    answer = callout(
        synced, event(synced, "PaymentProcessed"), auth=None, headers={"Authorization": "Basic !!!not-base64"}
    )
    assert answer.status_code == 401


def test_callouts_are_refused_until_credentials_are_set_outside_the_sandbox(synced, settings):
    settings.ZUORA_CALLOUT_USERNAME = settings.ZUORA_CALLOUT_PASSWORD = None
    settings.ZKBRIDGE_SANDBOX = False
    answer = callout(synced, event(synced, "PaymentProcessed"), auth=None)
    assert answer.status_code == 401 and "ZUORA_CALLOUT_USERNAME" in answer.json()["error"]


@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_hmac_signature_accepted(synced, settings, encoding):
    settings.ZUORA_CALLOUT_HMAC_KEY = "hmac-key"
    body = json.dumps(event(synced, "PaymentProcessed")).encode()
    digest = hmac.new(b"hmac-key", body, hashlib.sha256).digest()
    signature = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    assert callout(synced, body, headers={"X-Zuora-Signature": signature}).status_code == 200


@pytest.mark.parametrize("signature", [None, "deadbeef", hmac.new(b"other-key", b"x", hashlib.sha256).hexdigest()])
def test_hmac_signature_rejected(synced, settings, signature):
    settings.ZUORA_CALLOUT_HMAC_KEY = "hmac-key"
    headers = {"X-Zuora-Signature": signature} if signature else {}
    answer = callout(synced, event(synced, "PaymentProcessed"), headers=headers)
    assert answer.status_code == 401 and not WebhookEvent.objects.filter(source="zuora").exists()


@pytest.mark.parametrize(
    "body, words",
    [
        ("not json", "not JSON"),
        ('[{"eventType": "PaymentProcessed"}]', "JSON object"),
        ('{"accountNumber": "A1"}', "eventType is missing"),
        ('{"eventType": "PaymentProcessed", "amount": "lots"}', "not a number"),
        ('{"eventType": "PaymentProcessed", "amount": 1e30}', "plausible"),
        ('{"eventType": "PaymentProcessed", "amount": "NaN"}', "plausible"),
        ('{"eventType": "PaymentProcessed", "amount": true}', "number"),
        ('{"eventType": {"x": 1}}', "text value"),
        ('{"eventType": "PaymentProcessed", "currency": "$$$"}', "currency"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_bad_bodies_get_a_4xx_are_kept_as_refused_and_nothing_reaches_kommo(synced, body, words):
    answer = callout(synced, body)
    assert answer.status_code == 400 and words in answer.json()["error"]
    stored = WebhookEvent.objects.get(source="zuora")
    assert not stored.valid and words in stored.error and not KNote.objects.exists()


def test_a_5_mb_body_is_refused(synced):
    answer = callout(synced, '{"eventType": "PaymentProcessed", "pad": "' + "x" * 5_000_000 + '"}')
    assert answer.status_code == 413 and not WebhookEvent.objects.filter(source="zuora").exists()


def test_an_event_zuora_cannot_place_needs_attention(synced):
    callout(synced, {"eventType": "PaymentProcessingError", "accountNumber": "A99999999", "amount": "5"})
    record = SyncRecord.objects.get(kind="billing_event")
    assert record.status == "needs_attention" and "A99999999" in record.reason and "never synced" in record.reason
    assert not KNote.objects.exists() and not KTask.objects.exists()


def test_an_unknown_event_type_is_stored_and_listed_not_an_error(synced, admin_client):
    answer = callout(synced, event(synced, "InvoicePosted"))
    assert answer.status_code == 200 and answer.json()["known"] is False
    record = SyncRecord.objects.get(kind="billing_event")
    assert record.status == "ignored" and "InvoicePosted" in record.reason
    page = admin_client.get("/admin/sync/syncrecord/", {"status__exact": "ignored"}).content.decode()
    assert "InvoicePosted" in page


def test_account_events_find_the_accounts_latest_deal(synced):
    callout(synced, {"eventType": "PaymentProcessed", "accountNumber": synced.deal.zuora_account_number, "amount": "1"})
    assert len(synced.notes(ACME_EXPANSION)) == 1


def test_account_events_can_go_to_the_kommo_company(synced, settings):
    settings.ZKBRIDGE_ACCOUNT_EVENTS_TO_COMPANY = True
    callout(synced, {"eventType": "PaymentProcessed", "accountNumber": synced.deal.zuora_account_number, "amount": "1"})
    note = KNote.objects.get()
    assert note.entity_type == "companies" and note.entity_id == 5550001


@pytest.mark.parametrize("kind", ["http429", "http500", "drop_after_commit"])
def test_a_kommo_failure_while_writing_the_note_is_retried_without_a_duplicate(synced, kind):
    from sync.tasks import run_sync

    synced.fault("kommo", kind, "/api/v4/leads/notes$", remaining=1, method="POST", retry_after=1)
    callout(synced, event(synced, "PaymentProcessed"))
    record = SyncRecord.objects.get(kind="billing_event")
    if record.status == "retrying":
        SyncRecord.objects.filter(id=record.id).update(next_attempt_at=None)
        run_sync(record.id)
    assert SyncRecord.objects.get(kind="billing_event").status == "succeeded"
    assert len(synced.notes(ACME_EXPANSION)) == 1


def test_rule_admin_refuses_unknown_placeholders(admin_client, db):
    rule = BillingEventRule.objects.get(event_type="PaymentProcessed")
    answer = admin_client.post(
        f"/admin/sync/billingeventrule/{rule.id}/change/",
        {
            "event_type": "PaymentProcessed",
            "active": "on",
            "note_template": "Paid {amont}",
            "task_template": "",
            "task_due_days": 0,
            "task_type_id": 1,
        },
    )
    assert answer.status_code == 200 and "unknown placeholder {amont}" in answer.content.decode()


def test_setup_help_prints_every_event(capsys, db, settings):
    settings.ZUORA_CALLOUT_USERNAME = "zuora"
    call_command("zuora_callouts")
    out = capsys.readouterr().out
    for name in (
        "PaymentProcessed",
        "PaymentProcessingError",
        "SubscriptionCanceled",
        "SubscriptionRenewed",
        "ContractRenewalReminder",
    ):
        assert f'"eventType": "{name}"' in out
    assert "/webhooks/zuora/" in out and "<Account.AccountNumber>" in out and "user name zuora" in out


def test_a_callout_that_could_not_be_acted_on_is_kept_and_zuoras_retry_acts_on_it(synced, monkeypatch):
    """Stored before it is judged: a failure after that leaves the callout in the inbox with the error, not
    processed; Zuora's retry (same notification id) makes the one note."""

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("sync.webhooks.views.ensure_record", broken)
    assert callout(synced, event(synced, "PaymentProcessed"), notification_id="n-retry").status_code == 500
    [kept] = WebhookEvent.objects.filter(source="zuora")
    assert kept.processed_at is None and "RuntimeError: database went away" in kept.error
    assert not SyncRecord.objects.filter(kind="billing_event").exists()
    monkeypatch.undo()
    assert callout(synced, event(synced, "PaymentProcessed"), notification_id="n-retry").status_code == 200
    kept.refresh_from_db()
    assert kept.processed_at is not None and kept.error == "" and kept.duplicates == 1
    assert len(synced.notes(ACME_EXPANSION)) == 1
    assert callout(synced, event(synced, "PaymentProcessed"), notification_id="n-retry").json()["duplicate"]
