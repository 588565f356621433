"""POST /api/usage/ and submit_usage: usage flows to Zuora in batches, once per unique_key."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
import requests
from django.contrib.auth.models import User
from django.core.management import call_command

from sandbox.models import ZUsage
from sync.models import ApiCall, ApiToken, SyncRecord
from sync.tasks import run_sync
from sync.usage.models import UsageRecord

ACME_EXPANSION = 24312346


@pytest.fixture(autouse=True)
def consumption_billing(request, settings):
    """Most tests here bill a tenant with Advanced Consumption Billing, whose usage files carry UNIQUE_KEY
    (Zuora documents the column for those tenants only); the default tenant's files do not (tests below)."""
    if "catalog" in request.fixturenames:
        from sandbox.common import set_setting

        request.getfixturevalue("catalog")
        set_setting("zuora_usage_unique_key", True)
    settings.ZUORA_USAGE_UNIQUE_KEY = True


@pytest.fixture
def token(db) -> str:
    return ApiToken.issue(User.objects.create_user("meter"))[1]


def post(client, token, body, content_type="application/json"):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.generic("POST", "/api/usage/", data, content_type=content_type, HTTP_AUTHORIZATION=f"Token {token}")


def row(key: str, **extra) -> dict:
    return {
        "subscription_number": "A-S00000001",
        "uom": "API call",
        "quantity": "1200",
        "start_date": "2026-11-01",
        "end_date": "2026-11-30",
        "unique_key": key,
        **extra,
    }


def test_json_records_are_accepted_once(client, token):
    answer = post(client, token, [row("k1"), row("k2"), row("k1")])
    assert answer.status_code == 202 and answer.json() == {"accepted": 2, "duplicates": 1, "rejected": []}
    again = post(client, token, [row("k1"), row("k3")])
    assert again.json() == {"accepted": 1, "duplicates": 1, "rejected": []}
    assert UsageRecord.objects.count() == 3


def test_csv_is_accepted_too(client, token):
    body = "kommo_lead_id,uom,quantity,start_date,end_date,unique_key\n24312346,API call,5,2026-11-01,,c1\n"
    assert post(client, token, body, "text/csv").json()["accepted"] == 1
    assert UsageRecord.objects.get().kommo_lead_id == 24312346


def test_bad_rows_are_rejected_one_by_one_and_the_rest_accepted(client, token):
    answer = post(
        client,
        token,
        [
            row("ok"),
            row("", quantity="-1"),
            {"unique_key": "x"},
            "junk",
            row("d", start_date="2026-11-30", end_date="2026-11-01"),
        ],
    ).json()
    assert answer["accepted"] == 1
    errors = {r["index"]: r["errors"] for r in answer["rejected"]}
    assert "unique_key is required" in errors[1] and "quantity must be a number, zero or more" in errors[1]
    assert "subscription_number or kommo_lead_id is required" in errors[2]
    assert errors[3] == ["a record must be an object"] and errors[4] == ["end_date is before start_date"]


@pytest.mark.parametrize(
    "body, content_type, words",
    [
        ("not json", "application/json", "not JSON"),
        ('{"a": 1}', "application/json", "JSON array"),
        ("x,y\n1,2\n", "text/csv", "unknown: x, y"),
        (b"\xff\xfe", "application/json", "not UTF-8"),
    ],
)
def test_garbage_is_a_400(client, token, body, content_type, words):
    answer = post(client, token, body, content_type)
    assert answer.status_code == 400 and words in answer.json()["error"]
    assert not UsageRecord.objects.exists()


