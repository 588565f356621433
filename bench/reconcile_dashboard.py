"""Reconciliation of 10,000 deals against the emulators, and the dashboard over 100,000 sync records.

    .venv/bin/python bench/reconcile_dashboard.py [--deals 10000] [--records 100000] [--database-url URL]

The emulators serve Kommo's lead list and Zuora's ZOQL over HTTP (runserver); reconciliation runs in this
process so its calls can be counted. The dashboard is timed in-process with Django's test client
(server time: the view and its queries, no network).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

from harness import bench_env, django_setup, manage, running_zkbridge


def arrange_deals(count: int) -> None:
    from sandbox.demo import zuora_id
    from sandbox.models import KLead, ZAccount, ZSubscription
    from sync.models import SyncRecord

    KLead.objects.bulk_create(
        [
            KLead(
                id=60_000_000 + n,
                name=f"Deal {n}",
                status_id=142,
                pipeline_id=4520110,
                created_at=0,
                updated_at=0,
                closed_at=0,
                custom_fields_values=[
                    {"field_id": 881234, "values": [{"value": "Starter"}]},
                    {"field_id": 881250, "values": [{"value": f"A6{n:07d}"}]},
                    {"field_id": 881251, "values": [{"value": f"A-S6{n:07d}"}]},
                ],
            )
            for n in range(count)
        ],
        batch_size=2000,
    )
    accounts = ZAccount.objects.bulk_create(
        [
            ZAccount(
                account_number=f"A6{n:07d}",
                name=f"Co {n}",
                currency="USD",
                crm_id=f"company:{n}",
                custom_fields={"KommoId__c": f"company:{n}"},
            )
            for n in range(count)
        ],
        batch_size=2000,
    )
    accounts = list(ZAccount.objects.filter(account_number__startswith="A6").order_by("id"))
    every_tenth_wrong = {n for n in range(0, count, 10)}
    ZSubscription.objects.bulk_create(
        [
            ZSubscription(
                subscription_number=f"A-S6{n:07d}",
                account=accounts[n],
                contract_effective_date="2026-11-01",
                term_start_date="2026-11-01",
                custom_fields={"KommoLeadId__c": str(60_000_000 + n)},
                rate_plans=[
                    {
                        "productRatePlanId": zuora_id("Growth" if n in every_tenth_wrong else "Starter"),
                        "ratePlanName": "x",
                    }
                ],
                order_number="O-1",
            )
            for n in range(count)
        ],
        batch_size=2000,
    )
    SyncRecord.objects.bulk_create(
        [
            SyncRecord(
                kind="deal_won",
                key=f"deal_won:{60_000_000 + n}",
                kommo_lead_id=60_000_000 + n,
                status="succeeded",
                zuora_account_number=f"A6{n:07d}",
                zuora_subscription_number=f"A-S6{n:07d}",
            )
            for n in range(count)
        ],
        batch_size=2000,
    )


def arrange_records(count: int) -> None:
    from django.utils import timezone

    from sync.models import ApiCall, SyncRecord

    now = timezone.now()
    states = ["succeeded"] * 17 + ["failed", "needs_attention", "retrying"]
    SyncRecord.objects.bulk_create(
        [
            SyncRecord(
                kind="deal_won",
                key=f"bench:{n}",
                kommo_lead_id=n,
                status=states[n % len(states)],
                reason="no plan mapping" if n % 20 == 18 else "",
                created_at=now - dt.timedelta(minutes=(n * 37) % (45 * 24 * 60)),
                finished_at=now - dt.timedelta(minutes=(n * 37) % (45 * 24 * 60)),
            )
            for n in range(count)
        ],
        batch_size=5000,
    )
    ApiCall.objects.bulk_create(
        [
            ApiCall(
                provider="zuora" if n % 2 else "kommo",
                method="GET",
                path="/x",
                status=200 if n % 9 else 500,
                duration_ms=120,
                at=now - dt.timedelta(seconds=n * 3),
            )
            for n in range(count // 2)
        ],
        batch_size=5000,
    )


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
