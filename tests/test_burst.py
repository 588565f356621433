"""Won deals due together run as a burst: shared Kommo reads and batched writes, each deal its own outcome.

Over real HTTP against the emulators (live server); the burst runs when a worker claims one of the deals
(sync.tasks.run_sync), exactly as under a month-end close.
"""

from __future__ import annotations

import time

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from sandbox import demo
from sandbox.models import KLead, KNote, RequestLog, ZAccount, ZSubscription
from sync.flows.models import CustomerAccount
from sync.models import SyncRecord
from sync.records import ensure_record
from sync.tasks import run_sync

FIRST = 71_000_001
UMBRELLA = 24312350  # a demo deal on the unmapped plan "Platinum"


def won(*lead_ids: int) -> list[SyncRecord]:
    """The leads are Won in Kommo and their web hooks stored: pending records, not yet run."""
    KLead.objects.filter(id__in=lead_ids).update(status_id=142, closed_at=int(time.time()))
    return [
        ensure_record(SyncRecord.Kind.DEAL_WON, f"deal_won:{i}", enqueue=False, kommo_lead_id=i, payload={"id": i})[0]
        for i in lead_ids
    ]


def kommo_calls(method: str, path: str) -> int:
    return RequestLog.objects.filter(service="kommo", method=method, path=path).count()


def notes_of(lead_id: int) -> list[str]:
    return list(KNote.objects.filter(entity_type="leads", entity_id=lead_id).values_list("params__text", flat=True))


def statuses(records: list[SyncRecord]) -> dict[int, str]:
    return {r.kommo_lead_id: SyncRecord.objects.get(id=r.id).status for r in records}


def test_sixty_deals_cost_eight_kommo_calls_and_each_keeps_its_own_record(catalog):
    ids = demo.generate_leads(FIRST, 60)
    records = won(*ids)
    RequestLog.objects.all().delete()

    assert run_sync(records[0].id) == "succeeded"

    assert set(statuses(records).values()) == {"succeeded"}
    # Kommo: one list of leads, one of contacts, one of companies; fields and notes 50 a call.
    assert kommo_calls("GET", "/api/v4/leads") == 1
    assert kommo_calls("GET", "/api/v4/contacts") == 1 and kommo_calls("GET", "/api/v4/companies") == 1
    assert kommo_calls("PATCH", "/api/v4/leads") == 2 and kommo_calls("POST", "/api/v4/leads/notes") == 2
    assert RequestLog.objects.filter(service="kommo").count() == 7
    # Zuora: one order per deal, one preview for the one sale they share, the accounts by two IN queries.
    assert RequestLog.objects.filter(service="zuora", method="POST", path="/v1/orders").count() == 60
    assert RequestLog.objects.filter(service="zuora", path="/v1/orders/preview").count() == 1
    assert RequestLog.objects.filter(service="zuora", path="/object-query/accounts").count() == 2
    for record in SyncRecord.objects.filter(id__in=[r.id for r in records]):
        [sub] = catalog.subscriptions(record.kommo_lead_id)
        assert record.zuora_subscription_number == sub.subscription_number
        assert sub.account.crm_id == f"company:{record.kommo_lead_id}"
        lead = KLead.objects.get(id=record.kommo_lead_id)
        fields = {f["field_id"]: f["values"][0]["value"] for f in lead.custom_fields_values}
        assert fields[881251] == sub.subscription_number and fields[881250] == sub.account.account_number
        assert notes_of(record.kommo_lead_id) == [
            f"Zuora: subscription {sub.subscription_number} on account {sub.account.account_number} is active "
            f"(Starter, $300.00 MRR)."
        ]
        assert record.step_data("lead_fields")["updated_at"] == lead.updated_at
        assert CustomerAccount.objects.get(customer_key=f"company:{record.kommo_lead_id}").account_number
    # Each order went with the deal's own Idempotency-Key.
    from sandbox.models import ZIdempotency

    assert ZIdempotency.objects.filter(key__startswith="zkbridge:deal_won:").count() == 60