def test_oversize_bodies_are_refused_and_rows_have_no_ceiling(client, token, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000  # the usage limit follows ZKBRIDGE_MAX_BODY_BYTES unless set
    answer = post(client, token, [row(f"k{i}") for i in range(100)])
    assert answer.status_code == 413 and "larger than 2000 bytes" in answer.json()["error"]
    settings.ZKBRIDGE_MAX_USAGE_BODY_BYTES = 2000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000_000
    assert post(client, token, [row(f"k{i}") for i in range(100)]).status_code == 413
    assert not UsageRecord.objects.exists()
    settings.ZKBRIDGE_MAX_USAGE_BODY_BYTES = 10_000_000
    answer = post(client, token, [row(f"k{i}") for i in range(12_000)])  # once refused past 10,000 rows
    assert answer.status_code == 202 and answer.json()["accepted"] == 12_000


def test_a_body_that_breaks_part_way_keeps_the_rows_before_it_and_says_where(client, token, settings):
    """The body is read as it arrives: when it stops being readable (here a stray carriage return on line
    12,002), the rows before it are stored and counted in the 400's answer, and the body's beginning waits in
    the admin's inbox. Sending the corrected body again stores only what is missing (unique_key)."""
    from sync.models import WebhookEvent

    settings.ZKBRIDGE_MAX_USAGE_BODY_BYTES = 10_000_000
    header = "unique_key,uom,quantity,start_date,kommo_lead_id\n"
    good = [f"key-{i:06},API call,{i % 7},2026-11-01,24312345\n" for i in range(14_000)]
    broken = header + "".join(good[:12_000]) + "bad\rrow,API call,1,2026-11-01,24312345\n" + "".join(good[12_000:])
    answer = client.generic(
        "POST", "/api/usage/", broken.encode(), content_type="text/csv", HTTP_AUTHORIZATION=f"Token {token}"
    )
    assert answer.status_code == 400, answer.content
    result = answer.json()
    assert "not valid CSV (line 12002)" in result["error"] and result["accepted"] == 12_000
    assert UsageRecord.objects.count() == 12_000
    event = WebhookEvent.objects.get(source="usage")
    assert "not valid CSV" in event.error and event.body.startswith("unique_key,uom")
    fixed = client.generic(
        "POST",
        "/api/usage/",
        (header + "".join(good)).encode(),
        content_type="text/csv",
        HTTP_AUTHORIZATION=f"Token {token}",
    )
    assert fixed.status_code == 202 and fixed.json() == {"accepted": 2_000, "duplicates": 12_000, "rejected": []}


def test_a_token_is_required(client, token):
    assert client.post("/api/usage/", "[]", content_type="application/json").status_code == 401
    answer = client.post("/api/usage/", "[]", content_type="application/json", HTTP_AUTHORIZATION="Token wrong")
    assert answer.status_code == 401 and not UsageRecord.objects.exists()


def test_submit_usage_imports_into_zuora_and_records_the_outcome(catalog):
    catalog.win(ACME_EXPANSION)
    deal = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    user = User.objects.create_user("meter")
    key = ApiToken.issue(user)[1]
    answer = requests.post(
        f"{catalog.url}/api/usage/",
        headers={"Authorization": f"Token {key}"},
        timeout=30,
        json=[
            row("u1", subscription_number=deal.zuora_subscription_number),
            row("u2", subscription_number="", kommo_lead_id=ACME_EXPANSION),
            row("u3", subscription_number="A-S99999999"),
        ],
    )
    assert answer.status_code == 202 and answer.json()["accepted"] == 3
    call_command("submit_usage", verbosity=0)
    [batch] = SyncRecord.objects.filter(kind="usage_batch")
    assert batch.status == "retrying" and batch.step_done("upload")  # uploaded; Zuora imports in its own time
    imports_finish()
    statuses = dict(UsageRecord.objects.values_list("unique_key", "status"))
    assert statuses == {"u1": "imported", "u2": "imported", "u3": "unplaceable"}
    assert sorted(ZUsage.objects.values_list("unique_key", flat=True)) == ["u1", "u2"]
    assert ZUsage.objects.get(unique_key="u2").account_number == deal.zuora_account_number
    call_command("submit_usage", verbosity=0)  # nothing pending: nothing sent twice
    assert ZUsage.objects.count() == 2 and SyncRecord.objects.filter(kind="usage_batch").count() == 1


def test_a_usage_file_zuora_fails_needs_attention(catalog):
    catalog.win(ACME_EXPANSION)
    deal = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    ZUsage.objects.create(unique_key="u1", account_number="x", uom="x", quantity=1, start_date="2026-11-01")
    UsageRecord.objects.create(
        unique_key="u1",
        subscription_number=deal.zuora_subscription_number,
        uom="API call",
        quantity=1,
        start_date="2026-11-01",
    )
    call_command("submit_usage", verbosity=0)
    imports_finish()
    batch = SyncRecord.objects.get(kind="usage_batch")
    assert batch.status == "needs_attention" and "already imported" in batch.reason
    assert UsageRecord.objects.get().status == "failed"


def test_an_upload_whose_answer_was_lost_is_not_uploaded_twice(catalog):
    catalog.win(ACME_EXPANSION)
    deal = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    UsageRecord.objects.create(
        unique_key="u1",
        subscription_number=deal.zuora_subscription_number,
        uom="API call",
        quantity=1,
        start_date="2026-11-01",
    )
    catalog.fault("zuora", "drop_after_commit", "/v1/usage$", remaining=1)
    call_command("submit_usage", verbosity=0)
    imports_finish()
    batch = SyncRecord.objects.get(kind="usage_batch")
    # Zuora imported the file but its answer was lost; the upload carries an Idempotency-Key, so the client
    # sends it again at once and Zuora replays its first answer instead of importing twice.
    assert batch.status == "succeeded" and ZUsage.objects.count() == 1
    assert catalog.calls("zuora", "POST", "/v1/usage$") == 2
    keys = set(ApiCall.objects.filter(sync_record=batch, path="/v1/usage").values_list("idempotency_key", flat=True))
    assert keys == {batch.idempotency_key("upload")}


def test_a_batch_takes_its_rows_in_one_write_and_a_second_submission_leaves_them_alone(catalog, monkeypatch):
    from sync.usage.batches import create_batches

    catalog.win(ACME_EXPANSION)
    deal = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    UsageRecord.objects.bulk_create(
        [
            UsageRecord(
                unique_key=f"b{n}",
                subscription_number=deal.zuora_subscription_number,
                uom="API call",
                quantity=n + 1,
                start_date=dt.date(2026, 11, 1),
            )
            for n in range(3)
        ]
    )
    queued: list[int] = []
    monkeypatch.setattr("sync.records.enqueue_record", queued.append)  # the workers have not started yet

    [batch] = create_batches()
    assert batch.payload == {"records": 3, "first_id": rows()[0].id, "last_id": rows()[2].id}
    assert {(r.status, r.batch_id) for r in rows()} == {("pending", None)}  # its flow takes them
    assert create_batches() == []  # a second submission meanwhile leaves them to the first batch
    assert queued == [batch.id]

    run_sync(batch.id)
    imports_finish()
    assert SyncRecord.objects.get(id=batch.id).status == "succeeded"
    assert {(r.status, r.batch_id) for r in rows()} == {("imported", batch.id)}  # taken in one UPDATE, then sent
    assert SyncRecord.objects.get(id=batch.id).step_data("take")["rows"] == 3


def imports_finish() -> None:
    """What the dispatcher does while Zuora imports: each waiting batch looks at its import again when due."""
    from django.utils import timezone

    for _ in range(5):
        waiting = list(SyncRecord.objects.filter(kind="usage_batch", status="retrying"))
        if not waiting:
            return
        for batch in waiting:
            assert "Zuora is importing the file" in batch.reason and batch.attempts == 0  # not a failure
            SyncRecord.objects.filter(id=batch.id).update(next_attempt_at=timezone.now())
            run_sync(batch.id)


def rows() -> list[UsageRecord]:
    return list(UsageRecord.objects.order_by("id"))


def test_rows_committed_late_into_a_batchs_range_never_push_its_file_past_4_mb(catalog, monkeypatch):
    from sync.usage import batches

    catalog.win(ACME_EXPANSION)
    deal = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    made = [
        UsageRecord.objects.create(
            unique_key=f"l{n}", subscription_number=deal.zuora_subscription_number, uom="API call", quantity=1,
            start_date=dt.date(2026, 11, 1), account_number=deal.zuora_account_number,
        )
        for n in range(4)
    ]  # fmt: skip
    monkeypatch.setattr("sync.records.enqueue_record", lambda record_id: None)
    # Measured while only the first and last were placed (the middle ones: a feed's transaction still open).
    UsageRecord.objects.filter(id__in=[made[1].id, made[2].id]).update(account_number="")
    monkeypatch.setattr(batches, "place_pending", lambda: 0)
    [batch] = batches.create_batches()
    assert batch.payload["records"] == 2
    UsageRecord.objects.filter(id__in=[made[1].id, made[2].id]).update(account_number=deal.zuora_account_number)
    one_line = batches.line_size(UsageRecord.objects.filter(id=made[0].id).values_list(*batches.LINE_FIELDS).get())
    monkeypatch.setattr(batches, "MAX_IMPORT_BYTES", len(batches.header_line()) + 3 * one_line)

    run_sync(batch.id)
    imports_finish()
    assert SyncRecord.objects.get(id=batch.id).status == "succeeded"

    taken = list(UsageRecord.objects.filter(batch=batch).order_by("id").values_list("unique_key", flat=True))
    assert taken == ["l0", "l1", "l2"]  # what fits; the fourth waits for the next submission
    assert UsageRecord.objects.get(unique_key="l3").status == "pending"
    assert UsageRecord.objects.get(unique_key="l3").batch is None


def test_a_file_zuora_imports_in_its_own_time_is_looked_at_again_until_it_has(catalog):
    import time

    from sandbox.common import set_setting

    set_setting("zuora_usage_import", "background")  # the emulator imports after answering, as Zuora does
    catalog.win(ACME_EXPANSION)
    deal = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    UsageRecord.objects.create(
        unique_key="bg1", subscription_number=deal.zuora_subscription_number, uom="API call", quantity=2,
        start_date="2026-11-01",
    )  # fmt: skip
    call_command("submit_usage", verbosity=0)
    deadline = time.monotonic() + 20
    while SyncRecord.objects.get(kind="usage_batch").status != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.2)
        imports_finish()
    batch = SyncRecord.objects.get(kind="usage_batch")
    assert batch.status == "succeeded" and batch.attempts == 1  # looking again never used up an attempt
    assert UsageRecord.objects.get().status == "imported" and ZUsage.objects.get().unique_key == "bg1"


