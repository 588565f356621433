"""sync_catalog mirrors Zuora's catalog page by page; a failure leaves the previous mirror intact."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.models import Product, ProductRatePlan, ProductRatePlanCharge, UnitOfMeasure, uom_decimal_places
from sandbox.models import ZProduct, ZRatePlan, ZUnitOfMeasure


def test_catalog_is_mirrored_with_dates_tiers_and_currencies(emulators, capsys):
    call_command("sync_catalog", "--page-size", "1")
    out = capsys.readouterr().out
    assert "Catalog mirrored from 2 page(s)" in out and "ProductRatePlan: 7 created" in out
    growth = ProductRatePlan.objects.get(name="Growth")
    assert growth.currencies() == {"USD", "EUR"} and str(growth.effective_start) == "2026-07-01"
    usage = ProductRatePlanCharge.objects.get(name="API calls")
    assert usage.charge_model == "Tiered" and usage.uom == "API call"
    # as Zuora's catalog answers them (zuora-sdk: "Decimal defining end of tier range", a string)
    assert [t["endingUnit"] for t in usage.price_in("USD")["tiers"]] == ["10000", "100000", None]


def test_units_of_measure_are_mirrored_with_their_decimal_places(emulators):
    call_command("sync_catalog", verbosity=0)
    assert dict(UnitOfMeasure.objects.values_list("name", "decimal_places")) == {"Seat": 0, "API call": 0, "GB": 2}
    ZUnitOfMeasure.objects.filter(name="GB").update(decimal_places=3)
    ZUnitOfMeasure.objects.filter(name="Seat").delete()
    call_command("sync_catalog", verbosity=0)
    assert UnitOfMeasure.objects.get(name="GB").decimal_places == 3
    assert UnitOfMeasure.objects.get(name="Seat").removed_at is not None
    assert uom_decimal_places("Seat") is None  # Zuora no longer has it: not guessed


def test_an_api_user_that_may_not_read_units_keeps_the_mirrored_ones(emulators, settings):
    call_command("sync_catalog", verbosity=0)
    emulators.fault("zuora", "success_false", "/v1/action/query", reason_code=50000040, reason_message="no access")
    ZUnitOfMeasure.objects.filter(name="GB").update(decimal_places=4)
    call_command("sync_catalog", verbosity=0)  # the catalog itself is mirrored; the units stay as they were
    assert UnitOfMeasure.objects.get(name="GB").decimal_places == 2
    settings.ZKBRIDGE_UOM_DECIMAL_PLACES = {"Liter": 3}
    assert uom_decimal_places("Liter") == 3 and uom_decimal_places("GB") == 2  # the mirrored unit wins


def test_a_second_run_updates_and_marks_what_disappeared(emulators, capsys):
    call_command("sync_catalog", verbosity=0)
    ZRatePlan.objects.filter(name="Starter").update(name="Starter 2026")
    ZRatePlan.objects.filter(name="Onboarding").delete()
    call_command("sync_catalog")
    out = capsys.readouterr().out
    assert "1 no longer in Zuora" in out
    assert ProductRatePlan.objects.filter(name="Starter 2026").exists()
    gone = ProductRatePlan.objects.get(name="Onboarding")
    assert gone.removed_at is not None  # kept: a mapping or subscription may still point at it


def test_a_failing_page_leaves_the_previous_mirror_intact(emulators):
    call_command("sync_catalog", verbosity=0)
    before = list(ProductRatePlan.objects.values_list("zuora_id", "name", "removed_at"))
    ZProduct.objects.filter(name="API Usage").update(name="Renamed")
    emulators.fault("zuora", "http500", "/v1/catalog/products", remaining=10)
    with pytest.raises(CommandError, match="previous mirror is unchanged"):
        call_command("sync_catalog", "--page-size", "1", verbosity=0)
    assert list(ProductRatePlan.objects.values_list("zuora_id", "name", "removed_at")) == before
    assert not Product.objects.filter(name="Renamed").exists()


def test_query_count_does_not_grow_with_the_catalog(emulators):
    from catalog.mirror import apply_catalog

    def catalog(n: int, prefix: str) -> list[dict]:
        return [
            {
                "id": f"{prefix}{i}",
                "name": f"P{i}",
                "effectiveStartDate": "2020-01-01",
                "effectiveEndDate": "2099-12-31",
                "productRatePlans": [
                    {
                        "id": f"{prefix}{i}r{j}",
                        "name": f"R{j}",
                        "effectiveStartDate": "2020-01-01",
                        "effectiveEndDate": "2099-12-31",
                        "productRatePlanCharges": [
                            {
                                "id": f"p{i}r{j}c{k}",
                                "name": f"C{k}",
                                "type": "Recurring",
                                "model": "FlatFee",
                                "pricing": [{"currency": "USD", "price": 1}],
                            }
                            for k in range(2)
                        ],
                    }
                    for j in range(2)
                ],
            }
            for i in range(n)
        ]

    counts = []
    for size, prefix in ((5, "a"), (50, "b"), (5, "a"), (50, "b")):  # all new, then all updated
        with CaptureQueriesContext(connection) as queries:
            apply_catalog(catalog(size, prefix))
        counts.append(len(queries))
    # No per-row queries: ten times the catalog costs at most a few more bulk batches (SQLite splits
    # statements at 999 variables; PostgreSQL sends 500 rows a statement).
    assert counts[1] - counts[0] <= 4 and counts[3] - counts[2] <= 4, counts


def test_page_size_is_checked(db):
    with pytest.raises(CommandError, match="between 1 and 40"):
        call_command("sync_catalog", "--page-size", "0")
