"""A sync record's status changes only along the state machine (sync.models.TRANSITIONS), whoever asks: the
worker's outcomes, staff repairs, reconciliation fixes and the rescue of a dead worker's records."""

from __future__ import annotations

import pytest

from sync.models import TRANSITIONS, IllegalTransition, SyncRecord

S = SyncRecord.Status


@pytest.fixture
def records(db) -> dict[str, SyncRecord]:
    return {
        status: SyncRecord.objects.create(kind="deal_won", key=f"deal_won:{n}", kommo_lead_id=n, status=status)
        for n, status in enumerate(S.values, start=1)
    }


# The state machine as the product promises it (docs/architecture.md "States"), written out here on its
# own: a change to sync.models.TRANSITIONS that moves a state nobody decided to move fails below.
ALL = set(S.values)
EXPECTED: dict[str, tuple[set[str], str]] = {
    "start": ({"pending", "retrying"}, "running"),
    "succeed": ({"running"}, "succeeded"),
    "need_attention": ({"running"}, "needs_attention"),
    "fail": ({"running"}, "failed"),
    "ignore": ({"running"}, "ignored"),
    "retry_later": ({"running"}, "retrying"),
    "rescue": ({"running"}, "retrying"),
    "requeue": ({"needs_attention", "failed", "retrying", "cancelled"}, "pending"),
    "rerun": ({"needs_attention", "failed", "succeeded", "resolved", "cancelled", "ignored"}, "pending"),
    "resolve": (ALL - {"running", "succeeded", "resolved"}, "resolved"),
    "cancel": (ALL - {"running", "succeeded", "cancelled"}, "cancelled"),
    "relink": (ALL - {"running"}, "succeeded"),
}


def test_the_table_is_the_one_promised():
    assert set(TRANSITIONS) == set(EXPECTED)


@pytest.mark.parametrize("transition", sorted(EXPECTED))
def test_each_transition_moves_exactly_the_states_it_leaves(records, transition):
    sources, target = EXPECTED[transition]
    moved = SyncRecord.objects.all().transition(transition)
    after = dict(SyncRecord.objects.values_list("key", "status"))
    assert moved == len(sources)
    for status, record in records.items():
        expected = target if status in sources else status
        assert after[record.key] == expected, (transition, status)


def test_a_running_record_is_never_moved_by_staff(records):
    running = records[S.RUNNING]
    for transition in ("requeue", "rerun", "resolve", "cancel", "relink"):
        assert SyncRecord.objects.filter(id=running.id).transition(transition) == 0
    assert SyncRecord.objects.get(id=running.id).status == S.RUNNING


def test_a_worker_outcome_needs_a_running_record(records):
    done = records[S.SUCCEEDED]
    with pytest.raises(IllegalTransition, match="cannot fail a record that is succeeded"):
        done.finish(S.FAILED, "late news")
    assert SyncRecord.objects.get(id=done.id).status == S.SUCCEEDED
    running = records[S.RUNNING]
    running.finish(S.NEEDS_ATTENTION, "no mapping")
    assert (running.status, running.reason) == (S.NEEDS_ATTENTION, "no mapping") and running.finished_at


def test_staff_close_refuses_succeeded_and_running_records_and_says_who(records):
    assert not records[S.SUCCEEDED].close_by_staff(S.CANCELLED, "rita")
    assert not records[S.RUNNING].close_by_staff(S.RESOLVED, "rita")
    assert records[S.FAILED].close_by_staff(S.RESOLVED, "rita")
    assert records[S.FAILED].status == S.RESOLVED and records[S.FAILED].reason.startswith("resolved by rita at ")