def test_one_bad_lead_fails_alone_and_the_others_finish(catalog):
    ids = demo.generate_leads(FIRST, 8)
    deleted, fields_refused, note_refused = ids[1], ids[3], ids[5]
    records = won(*ids, UMBRELLA)
    KLead.objects.filter(id=deleted).update(is_deleted=True)
    catalog.fault(
        "kommo", "refuse_entity", "/api/v4/leads$", method="PATCH", reason_code=fields_refused,
        reason_message="The value is not allowed for this lead",
    )  # fmt: skip
    catalog.fault(
        "kommo", "refuse_entity", "/api/v4/leads/notes", method="POST", reason_code=note_refused,
        reason_message="Notes are locked on this lead",
    )  # fmt: skip
    RequestLog.objects.all().delete()

    run_sync(records[0].id)

    outcome = {r.kommo_lead_id: SyncRecord.objects.get(id=r.id) for r in records}
    assert {i for i, r in outcome.items() if r.status == "succeeded"} == set(ids) - {
        deleted,
        fields_refused,
        note_refused,
    }
    assert "was deleted or is not visible" in outcome[deleted].reason
    assert "no plan mapping for plan 'Platinum'" in outcome[UMBRELLA].reason
    assert outcome[fields_refused].status == "needs_attention"
    assert "Kommo refused the lead fields" in outcome[fields_refused].reason
    assert "The value is not allowed for this lead" in outcome[fields_refused].reason
    assert outcome[note_refused].status == "needs_attention" and "Notes are locked" in outcome[note_refused].reason
    # Billed in Zuora all the same: the refusals came after the orders.
    assert outcome[fields_refused].zuora_subscription_number and outcome[note_refused].zuora_subscription_number
    assert catalog.subscriptions(deleted) == catalog.subscriptions(UMBRELLA) == []
    # Refused once, sent again without the refused entry: nobody's note or fields written twice.
    assert kommo_calls("PATCH", "/api/v4/leads") == 2 and kommo_calls("POST", "/api/v4/leads/notes") == 2
    for lead_id in set(ids) - {deleted, note_refused}:
        assert len(notes_of(lead_id)) == 1, lead_id
    assert notes_of(note_refused) == []
    # The salespeople who can act got their Kommo task (as for a deal on its own).
    from sandbox.models import KTask

    assert set(KTask.objects.values_list("entity_id", flat=True)) == {deleted, fields_refused, UMBRELLA}


def test_a_lost_batch_answer_never_writes_a_note_twice(catalog):
    ids = demo.generate_leads(FIRST, 5)
    records = won(*ids)
    catalog.fault("kommo", "drop_after_commit", "/api/v4/leads/notes", method="POST", remaining=1)

    run_sync(records[0].id)
    assert set(statuses(records).values()) == {"retrying"}  # the notes' answer was lost
    assert all(len(notes_of(i)) == 1 for i in ids)

    SyncRecord.objects.filter(id__in=[r.id for r in records]).update(next_attempt_at=timezone.now())
    run_sync(records[2].id)

    assert set(statuses(records).values()) == {"succeeded"}
    assert all(len(notes_of(i)) == 1 for i in ids)  # found on the retry, not written again
    assert all(len(catalog.subscriptions(i)) == 1 for i in ids)


def test_deals_of_one_customer_in_a_burst_share_one_new_account(catalog):
    ids = demo.generate_leads(FIRST, 4)
    KLead.objects.filter(id__in=ids[1:3]).update(company_id=ids[0])
    records = won(*ids)

    run_sync(records[0].id)

    assert set(statuses(records).values()) == {"succeeded"}
    assert ZAccount.objects.filter(crm_id=f"company:{ids[0]}").count() == 1
    assert ZAccount.objects.count() == 2 and ZSubscription.objects.count() == 4


