"""Moving 10,000 due subscribers off a retired plan: the run's Zuora reads, the moves' drain time and the
peak of concurrent Zuora calls against ZUORA_MAX_CONCURRENT_CALLS.

    .venv/bin/python bench/migrations.py [--due 10000] [--not-due 2000] [--workers 8] [--database-url URL]

zkbridge runs for real (runserver serving the emulators, qcluster workers); the Zuora emulator holds
`--due` subscriptions of "Scale (retiring)" whose term end (termed, half of them) or charged-through date
(evergreen, the other half) is tomorrow, and `--not-due` more that renew later. The migration run (this
process) reads Zuora in bulk and schedules one plan_migration record per due subscriber; the workers send
the orders. Every Zuora call is logged (ApiCall, with its start and duration), so the peak of calls in
flight at once is measured, not assumed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import threading
import time

from harness import bench_env, django_setup, manage, running_zkbridge

DAY = dt.date(2026, 12, 19)
MOMENT = DAY + dt.timedelta(days=1)


def arrange(due: int, not_due: int) -> None:
    from catalog.models import ProductRatePlan
    from sandbox.models import ZAccount, ZRatePlan, ZSubscription

    scale = ZRatePlan.objects.get(name="Scale (retiring)")
    plans = [
        {
            "productRatePlanId": scale.zid,
            "ratePlanName": scale.name,
            "productName": scale.product.name,
            "charges": [
                {
                    "productRatePlanChargeId": c["id"],
                    "name": c["name"],
                    "type": c["type"],
                    "amount": "2500",
                    "mrr": "2500.00",
                    "override": None,
                }
                for c in scale.charges
            ],
        }
    ]
    total = due + not_due
    ZAccount.objects.bulk_create(
        [ZAccount(account_number=f"B{i:08d}", name=f"Legacy {i}", currency="USD") for i in range(total)],
        batch_size=2000,
    )
    accounts = list(ZAccount.objects.filter(account_number__startswith="B").order_by("id"))
    subs = []
    for i, account in enumerate(accounts):
        evergreen = i % 2 == 1
        later = i >= due
        start = dt.date(2025, 12, 20) if not later else dt.date(2026, 1, 15)
        subs.append(
            ZSubscription(
                subscription_number=f"A-B{i:08d}",
                account=account,
                term_type="EVERGREEN" if evergreen else "TERMED",
                initial_term=0 if evergreen else 12,
                contract_effective_date=start,
                term_start_date=start,
                term_end_date=None if evergreen else start.replace(year=start.year + 1),
                # as Zuora has it: a termed subscription's end date is its term end date
                subscription_end_date=None if evergreen else start.replace(year=start.year + 1),
                charged_through_date=MOMENT if evergreen and not later else None,
                rate_plans=plans,
                order_number="O-LEGACY",
            )
        )
    ZSubscription.objects.bulk_create(subs, batch_size=2000)
    assert ProductRatePlan.objects.filter(name="Scale (retiring)").exists()


class SlotGauge(threading.Thread):
    """Samples, every 10 ms, how many of the ZUORA_MAX_CONCURRENT_CALLS slots are held (PostgreSQL advisory
    locks): every Zuora call is made holding one, so this is the number of calls in flight."""

    def __init__(self, slots: int):
        super().__init__(daemon=True)
        from sync.locks import lock_key

        pairs = []
        for slot in range(slots):
            key = lock_key(f"zuora-call:{slot}") & 0xFFFFFFFFFFFFFFFF
            pairs.append(f"({key >> 32}, {key & 0xFFFFFFFF})")
        self.sql = (
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
            f"(classid::bigint, objid::bigint) IN ({', '.join(pairs)})"
        )
        self.peak = 0
        self.samples = 0
        self.running = True

    def run(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            while self.running:
                cursor.execute(self.sql)
                self.peak = max(self.peak, cursor.fetchone()[0])
                self.samples += 1
                time.sleep(0.01)
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--not-due", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--database-url")
    parser.add_argument("--port", type=int, default=8771)
    parser.add_argument("--moves-minutes", type=float, default=60, help="stop watching the moves after this long")
    args = parser.parse_args()
    env = bench_env(args.port, args.database_url, ZKBRIDGE_WORKERS=str(args.workers), ZUORA_MAX_CONCURRENT_CALLS="10")
    with running_zkbridge(env, workers=True):
        manage(env, "demo_setup", "--connect")
        django_setup(env)
        from django.db import connection
        from django.db.models import Count
        from django.utils import timezone

        from catalog.models import ProductRatePlan
        from sync.migration.models import MigrationRule
        from sync.migration.run import run_migrations
        from sync.models import ApiCall, SyncRecord

        arrange(args.due, args.not_due)
        MigrationRule.objects.create(
            source_plan=ProductRatePlan.objects.get(name="Scale (retiring)"),
            target_plan=ProductRatePlan.objects.get(name="Starter"),
            starts_on=dt.date(2026, 11, 1),
        )
        dry_started = time.monotonic()
        dry = run_migrations(DAY, dry_run=True)
        dry_elapsed = time.monotonic() - dry_started
        assert dry.ok, dry.error
        print(
            f"dry run: {dry.summary['moved']} would move, {dry.summary['skipped']} skipped, in {dry_elapsed:.1f} s "
            f"with {dry.summary['zuora_reads']} Zuora reads"
        )
        gauge = SlotGauge(10) if connection.vendor == "postgresql" else None
        if gauge:
            gauge.start()
        started = time.monotonic()
        since = timezone.now()
        run = run_migrations(DAY)
        scheduled = time.monotonic() - started
        assert run.ok, run.error
        print(f"run: {run.summary['moved']} scheduled in {scheduled:.1f} s with {run.summary['zuora_reads']} reads")
        moves = SyncRecord.objects.filter(kind="plan_migration")
        deadline = time.monotonic() + args.moves_minutes * 60
        while moves.filter(status__in=SyncRecord.OPEN).exists() and time.monotonic() < deadline:
            time.sleep(2)
        drained = time.monotonic() - started
        done = moves.filter(status="succeeded").count()
        print(f"moves done: {done} in {drained:.0f} s after the run started ({done / max(drained, 0.001):.1f} moves/s)")
        if gauge:
            gauge.running = False
            gauge.join()
        outcomes = dict(moves.values_list("status").annotate(n=Count("id")))
        calls = ApiCall.objects.filter(provider="zuora", at__gte=since).count()
        peak = f"peak {gauge.peak} in flight over {gauge.samples} samples (cap 10)" if gauge else "peak not sampled"
        print(
            f"moves: {outcomes} drained {drained:.0f} s after the run started "
            f"({args.due / max(drained, 0.001):.0f} moves/s); {calls} Zuora calls, {peak}; "
            f"{args.workers} workers; {connection.vendor}"
        )


if __name__ == "__main__":
    main()
