"""Repairing a deal from its sync record page, and the Kommo task that follows the problem: opened once per
reason, completed with a result when the cause is gone (retry, resolve, cancel), never two open at once."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.test import Client

from sandbox.models import KTask
from sync.groups import READ_ONLY, REVOPS
from sync.models import SyncRecord
from sync.reconcile import latest_report, run_reconciliation
from sync.reconcile.fixes import fix, outcome
from sync.tasks import dispatch_due
from tests.conftest import map_plan

UMBRELLA, GLOBEX, ACME_EXPANSION = 24312350, 24312347, 24312346


def page_of(client: Client, record: SyncRecord) -> str:
    answer = client.get(f"/admin/sync/syncrecord/{record.id}/change/")
    assert answer.status_code == 200
    return answer.content.decode()


def repair(client: Client, record: SyncRecord, name: str):
    return client.post(f"/admin/sync/syncrecord/{record.id}/repair/{name}/", follow=True)


def staff(group: str) -> Client:
    user = User.objects.create_user(f"user-{group}", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def stuck(catalog) -> SyncRecord:
    """Umbrella's plan 'Platinum' has no mapping: needs attention, with a task on the lead."""
    catalog.win(UMBRELLA)
    record = SyncRecord.objects.get(key=f"deal_won:{UMBRELLA}")
    assert record.status == "needs_attention"
    return record


def open_tasks(lead_id: int) -> list[KTask]:
    return list(KTask.objects.filter(entity_id=lead_id, is_completed=False))


def test_the_record_page_is_read_only_and_offers_the_repairs_that_apply(catalog, stuck, admin_client):
    page = page_of(admin_client, stuck)
    assert 'name="_save"' not in page and 'name="_continue"' not in page and "deletelink" not in page
    for label in (">Retry</button>", ">Mark resolved</button>", ">Cancel</button>"):
        assert label in page
    assert ">the deal in Kommo</a>" in page and "no plan mapping for plan &#x27;Platinum&#x27;" in page
    assert "Kommo GET /api/v4/leads/" in page and "step: attention task" in page  # the timeline
    catalog.win(ACME_EXPANSION)
    synced = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    page = page_of(admin_client, synced)
    assert ">Retry</button>" not in page and ">Cancel</button>" not in page
    assert "Zuora POST /v1/orders" in page and f"subscription {synced.zuora_subscription_number} in Zuora" in page
    assert admin_client.post(f"/admin/sync/syncrecord/{synced.id}/delete/").status_code == 403


def test_retry_from_the_page_bills_the_deal_and_completes_its_task(catalog, stuck, admin_client):
    [task] = open_tasks(UMBRELLA)
    map_plan("Platinum", "Starter")
    answer = repair(admin_client, stuck, "retry")
    assert "Retry queued" in answer.content.decode()
    stuck.refresh_from_db()
    assert stuck.status == "succeeded" and len(catalog.subscriptions(UMBRELLA)) == 1
    task.refresh_from_db()
    assert task.is_completed and task.result == (
        f"Zuora: done: subscription {stuck.zuora_subscription_number} on account {stuck.zuora_account_number}."
    )
    assert open_tasks(UMBRELLA) == []
    entry = LogEntry.objects.get(object_id=str(stuck.id))
    assert entry.get_change_message() == "Retry requested" and entry.user.username == "admin"


def test_resolve_and_cancel_complete_the_task_with_what_staff_did(catalog, stuck, admin_client):
    [task] = open_tasks(UMBRELLA)
    assert "Marked resolved" in repair(admin_client, stuck, "resolve").content.decode()
    task.refresh_from_db()
    assert task.is_completed and task.result.startswith("Zuora: closed by RevOps: resolved by admin")
    catalog.win(GLOBEX)  # no billing e-mail
    globex = SyncRecord.objects.get(key=f"deal_won:{GLOBEX}")
    [task] = open_tasks(GLOBEX)
    repair(admin_client, globex, "cancel")
    globex.refresh_from_db()
    task.refresh_from_db()
    assert globex.status == "cancelled" and task.is_completed and "nothing was billed" in task.result
    assert [e.get_change_message() for e in LogEntry.objects.order_by("id")] == ["Marked resolved", "Cancelled"]