def test_the_database_measures_each_line_as_the_csv_module_writes_it(db):
    """Batching measures lines in SQL on PostgreSQL (in Python elsewhere): the bytes must be the written
    line's, whatever the row holds — commas, quotes, line breaks, non-ASCII text, trailing zeros, old years."""
    from sync.usage import batches

    tricky = [
        ("a,b", 'say "hi"', "line\nbreak", "cr\rhere", Decimal("12.500000"), dt.date(2026, 11, 1), None),
        ("Zürich AG", "€ per GB", "", '😀, "both"', Decimal("0"), dt.date(999, 1, 2), dt.date(2026, 1, 31)),
        ("A-1", "API call", "S-1", "", Decimal("999999999999"), dt.date(2026, 2, 3), dt.date(1, 1, 1)),
        ("A-2", "GB", "S-2", "plain", Decimal("0.000001"), dt.date(2026, 2, 3), None),
    ]
    for n, (account, uom, subscription, description, quantity, start, end) in enumerate(tricky):
        UsageRecord.objects.create(
            unique_key=f"k{n},\"x\"", account_number=account, uom=uom, subscription_number=subscription,
            description=description, quantity=quantity, start_date=start, end_date=end,
        )  # fmt: skip
    queryset = UsageRecord.objects.all()
    written = {
        row[0]: len(batches.LineWriter().line(row).encode())
        for row in queryset.order_by("id").values_list(*batches.LINE_FIELDS)
    }
    assert dict(batches.sized(queryset)) == written


