"""The fault suite: 200 deals won through the live stack (web process, workers, emulators, each in its own
processes) while the emulators fail one call in five at random, as Zuora and Kommo do on a bad day. Every
deal ends in exactly one subscription and one note, within bounded retries, within two minutes."""

from __future__ import annotations

import json
import time

import pytest

from tests.stack import Stack

DEALS = 200
FIRST = 70_000_000
LIMIT_SECONDS = 120
MAX_ATTEMPTS = 25

ZUORA_FAULTS = [  # on the order, the one write a deal makes in Zuora (about 20 % together)
    {"kind": "http500", "probability": 0.05},
    {"kind": "http429", "probability": 0.05, "retry_after": 1},
    {"kind": "timeout", "probability": 0.03, "sleep_seconds": 3},
    {"kind": "success_false", "probability": 0.03, "reason_code": 53100050, "reason_message": "lock contention"},
    {"kind": "drop_after_commit", "probability": 0.04},
]
KOMMO_FAULTS = [  # on every lead call and on the notes (about 20 % together)
    # Certain to strike, whatever the batching (a burst makes few Kommo calls): the first three lead calls
    # fail, and the first notes POST is done but its answer lost.
    {"kind": "http503", "path_prefix": "/api/v4/leads", "remaining": 3},
    {"kind": "drop_after_commit", "path_prefix": "/api/v4/leads/notes", "method": "POST", "remaining": 1},
    {"kind": "http429", "path_prefix": "/api/v4/leads", "probability": 0.05, "retry_after": 1},
    {"kind": "http503", "path_prefix": "/api/v4/leads", "probability": 0.05},
    {"kind": "latency", "path_prefix": "/api/v4/leads", "probability": 0.05, "latency_ms": 800},
    {"kind": "drop_after_commit", "path_prefix": "/api/v4/leads/", "method": "PATCH", "probability": 0.05},
    # a burst's lead fields, 50 leads a PATCH
    {"kind": "drop_after_commit", "path_prefix": "/api/v4/leads$", "method": "PATCH", "probability": 0.05},
    {"kind": "drop_after_commit", "path_prefix": "/api/v4/leads/notes", "method": "POST", "probability": 0.05},
]


@pytest.fixture
def stack(tmp_path, db):
    running = Stack(
        tmp_path,
        ZKBRIDGE_WORKERS="4",
        ZKBRIDGE_RETRY_BASE_SECONDS="1",
        ZKBRIDGE_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
        ZUORA_TIMEOUT_SECONDS="2",
        KOMMO_TIMEOUT_SECONDS="2",
        KOMMO_REQUESTS_PER_SECOND="100",  # correctness under faults here; the 7 a second is tested elsewhere
        ZKBRIDGE_LOG_LEVEL="WARNING",
    )
    try:
        yield running.start()
    finally:
        running.stop()


def test_200_deals_under_20_percent_random_faults_each_end_in_one_subscription_and_one_note(stack):
    stack.control("PUT", "settings", {"kommo_requests_per_second": 100})
    leads = stack.control("POST", "kommo/leads", {"first_id": FIRST, "count": DEALS}).json()["ids"]
    for fault in ZUORA_FAULTS:
        stack.fault(service="zuora", path_prefix="/v1/orders$", **fault)
    for fault in KOMMO_FAULTS:
        stack.fault(service="kommo", **fault)
    started = time.monotonic()
    for lead_id in leads:
        stack.win(lead_id)
    done_sql = "SELECT COUNT(*) FROM sync_syncrecord WHERE key LIKE 'deal_won:7%' AND status = 'succeeded'"
    elapsed = stack.wait_for(done_sql, lambda rows: rows[0][0] == DEALS, LIMIT_SECONDS)
    elapsed = time.monotonic() - started

    records = stack.query(
        f"SELECT kommo_lead_id, attempts, status FROM sync_syncrecord WHERE kommo_lead_id >= {FIRST} "
        "AND kind = 'deal_won'"
    )
    assert len(records) == DEALS and all(status == "succeeded" for _, _, status in records)
    # Kommo reports zkbridge's own field writes as lead updates; when a lost PATCH answer made zkbridge write
    # twice, the report of the first write may come after the deal was billed: it changes nothing (a report
    # still on its way when the last deal succeeded is given a few seconds to be judged).
    settled_sql = (
        f"SELECT COUNT(*) FROM sync_syncrecord WHERE kommo_lead_id >= {FIRST} AND kind != 'deal_won' "
        "AND status IN ('pending', 'running', 'retrying')"
    )
    stack.wait_for(settled_sql, lambda rows: rows[0][0] == 0, 30)
    others = stack.query(
        f"SELECT kind, status FROM sync_syncrecord WHERE kommo_lead_id >= {FIRST} AND kind != 'deal_won'"
    )
    assert all(kind == "plan_change" and status == "ignored" for kind, status in others), others
    assert max(attempts for _, attempts, _ in records) <= MAX_ATTEMPTS
    subscriptions: dict[int, int] = {}
    for (fields,) in stack.query("SELECT custom_fields FROM sandbox_zsubscription"):
        lead = int((json.loads(fields) if isinstance(fields, str) else fields)["KommoLeadId__c"])
        subscriptions[lead] = subscriptions.get(lead, 0) + 1
    assert {lead: subscriptions.get(lead, 0) for lead in leads} == dict.fromkeys(leads, 1)
    notes = dict(
        stack.query(f"SELECT entity_id, COUNT(*) FROM sandbox_knote WHERE entity_id >= {FIRST} GROUP BY entity_id")
    )
    assert notes == dict.fromkeys(leads, 1)
    struck = dict(stack.query("SELECT service, SUM(hits) FROM sandbox_fault GROUP BY service"))
    injected = sum(struck.values())
    retried = sum(attempts - 1 for _, attempts, _ in records)
    print(
        f"fault suite: {DEALS} deals in {elapsed:.1f} s; {injected} faults injected; {retried} retries "
        f"(max {max(a for _, a, _ in records)} attempts for one deal)"
    )
    # The faults did strike: on the orders (one a deal), and on Kommo (a burst writes 50 leads a call, so
    # far fewer Kommo calls are made than deals: the four certain faults at least).
    assert struck["zuora"] > DEALS // 10 and struck["kommo"] >= 4, struck