def test_an_order_zuora_refuses_fails_only_its_own_deal(catalog):
    ids = demo.generate_leads(FIRST, 6)
    records = won(*ids)
    catalog.fault("zuora", "success_false", "/v1/orders$", method="POST", remaining=1, reason_message="Bad term")

    run_sync(records[0].id)

    result = statuses(records)
    assert sorted(result.values()) == ["needs_attention"] + ["succeeded"] * 5
    [refused] = [i for i, status in result.items() if status == "needs_attention"]
    assert "Zuora refused the order: Zuora: Bad term" in SyncRecord.objects.get(kommo_lead_id=refused).reason
    assert notes_of(refused) == [] and all(len(notes_of(i)) == 1 for i in ids if i != refused)
    # Nothing was created for it, so the customer's next deal is not sent to an account that does not exist.
    assert not CustomerAccount.objects.filter(customer_key=f"company:{refused}").exists()


def test_a_kommo_outage_during_the_reads_retries_every_deal(catalog):
    ids = demo.generate_leads(FIRST, 3)
    records = won(*ids)
    catalog.fault("kommo", "http503", "/api/v4/leads$", method="GET", remaining=3)  # outlasts the client's tries

    run_sync(records[0].id)

    assert set(statuses(records).values()) == {"retrying"}
    assert ZSubscription.objects.count() == 0


def test_a_deal_alone_takes_the_single_path(catalog):
    [record] = won(*demo.generate_leads(FIRST, 1))
    RequestLog.objects.all().delete()
    assert run_sync(record.id) == "succeeded"
    assert kommo_calls("GET", f"/api/v4/leads/{FIRST}") == 1 and kommo_calls("GET", "/api/v4/leads") == 0


def test_deals_not_due_yet_stay_out_of_the_burst(catalog):
    ids = demo.generate_leads(FIRST, 3)
    records = won(*ids)
    later = timezone.now() + timezone.timedelta(minutes=5)
    SyncRecord.objects.filter(id=records[2].id).update(next_attempt_at=later)

    run_sync(records[0].id)

    assert statuses(records) == {ids[0]: "succeeded", ids[1]: "succeeded", ids[2]: "pending"}


# --- historical imports ------------------------------------------------------------------------------
def test_poll_kommo_since_a_date_imports_won_deals_and_they_run_as_a_burst(catalog, capsys, monkeypatch):
    ids = demo.generate_leads(FIRST, 12)
    KLead.objects.filter(id__in=ids).update(status_id=142, closed_at=int(time.time()))
    queued: list[int] = []  # the broker: the workers take these after the command
    monkeypatch.setattr("sync.records.enqueue_record", queued.append)

    call_command("poll_kommo", "--since", "2020-01-01")
    assert "12 new sync record(s)" in capsys.readouterr().out

    records = list(SyncRecord.objects.filter(kommo_lead_id__in=ids).order_by("id"))
    assert len(records) == 12 and sorted(queued) == [r.id for r in records]
    RequestLog.objects.all().delete()
    assert [run_sync(i) for i in queued][1:] == ["not runnable"] * 11  # the first worker took them all
    assert set(statuses(records).values()) == {"succeeded"}
    assert kommo_calls("GET", "/api/v4/leads") == 1


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "-5", "2026-01-01T25:00"])
def test_poll_kommo_refuses_a_since_it_cannot_read(catalog, value):
    with pytest.raises(CommandError, match="--since"):
        call_command("poll_kommo", "--since", value)