def usage_of(catalog, key: str) -> None:
    catalog.win(ACME_EXPANSION)
    deal = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    UsageRecord.objects.create(
        unique_key=key,
        subscription_number=deal.zuora_subscription_number,
        uom="API call",
        quantity=Decimal("3.5"),
        start_date="2026-11-01",
    )


def test_without_consumption_billing_the_file_has_no_unique_key_column(catalog, settings):
    """Zuora documents UNIQUE_KEY for Advanced Consumption Billing tenants only: a tenant without it gets the
    documented columns and nothing else; zkbridge's own ledger still sends each unique_key once."""
    from sandbox.common import set_setting
    from sandbox.models import ZUsageImport

    settings.ZUORA_USAGE_UNIQUE_KEY = False
    set_setting("zuora_usage_unique_key", False)
    usage_of(catalog, "plain-1")
    call_command("submit_usage", verbosity=0)
    imports_finish()
    assert UsageRecord.objects.get().status == "imported"
    header = ZUsageImport.objects.get().content.splitlines()[0]
    assert header == "ACCOUNT_ID,UOM,QTY,STARTDATE,ENDDATE,SUBSCRIPTION_ID,CHARGE_ID,DESCRIPTION"
    assert ZUsage.objects.get().quantity == Decimal("3.5")
    call_command("submit_usage", verbosity=0)  # nothing pending: nothing sent twice
    assert ZUsage.objects.count() == 1


