"""RevOps finds, reads and repairs sync records in the admin."""

from __future__ import annotations

import pytest

from sync.models import ApiCall, SyncRecord


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """The records handed to the workers (recorded instead of run: these records point at no real deal)."""
    handed: list[int] = []
    monkeypatch.setattr("sync.records.enqueue_record", handed.append)
    return handed


@pytest.fixture
def records(db, queued):
    made = {
        "ok": SyncRecord.objects.create(
            kind="deal_won",
            key="deal_won:1",
            kommo_lead_id=1,
            status="succeeded",
            zuora_account_number="A00000001",
            zuora_subscription_number="A-S00000001",
            steps={"order": {"done": True, "at": "2026-11-23T10:00:00", "account_number": "A00000001"}},
        ),
        "stuck": SyncRecord.objects.create(
            kind="deal_won",
            key="deal_won:2",
            kommo_lead_id=2,
            status="needs_attention",
            reason="no plan mapping for plan 'Platinum'",
        ),
        "failed": SyncRecord.objects.create(kind="deal_won", key="deal_won:3", kommo_lead_id=3, status="failed"),
    }
    ApiCall.objects.create(
        provider="zuora",
        method="POST",
        path="/v1/orders",
        status=200,
        request_body='{"client_secret": "***"}',
        sync_record=made["ok"],
    )
    return made


def test_list_filters_by_status_and_searches_numbers(admin_client, records):
    page = admin_client.get("/admin/sync/syncrecord/", {"status__exact": "needs_attention"}).content.decode()
    assert "deal_won:2" in page and "deal_won:1" not in page
    for term in ("A-S00000001", "A00000001", "1"):
        page = admin_client.get("/admin/sync/syncrecord/", {"q": term}).content.decode()
        assert "deal_won:1" in page and "deal_won:3" not in page


def test_detail_shows_the_timeline_and_the_calls(admin_client, records):
    page = admin_client.get(f"/admin/sync/syncrecord/{records['ok'].id}/change/").content.decode()
    assert "order" in page and "A00000001" in page and "/v1/orders" in page
    assert "/sandbox/kommo/#lead-1" in page and ">the deal in Kommo</a>" in page
    assert ">account A00000001 in Zuora</a>" in page and ">subscription A-S00000001 in Zuora</a>" in page


def test_links_lead_to_the_real_kommo_and_zuora(admin_client, records, settings):
    settings.KOMMO_BASE_URL = "https://acme.kommo.com"
    settings.ZUORA_BASE_URL = "https://rest.apisandbox.zuora.com"
    page = admin_client.get("/admin/sync/syncrecord/").content.decode()
    assert "https://acme.kommo.com/leads/detail/1" in page
    assert "https://apisandbox.zuora.com/apps/NewSearch.do?searchTerm=A-S00000001" in page


def test_retry_requeues_only_what_can_be_retried(admin_client, records, queued, django_capture_on_commit_callbacks):
    ids = [r.id for r in records.values()]
    with django_capture_on_commit_callbacks(execute=True):
        answer = admin_client.post("/admin/sync/syncrecord/", {"action": "retry", "_selected_action": ids}, follow=True)
    assert "2 record(s) queued for retry" in answer.content.decode()
    assert sorted(queued) == sorted([records["stuck"].id, records["failed"].id])  # handed over, once each
    statuses = dict(SyncRecord.objects.values_list("key", "status"))
    assert statuses == {"deal_won:1": "succeeded", "deal_won:2": "pending", "deal_won:3": "pending"}
    assert SyncRecord.objects.get(key="deal_won:2").generation == 2


def test_resolve_and_cancel_leave_succeeded_records_alone(admin_client, records):
    admin_client.post(
        "/admin/sync/syncrecord/",
        {"action": "mark_resolved", "_selected_action": [records["ok"].id, records["stuck"].id]},
    )
    admin_client.post("/admin/sync/syncrecord/", {"action": "cancel", "_selected_action": [records["failed"].id]})
    statuses = dict(SyncRecord.objects.values_list("key", "status"))
    assert statuses == {"deal_won:1": "succeeded", "deal_won:2": "resolved", "deal_won:3": "cancelled"}
    assert "resolved by admin" in SyncRecord.objects.get(key="deal_won:2").reason


def test_api_calls_are_read_only(admin_client, records):
    call = ApiCall.objects.get()
    assert admin_client.get(f"/admin/sync/apicall/{call.id}/change/").status_code == 200
    assert admin_client.post(f"/admin/sync/apicall/{call.id}/change/", {"path": "/x"}).status_code == 403
    assert admin_client.get("/admin/sync/apicall/add/").status_code == 403


def test_the_admin_needs_a_login(client, records):
    answer = client.get("/admin/sync/syncrecord/")
    assert answer.status_code == 302 and "/admin/login/" in answer["Location"]