# --- the batch calls themselves -----------------------------------------------------------------------
def test_a_batch_patch_naming_a_missing_lead_is_refused_whole_with_that_entry_named(catalog):
    from sync.clients.errors import BusinessError
    from sync.clients.kommo import KommoClient

    ids = demo.generate_leads(FIRST, 3)
    KLead.objects.filter(id=ids[1]).update(is_deleted=True)
    kommo = KommoClient.from_settings()
    with pytest.raises(BusinessError) as refused:
        kommo.update_leads_fields([(i, {881250: "A-1"}) for i in ids])
    assert set(refused.value.entries) == {1} and f"Lead {ids[1]} not found" in refused.value.entries[1]
    assert all(not any(f["field_id"] == 881250 for f in KLead.objects.get(id=i).custom_fields_values) for i in ids)
    # Sent again without it, the others are written and their new updated_at returned in order.
    stamps = kommo.update_leads_fields([(ids[0], {881250: "A-1"}), (ids[2], {881250: "A-3"})])
    assert stamps == [KLead.objects.get(id=ids[0]).updated_at, KLead.objects.get(id=ids[2]).updated_at]


def test_the_batch_calls_hold_at_most_fifty_entries(catalog):
    from sync.clients.kommo import KommoClient

    kommo = KommoClient.from_settings()
    with pytest.raises(ValueError, match="1 to 50"):
        kommo.add_notes("leads", [(FIRST, "x")] * 51)
    with pytest.raises(ValueError, match="1 to 50"):
        kommo.update_leads_fields([])


def test_companies_and_contacts_are_read_by_id_lists(catalog):
    from sync.clients.kommo import KommoClient

    ids = demo.generate_leads(FIRST, 3)
    kommo = KommoClient.from_settings()
    assert [c["id"] for c in kommo.companies_by_ids([*ids, 999])] == ids  # one Kommo does not have is left out
    assert [c["id"] for c in kommo.get_contacts(ids)] == ids
    assert kommo.companies_by_ids([999]) == []  # Kommo answers 204 to an empty list


def test_deals_a_burst_has_no_time_left_for_go_back_to_the_queue_with_their_attempt(catalog, monkeypatch):
    monkeypatch.setattr("sync.flows.burst.BUDGET_SECONDS", 0.0)  # Zuora as slow as it gets: no time at all
    records = won(*demo.generate_leads(FIRST, 3))

    run_sync(records[0].id)

    for record in SyncRecord.objects.filter(id__in=[r.id for r in records]):
        assert record.status == "retrying" and record.attempts == 0 and "ran out of time" in record.reason
        assert record.next_attempt_at <= timezone.now()
    assert ZSubscription.objects.count() == 0 and KNote.objects.count() == 0


def test_the_next_burst_is_claimed_and_read_while_the_last_orders_go(catalog, monkeypatch):
    from sandbox.models import ZOrder

    monkeypatch.setattr("sync.flows.burst.BURST", 6)
    monkeypatch.setattr("sync.flows.burst.LOOKAHEAD", 2)
    catalog.fault("zuora", "latency", "/v1/orders$", method="POST", latency_ms=300)
    ids = demo.generate_leads(FIRST, 14)
    records = won(*ids)

    assert run_sync(records[0].id) == "succeeded"  # one task: three bursts of 6, 6 and 2, one after another

    assert set(statuses(records).values()) == {"succeeded"}
    assert set(SyncRecord.objects.filter(id__in=[r.id for r in records]).values_list("attempts", flat=True)) == {1}
    assert all(len(catalog.subscriptions(i)) == 1 and len(notes_of(i)) == 1 for i in ids)
    reads = list(RequestLog.objects.filter(service="kommo", method="GET", path="/api/v4/leads").order_by("at"))
    assert len(reads) == 3
    # Each next burst's leads were read before the burst before it had its last order answered.
    orders = sorted(ZOrder.objects.values_list("created", flat=True))
    assert reads[1].at < orders[5].timestamp() and reads[2].at < orders[11].timestamp()


def test_a_task_takes_up_no_next_burst_once_it_is_old(catalog, monkeypatch):
    monkeypatch.setattr("sync.flows.burst.BURST", 4)
    monkeypatch.setattr("sync.flows.burst.CHAIN_SECONDS", 0.0)
    records = won(*demo.generate_leads(FIRST, 6))

    run_sync(records[0].id)

    assert list(statuses(records).values()) == ["succeeded"] * 4 + ["pending"] * 2  # their own tasks run them