def test_unique_key_sent_to_a_tenant_without_consumption_billing_needs_attention_with_zuoras_words(catalog, settings):
    from sandbox.common import set_setting

    set_setting("zuora_usage_unique_key", False)  # the operator said the tenant has it; it does not
    usage_of(catalog, "wrong-1")
    call_command("submit_usage", verbosity=0)
    batch = SyncRecord.objects.get(kind="usage_batch")
    assert batch.status == "needs_attention" and "Advanced Consumption Billing" in batch.reason
    assert UsageRecord.objects.get().status != "imported" and ZUsage.objects.count() == 0


def test_every_body_is_kept_compressed_and_a_disputed_import_is_replayed(client, token, admin_client, capsys):
    """The feed says it sent a row the ledger does not have: the body as sent is on record (gzip, with its
    hash and what was made of it), downloadable, and replaying it stores only what is missing."""
    import gzip
    import hashlib

    from django.core.management import CommandError

    from sync.ops.retention import prune
    from sync.usage.models import UsageDelivery

    sent = json.dumps([row("d1"), row("d2"), row("d3", quantity="x")]).encode()
    assert post(client, token, sent).status_code == 202
    [kept] = UsageDelivery.objects.all()
    assert (kept.feed, kept.size, kept.sha256) == ("meter", len(sent), hashlib.sha256(sent).hexdigest())
    assert (kept.accepted, kept.duplicates, kept.rejected) == (2, 0, 1) and kept.body() == sent
    assert len(bytes(kept.body_gzip)) < len(sent) * 2  # compressed, not a copy
    download = admin_client.get(f"/admin/sync/usagedelivery/{kept.pk}/body/")
    assert download.status_code == 200 and gzip.decompress(download.content) == sent

    UsageRecord.objects.filter(unique_key="d2").delete()  # lost downstream, disputed
    call_command("replay_usage", str(kept.pk))
    assert "1 row(s) stored, 1 already in the ledger, 1 rejected" in capsys.readouterr().out
    assert sorted(UsageRecord.objects.values_list("unique_key", flat=True)) == ["d1", "d2"]

    for garbage, words in (("abc", "not a usage delivery id"), ("999999", "no usage delivery 999999")):
        with pytest.raises(CommandError, match=words):
            call_command("replay_usage", garbage)
    UsageDelivery.objects.update(received_at=kept.received_at - dt.timedelta(days=400))
    assert prune()["usage_bodies"] == 1
    with pytest.raises(CommandError, match="past its retention"):
        call_command("replay_usage", str(kept.pk))
    assert admin_client.get(f"/admin/sync/usagedelivery/{kept.pk}/body/").status_code == 404
    assert (
        "dropped after the retention period"
        in admin_client.get(f"/admin/sync/usagedelivery/{kept.pk}/change/").content.decode()
    )
