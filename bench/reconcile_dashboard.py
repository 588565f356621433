"""Reconciliation of 10,000 deals against the emulators, and the dashboard over 100,000 sync records.

    .venv/bin/python bench/reconcile_dashboard.py [--deals 10000] [--records 100000] [--database-url URL]

The emulators serve Kommo's lead list and Zuora's ZOQL over HTTP (runserver); reconciliation runs in this
process so its calls can be counted. The dashboard is timed in-process with Django's test client
(server time: the view and its queries, no network).
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness import bench_env, django_setup, manage, running_zkbridge


def arrange_deals(count: int) -> None:
    """`count` won deals billed in Zuora and synced by zkbridge; one in ten on another plan than mapped."""
    from tests import builders

    deals = range(60_000_000, 60_000_000 + count)
    builders.won_leads(deals)
    builders.billed_in_zuora(deals, plan_of=lambda lead_id: "Growth" if lead_id % 10 == 0 else "Starter")
    builders.synced_records(deals)


def arrange_records(count: int) -> None:
    from tests import builders

    builders.sync_history(count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deals", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--database-url")
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()
    env = bench_env(args.port, args.database_url, KOMMO_REQUESTS_PER_SECOND="7")
    with running_zkbridge(env, workers=False):
        manage(env, "demo_setup", "--connect")
        django_setup(env)
        from django.db import connection

        from sync.reconcile import run_reconciliation

        arrange_deals(args.deals)
        started = time.monotonic()
        run = run_reconciliation()
        elapsed = time.monotonic() - started
        assert run.ok, run.error
        s = run.summary
        print(
            f"reconciliation: {s['won_deals']} won deals, {s['zuora_subscriptions']} subscriptions in "
            f"{elapsed:.1f} s; {s['zuora_calls']} Zuora calls, {s['kommo_calls']} Kommo calls; "
            f"{s['discrepancies']} discrepancies ({s.get('wrong_plan', 0)} wrong plan); {connection.vendor}"
        )

        from django.contrib.auth.models import User
        from django.test import Client
        from django.test.utils import CaptureQueriesContext

        arrange_records(args.records)
        from zkbridge.warmup import warm

        warm()  # as each gunicorn worker does at its start (zkbridge/wsgi.py)
        client = Client()
        client.force_login(User.objects.create_superuser("bench", password="x"))
        times = []
        for _ in range(7):
            started = time.perf_counter()
            with CaptureQueriesContext(connection) as queries:
                response = client.get("/admin/", HTTP_HOST="127.0.0.1")
            times.append(time.perf_counter() - started)
            assert response.status_code == 200 and b"zk-dashboard" in response.content, response.content[:300]
        print(
            f"dashboard over {args.records + args.deals:,} sync records: median {statistics.median(times) * 1000:.0f}"
            f" ms, max {max(times) * 1000:.0f} ms, {len(queries)} queries"
        )


if __name__ == "__main__":
    main()
