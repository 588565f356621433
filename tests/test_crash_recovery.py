"""A worker killed with SIGKILL in the middle of a deal: restarted at once, the deal finishes within 60 s of
the restart, with one subscription and one note. zkbridge runs in its own processes here (tests/stack.py):
the web process with the emulators, and a `qcluster` that is killed and started again."""

from __future__ import annotations

import time

import pytest

from tests.stack import Stack

ACME_EXPANSION, SOLO = 24312346, 24312349
RECOVERY_LIMIT = 60


@pytest.fixture
def stack(tmp_path, db):
    running = Stack(tmp_path, ZKBRIDGE_RETRY_BASE_SECONDS="1", ZKBRIDGE_WORKERS="2")
    try:
        yield running.start()
    finally:
        running.stop()


def status(lead_id: int) -> str:
    return f"SELECT status FROM sync_syncrecord WHERE key = 'deal_won:{lead_id}'"


def steps_of(lead_id: int) -> str:
    return f"SELECT steps FROM sync_syncrecord WHERE key = 'deal_won:{lead_id}'"


def subscriptions(stack: Stack, lead_id: int) -> int:
    rows = stack.query("SELECT custom_fields FROM sandbox_zsubscription")
    return sum(1 for (fields,) in rows if f'"KommoLeadId__c": "{lead_id}"' in str(fields).replace("'", '"'))


def notes(stack: Stack, lead_id: int) -> int:
    return stack.query(f"SELECT COUNT(*) FROM sandbox_knote WHERE entity_id = {lead_id}")[0][0]


def step_recorded(name: str):
    return lambda rows: bool(rows) and f'"{name}"' in str(rows[0][0]).replace("'", '"')


def kill_and_restart(stack: Stack, lead_id: int) -> float:
    """Kill the workers, start them again, and measure until the deal is finished."""
    stack.kill_clusters()
    stack.restart_clusters()
    return stack.wait_for(status(lead_id), lambda rows: rows == [("succeeded",)], RECOVERY_LIMIT)


def test_a_worker_killed_mid_order_or_mid_write_back_resumes_within_a_minute(stack):
    # Mid-order: Zuora takes 4 s to answer the order; the worker dies while it waits.
    stack.fault(service="zuora", kind="latency", path_prefix="/v1/orders$", latency_ms=4000, remaining=1)
    stack.win(ACME_EXPANSION)
    stack.wait_for(steps_of(ACME_EXPANSION), step_recorded("lead"), 30)
    time.sleep(1.5)
    mid_order = kill_and_restart(stack, ACME_EXPANSION)
    assert subscriptions(stack, ACME_EXPANSION) == 1 and notes(stack, ACME_EXPANSION) == 1

    # Mid-write-back: Kommo takes 4 s to answer the lead fields' PATCH.
    stack.fault(service="kommo", kind="latency", method="PATCH", path_prefix="/api/v4/leads/", latency_ms=4000)
    stack.win(SOLO)
    stack.wait_for(steps_of(SOLO), step_recorded("order"), 30)
    time.sleep(1.0)
    mid_write_back = kill_and_restart(stack, SOLO)
    assert subscriptions(stack, SOLO) == 1 and notes(stack, SOLO) == 1
    print(f"recovered after SIGKILL: mid-order {mid_order:.1f} s, mid-write-back {mid_write_back:.1f} s")
    assert mid_order < RECOVERY_LIMIT and mid_write_back < RECOVERY_LIMIT


def test_a_due_retry_starts_within_seconds_of_its_time(tmp_path, db):
    stack = Stack(tmp_path, ZKBRIDGE_RETRY_BASE_SECONDS="5")
    try:
        stack.start()
        stack.fault(service="kommo", kind="http500", method="POST", path_prefix="/api/v4/leads/notes", remaining=1)
        stack.win(ACME_EXPANSION)
        sql = f"SELECT status, next_attempt_at FROM sync_syncrecord WHERE key = 'deal_won:{ACME_EXPANSION}'"
        stack.wait_for(sql, lambda rows: bool(rows) and rows[0][0] == "retrying", 30)
        due = stack.query(sql)[0][1]
        stack.wait_for(status(ACME_EXPANSION), lambda rows: rows == [("succeeded",)], 30)
        started = stack.query(f"SELECT started_at FROM sync_syncrecord WHERE key = 'deal_won:{ACME_EXPANSION}'")[0][0]
        late = (parse(started) - parse(due)).total_seconds()
        print(f"retry due at {due}, started {late:.2f} s later")
        assert 0 <= late < 3
        assert notes(stack, ACME_EXPANSION) == 1
    finally:
        stack.stop()


def parse(value):
    """A timestamp as SQLite or PostgreSQL returns it."""
    import datetime as dt

    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
