"""sync_catalog on a large catalog from the Zuora emulator: time, pages and zkbridge's own queries.

    .venv/bin/python bench/catalog_sync.py [--products 1000] [--plans 5] [--charges 4] [--database-url URL]

The emulator serves pages of 40 products over HTTP (runserver); the sync runs in this process so its
database queries can be counted. Run twice: the first run creates every row, the second updates them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import tracemalloc

from harness import bench_env, django_setup, running_zkbridge


def arrange(products: int, plans: int, charges: int) -> None:
    from sandbox.models import ZProduct, ZRatePlan

    ZRatePlan.objects.all().delete()
    ZProduct.objects.all().delete()
    start, end = dt.date(2020, 1, 1), dt.date(2099, 12, 31)
    made = ZProduct.objects.bulk_create(
        [
            ZProduct(zid=f"P{p:05d}", sku=f"SKU-{p}", name=f"Product {p}", effective_start=start, effective_end=end)
            for p in range(products)
        ]
    )
    ZRatePlan.objects.bulk_create(
        [
            ZRatePlan(
                zid=f"P{p.id:05d}R{r}",
                product=p,
                name=f"Plan {r}",
                effective_start=start,
                effective_end=end,
                charges=[
                    {
                        "id": f"P{p.id:05d}R{r}C{c}",
                        "name": f"Charge {c}",
                        "type": "Recurring",
                        "model": "Tiered" if c == 3 else "PerUnit",
                        "uom": "Seat",
                        "billingPeriod": "Month",
                        "defaultQuantity": 1,
                        "pricing": [
                            {
                                "currency": cur,
                                "price": "10",
                                "tiers": [
                                    {"tier": 1, "startingUnit": 0, "endingUnit": 100, "price": 1},
                                    {"tier": 2, "startingUnit": 101, "endingUnit": None, "price": 0.5},
                                ]
                                if c == 3
                                else [],
                            }
                            for cur in ("USD", "EUR")
                        ],
                    }
                    for c in range(charges)
                ],
            )
            for p in made
            for r in range(plans)
        ],
        batch_size=500,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--plans", type=int, default=5)
    parser.add_argument("--charges", type=int, default=4)
    parser.add_argument("--database-url")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    env = bench_env(args.port, args.database_url)
    with running_zkbridge(env, workers=False):
        django_setup(env)
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from catalog.models import ProductRatePlanCharge
        from sync.catalog_sync import sync_catalog

        arrange(args.products, args.plans, args.charges)
        for label in ("first run (creates)", "second run (updates)"):
            tracemalloc.start()
            started = time.monotonic()
            with CaptureQueriesContext(connection) as queries:
                run = sync_catalog()
            elapsed = time.monotonic() - started
            peak = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
            assert run.ok, run.error
            own = [q for q in queries if "django_q" not in q["sql"] and "sync_apicall" not in q["sql"]]
            print(
                f"{label}: {elapsed:.1f} s, {run.pages} pages, {len(own)} catalog queries "
                f"({len(queries)} with API call logging), peak Python memory {peak:.0f} MB"
            )
        print(
            f"charges mirrored: {ProductRatePlanCharge.objects.count()} "
            f"({args.products} products × {args.plans} plans × {args.charges} charges); {connection.vendor}"
        )


if __name__ == "__main__":
    main()
