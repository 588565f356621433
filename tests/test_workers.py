"""The workers' safety: leases on running records, the dispatcher that hands due retries over on time and
takes back records whose worker died, locks held across HTTP calls without a transaction, and the rule that
no Zuora or Kommo call is made inside a database transaction."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import transaction
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ

from sync.clients.zuora import ZuoraClient
from sync.context import Lease, LeaseLost, current_lease
from sync.locks import LockBusy, named_lock
from sync.models import ApiCall, IllegalTransition, SyncRecord
from sync.tasks import claim, dispatch_due
from sync.workers import dispatcher, leases
from tests.conftest import requires_postgres, run_together

S = SyncRecord.Status
ACME_EXPANSION = 24312346


@pytest.fixture
def queue(monkeypatch):
    """The real queue (django-q2's database broker), as in production: tasks wait for a worker."""
    monkeypatch.setattr(Conf, "SYNC", False)
    return OrmQ.objects


def queued_ids() -> list[int]:
    return sorted(task.task["args"][0] for task in OrmQ.objects.all())


def test_a_claim_takes_a_lease_for_this_worker(db):
    record = SyncRecord.objects.create(kind="deal_won", key="deal_won:1", kommo_lead_id=1)
    claimed = claim(record.id)
    assert claimed.status == S.RUNNING and claimed.worker == leases.worker_id()
    assert dt.timedelta(seconds=25) < claimed.lease_until - timezone.now() <= leases.LEASE
    assert claim(record.id) is None  # nobody else gets it while it runs


def test_the_heartbeat_renews_the_lease_while_the_flow_runs(transactional_db, monkeypatch):
    monkeypatch.setattr(leases, "HEARTBEAT_SECONDS", 0.05)
    record = claim(SyncRecord.objects.create(kind="deal_won", key="deal_won:1", kommo_lead_id=1).id)
    SyncRecord.objects.filter(id=record.id).update(lease_until=timezone.now())
    with leases.held(record) as lease:
        threading.Event().wait(0.3)
        assert not lease.lost.is_set()
    assert SyncRecord.objects.get(id=record.id).lease_until > timezone.now() + dt.timedelta(seconds=20)


def test_a_worker_whose_record_was_taken_over_stops_before_its_next_write(transactional_db, monkeypatch):
    monkeypatch.setattr(leases, "HEARTBEAT_SECONDS", 0.05)
    record = claim(SyncRecord.objects.create(kind="deal_won", key="deal_won:1", kommo_lead_id=1).id)
    with leases.held(record) as lease:
        SyncRecord.objects.filter(id=record.id).update(worker="another-host:42")  # taken over
        assert lease.lost.wait(2)
        with pytest.raises(LeaseLost, match="another worker took the record over"):
            record.mark_step("order", account_number="A1")
    assert "order" not in SyncRecord.objects.get(id=record.id).steps
    with pytest.raises(IllegalTransition):  # nor does it record an outcome on the other worker's record
        record.finish(S.SUCCEEDED)


def test_a_lost_lease_refuses_writes_but_not_reads(db):
    lease = Lease(1, "w")
    lease.lost.set()
    token = current_lease.set(lease)
    try:
        from sync.context import check_lease

        check_lease("GET")
        with pytest.raises(LeaseLost):
            check_lease("POST")
    finally:
        current_lease.reset(token)


def test_a_due_retry_is_handed_over_once_and_on_time(db, queue):
    now = timezone.now()
    due = SyncRecord.objects.create(kind="deal_won", key="deal_won:1", status=S.RETRYING, next_attempt_at=now)
    SyncRecord.objects.create(
        kind="deal_won", key="deal_won:2", status=S.RETRYING, next_attempt_at=now + dt.timedelta(seconds=30)
    )
    assert dispatcher.dispatch_once(now) == 1 and queued_ids() == [due.id]
    assert dispatcher.dispatch_once(now + dt.timedelta(seconds=1)) == 0  # not twice for the same due time
    assert dispatcher.dispatch_once(now + dt.timedelta(seconds=31)) == 1  # the other one, on its second
    # A hand-over lost with its broker is repeated after a while; a new due time is handed over again.
    assert dispatcher.dispatch_once(now + dt.timedelta(minutes=3)) == 2


def test_two_clusters_dispatching_at_once_hand_a_retry_over_once(db, queue):
    now = timezone.now()
    SyncRecord.objects.create(kind="deal_won", key="deal_won:1", status=S.RETRYING, next_attempt_at=now)
    assert dispatcher.dispatch_once(now) + dispatcher.dispatch_once(now) == 1


def test_a_record_whose_worker_died_resumes_as_soon_as_its_lease_lapses(db, queue):
    now = timezone.now()
    dead = SyncRecord.objects.create(
        kind="deal_won", key="deal_won:1", status=S.RUNNING, worker="gone:1", lease_until=now - dt.timedelta(seconds=1)
    )
    alive = SyncRecord.objects.create(
        kind="deal_won", key="deal_won:2", status=S.RUNNING, worker="here:2", lease_until=now + dt.timedelta(seconds=20)
    )
    assert dispatcher.dispatch_once(now) == 1 and queued_ids() == [dead.id]
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.status == S.RETRYING and "stopped" in dead.reason and alive.status == S.RUNNING


def test_the_minute_safety_net_finds_a_record_whose_enqueue_was_lost(db, queue):
    stored = SyncRecord.objects.create(
        kind="deal_won", key="deal_won:1", created_at=timezone.now() - dt.timedelta(minutes=3)
    )  # the web process died between storing the web hook and enqueuing it
    assert dispatch_due() == 1 and queued_ids() == [stored.id]
    assert dispatch_due() == 0  # handed over once, not every minute


def test_what_is_due_is_one_rule_for_the_dispatcher_and_the_claim(db, queue):
    """A lost enqueue is found by the every-second pass too; a record held back until later (a source's budget)
    is neither handed over nor claimable before its time, however old it is."""
    now = timezone.now()
    old = now - dt.timedelta(minutes=3)
    lost = SyncRecord.objects.create(kind="deal_won", key="deal_won:1", kommo_lead_id=1, created_at=old)
    held = SyncRecord.objects.create(
        kind="deal_won",
        key="deal_won:2",
        kommo_lead_id=2,
        created_at=old,
        next_attempt_at=now + dt.timedelta(minutes=1),
    )
    assert dispatcher.dispatch_once(now) == 1 and queued_ids() == [lost.id]
    assert claim(held.id) is None  # not yet: the claim reads the same rule
    assert dispatcher.dispatch_once(now + dt.timedelta(minutes=1)) == 1 and queued_ids() == [lost.id, held.id]
    SyncRecord.objects.filter(id=held.id).update(next_attempt_at=timezone.now())  # its time has come
    assert claim(held.id).status == S.RUNNING


def test_a_named_lock_excludes_others_and_gives_up_after_its_timeout(transactional_db):
    with named_lock("customer:company:1"):
        errors = run_together(1, lambda: named_lock("customer:company:1", timeout=0.3).__enter__())
    assert len(errors) == 1 and isinstance(errors[0], LockBusy)
    with named_lock("customer:company:1", timeout=0.3):  # released: free again
        pass


def test_no_zuora_or_kommo_call_inside_a_transaction(catalog):
    client = ZuoraClient.from_settings()
    with pytest.raises(AssertionError, match="inside a database transaction"), transaction.atomic():
        client.catalog_pages(page_size=1).__next__()


@requires_postgres
def test_a_refused_order_leaves_its_call_log_on_postgresql(catalog):
    catalog.fault("zuora", "success_false", "/v1/orders$", reason_code=53100020, reason_message="Invalid plan")
    catalog.win(ACME_EXPANSION)
    record = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    assert record.status == S.NEEDS_ATTENTION and "Invalid plan" in record.reason
    order = ApiCall.objects.get(sync_record=record, path="/v1/orders")
    assert order.status == 200 and "Invalid plan" in order.response_body
    assert ApiCall.objects.filter(sync_record=record, path="/v1/orders/preview").exists()


def six_catalog_reads_at_once(emulators) -> float:
    ZuoraClient.from_settings().access_token()
    started = time.monotonic()
    errors = run_together(6, lambda: next(ZuoraClient.from_settings().catalog_pages(page_size=1)))
    assert not errors
    return time.monotonic() - started


def test_zuora_calls_share_one_cap_on_concurrency(emulators, settings):
    emulators.fault("zuora", "latency", "/v1/catalog/products", latency_ms=400)
    settings.ZUORA_MAX_CONCURRENT_CALLS = 2
    assert six_catalog_reads_at_once(emulators) >= 3 * 0.4  # two at a time: three rounds
    settings.ZUORA_MAX_CONCURRENT_CALLS = 6
    assert six_catalog_reads_at_once(emulators) < 3 * 0.4


ACME_ANNUAL, UMBRELLA = 24312345, 24312350


def test_two_deals_of_one_new_company_won_at_once_share_one_account(catalog):
    from sandbox.models import KLead
    from sync.records import ensure_record
    from sync.tasks import run_sync

    # Both won in Kommo (their web hooks are the two records below), handed to two workers at once.
    KLead.objects.filter(id__in=[ACME_ANNUAL, ACME_EXPANSION]).update(status_id=142, closed_at=int(time.time()))
    ids = [
        ensure_record("deal_won", f"deal_won:{lead}", enqueue=False, kommo_lead_id=lead, payload={"id": lead})[0].id
        for lead in (ACME_ANNUAL, ACME_EXPANSION)
    ]
    pending = list(ids)
    errors = run_together(2, lambda: run_sync(pending.pop()))
    assert not errors
    assert set(SyncRecord.objects.filter(id__in=ids).values_list("status", flat=True)) == {S.SUCCEEDED}
    assert len(catalog.accounts()) == 1 and len(catalog.subscriptions()) == 2


def test_a_staff_retry_racing_the_dispatchers_retry_runs_the_deal_once(catalog):
    from sync.records import requeue
    from tests.conftest import map_plan

    catalog.win(UMBRELLA)  # "Platinum" is unmapped: needs attention
    map_plan("Platinum", "Starter")
    record = SyncRecord.objects.get(key=f"deal_won:{UMBRELLA}")
    SyncRecord.objects.filter(id=record.id).update(status=S.RETRYING, next_attempt_at=timezone.now())
    racers = [lambda: requeue([record.id], "retry requested by rita"), lambda: dispatcher.dispatch_once()]
    errors = run_together(2, lambda: racers.pop()())
    assert not errors
    record.refresh_from_db()
    assert record.status == S.SUCCEEDED
    assert len(catalog.subscriptions(UMBRELLA)) == 1 and len(catalog.notes(UMBRELLA)) == 1


def test_a_lease_that_cannot_be_renewed_stops_the_flow_before_its_next_write(transactional_db, monkeypatch):
    from django.db import DatabaseError

    monkeypatch.setattr(leases, "HEARTBEAT_SECONDS", 0.05)
    record = claim(SyncRecord.objects.create(kind="deal_won", key="deal_won:1", kommo_lead_id=1).id)

    def unreachable(*args, **kwargs):
        raise DatabaseError("could not connect to server")

    with leases.held(record) as lease:
        monkeypatch.setattr(leases.SyncRecord.objects, "filter", unreachable)
        assert lease.lost.wait(2) and "database did not answer" in lease.why
        monkeypatch.undo()
        with pytest.raises(LeaseLost):
            ZuoraClient.from_settings().create_order({}, idempotency_key="never-sent")
    assert not ApiCall.objects.exists()  # stopped before the call, not after it