def test_deals_a_task_put_back_in_the_queue_are_not_taken_up_again_by_it(catalog, monkeypatch):
    monkeypatch.setattr("sync.flows.burst.BURST", 2)
    monkeypatch.setattr("sync.flows.burst.BUDGET_SECONDS", 0.0)  # every deal runs out of time at once, due again
    records = won(*demo.generate_leads(FIRST, 5))

    run_sync(records[0].id)

    # three bursts chained (2, 2, 1), each deal started once and put back; none taken up a second time
    for record in SyncRecord.objects.filter(id__in=[r.id for r in records]):
        assert record.status == "retrying" and record.attempts == 0 and "ran out of time" in record.reason
    assert kommo_calls("GET", "/api/v4/leads") == 3 and ZSubscription.objects.count() == 0


def test_two_workers_taking_bursts_at_once_never_run_a_deal_twice(catalog, monkeypatch):
    import threading

    from sync.models import SyncRecordQuerySet
    from tests.conftest import run_together

    monkeypatch.setattr("sync.workers.leases.worker_id", lambda: f"worker-{threading.get_ident()}")
    ids = demo.generate_leads(FIRST, 40)
    records = won(*ids)
    firsts = iter([records[0].id, records[-1].id])
    guard = threading.Lock()
    # Both workers choose the deals of their first burst before either claims them: they compete for the
    # same deals, and the conditional UPDATE must give each deal to one of them only.
    both_chose = threading.Barrier(2, timeout=20)
    claims: list[tuple[int, int]] = []  # (deals chosen, deals claimed) of each worker's first burst
    waited: set[int] = set()
    real_transition = SyncRecordQuerySet.transition

    def transition(self, name, **changes):
        first_burst = name == "start" and threading.get_ident() not in waited and self.count() > 1
        if not first_burst:
            return real_transition(self, name, **changes)
        waited.add(threading.get_ident())
        chosen = self.count()
        both_chose.wait()
        moved = real_transition(self, name, **changes)
        with guard:
            claims.append((chosen, moved))
        return moved

    monkeypatch.setattr(SyncRecordQuerySet, "transition", transition)

    def worker() -> None:
        with guard:
            record_id = next(firsts)
        run_sync(record_id)

    assert run_together(2, worker) == []

    assert len(claims) == 2  # each worker claimed a burst, at the same moment
    assert sum(moved for _, moved in claims) < sum(chosen for chosen, _ in claims)  # some deals refused to one

    assert set(statuses(records).values()) == {"succeeded"}
    assert set(SyncRecord.objects.filter(id__in=[r.id for r in records]).values_list("attempts", flat=True)) == {1}
    assert all(len(catalog.subscriptions(i)) == 1 and len(notes_of(i)) == 1 for i in ids)


def test_a_burst_reads_the_plan_map_once_per_plan_sold(catalog, monkeypatch):
    from catalog import planmap

    asked = []
    real = planmap.look_up_mapping

    def counted(kind, value, currency, entity):
        asked.append((kind, value, currency))
        return real(kind, value, currency, entity)

    monkeypatch.setattr(planmap, "look_up_mapping", counted)
    ids = demo.generate_leads(FIRST, 30)  # the generated deals all sell "Starter" in USD
    records = won(*ids)
    assert run_sync(records[0].id) == "succeeded"
    assert set(statuses(records).values()) == {"succeeded"}
    assert asked == [("plan", "Starter", "USD")]
    # Outside a burst every deal asks the database, so an edit applies to the next deal.
    asked.clear()
    assert planmap.find_mapping("plan", "Starter", "USD").mapping is not None
    assert planmap.find_mapping("plan", "Starter", "USD").mapping is not None
    assert len(asked) == 2