def test_a_new_reason_replaces_the_open_task_instead_of_adding_one(catalog, stuck, admin_client):
    [first] = open_tasks(UMBRELLA)
    map_plan("Platinum", "Growth (2024)")  # mapped now, but to a retired plan: another reason
    repair(admin_client, stuck, "retry")
    stuck.refresh_from_db()
    assert stuck.status == "needs_attention" and "retired" in stuck.reason
    first.refresh_from_db()
    assert first.is_completed and first.result.startswith("Zuora: replaced by a newer task")
    [second] = open_tasks(UMBRELLA)
    assert "retired" in second.text
    repair(admin_client, stuck, "retry")  # the same reason again: no new task
    assert open_tasks(UMBRELLA) == [second]


def test_a_task_kommo_would_not_complete_is_completed_by_the_next_sweep(catalog, stuck, admin_client):
    [task] = open_tasks(UMBRELLA)
    catalog.fault("kommo", "http500", f"/api/v4/tasks/{task.id}$", remaining=1)
    map_plan("Platinum", "Starter")
    repair(admin_client, stuck, "retry")
    stuck.refresh_from_db()
    task.refresh_from_db()
    assert stuck.status == "succeeded" and not task.is_completed  # billed; Kommo failed the close
    dispatch_due()
    task.refresh_from_db()
    assert task.is_completed and task.result.startswith("Zuora: done: subscription ")


def test_read_only_staff_see_no_repairs_and_cannot_post_them(catalog, stuck):
    client = staff(READ_ONLY)
    page = page_of(client, stuck)
    assert ">Retry</button>" not in page and "no plan mapping" in page
    assert client.post(f"/admin/sync/syncrecord/{stuck.id}/repair/retry/").status_code == 403
    stuck.refresh_from_db()
    assert stuck.status == "needs_attention" and not LogEntry.objects.exists()


def test_repairs_refuse_what_does_not_apply_and_ignore_garbage(catalog, stuck):
    client = staff(REVOPS)
    catalog.win(ACME_EXPANSION)
    synced = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    answer = repair(client, synced, "cancel")
    assert "Not cancelled: the record is &#x27;Succeeded&#x27; now" in answer.content.decode()
    assert client.get(f"/admin/sync/syncrecord/{stuck.id}/repair/cancel/").status_code == 302  # GET changes nothing
    assert client.post(f"/admin/sync/syncrecord/{stuck.id}/repair/delete-everything/").status_code == 302
    assert client.post("/admin/sync/syncrecord/999999/repair/retry/").status_code == 404
    assert client.post("/admin/sync/syncrecord/not-a-number/repair/retry/").status_code == 404
    stuck.refresh_from_db()
    synced.refresh_from_db()
    assert (stuck.status, synced.status) == ("needs_attention", "succeeded") and not LogEntry.objects.exists()


def test_a_reconciliation_fix_says_queued_then_the_records_outcome(catalog, stuck):
    run_reconciliation()
    [row] = latest_report().discrepancies.filter(kind="sync_failed")
    assert fix(row, "rita").text == "retry queued"  # still unmapped: needs attention again
    row.refresh_from_db()
    assert row.fixed_at is None and row.fix_requested_at is not None
    assert outcome(row).startswith("retry queued (by rita) → needs attention again: no plan mapping")
    map_plan("Platinum", "Starter")
    assert fix(row, "rita").text == "retry queued"
    row.refresh_from_db()
    assert row.fixed_at is not None and outcome(row).startswith("fixed at ")
    assert str(fix(row)).startswith("already fixed")
