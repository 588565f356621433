"""sellable_on: the one answer to "can this plan be sold on date D in currency C?", at its boundaries."""

from __future__ import annotations

import datetime as dt

import pytest

from catalog.models import Product, ProductRatePlan, ProductRatePlanCharge
from catalog.sellable import Unsellable, sellable_on, status_label

D = dt.date


@pytest.fixture
def plan(db) -> ProductRatePlan:
    product = Product.objects.create(
        zuora_id="p", name="Platform", effective_start=D(2020, 1, 1), effective_end=D(2099, 12, 31)
    )
    plan = ProductRatePlan.objects.create(
        zuora_id="r", product=product, name="Growth", effective_start=D(2026, 7, 1), effective_end=D(2027, 6, 30)
    )
    ProductRatePlanCharge.objects.create(
        zuora_id="c",
        rate_plan=plan,
        name="Seats",
        charge_type="Recurring",
        charge_model="PerUnit",
        pricing=[{"currency": "USD", "price": "120"}],
    )
    return plan


@pytest.mark.parametrize(
    "day, code, words",
    [
        (D(2026, 6, 30), Unsellable.NOT_YET_EFFECTIVE, "not yet effective on 2026-06-30 (sellable from 2026-07-01)"),
        (D(2026, 7, 1), None, ""),  # first effective day
        (D(2027, 6, 30), None, ""),  # last effective day
        (D(2027, 7, 1), Unsellable.RETIRED, "retired on 2027-06-30"),
    ],
)
def test_effective_dates_are_inclusive_at_both_ends(plan, day, code, words):
    verdict = sellable_on(plan, day, "USD")
    assert verdict.ok is (code is None) and verdict.code == code and words in verdict.reason
    assert verdict.ended is (code == Unsellable.RETIRED)


def test_a_currency_without_a_price_is_refused_with_the_currencies_it_has(plan):
    verdict = sellable_on(plan, D(2026, 8, 1), "EUR")
    assert not verdict.ok and "no price in EUR" in verdict.reason and "priced in USD" in verdict.reason
    assert verdict.code == Unsellable.NO_PRICE and not verdict.ended


def test_the_product_dates_bound_the_plan(plan):
    Product.objects.filter(id=plan.product_id).update(effective_end=D(2026, 12, 31))
    plan.refresh_from_db()
    assert "product 'Platform' retired on 2026-12-31" in sellable_on(plan, D(2027, 1, 1)).reason


def test_retires_soon_within_thirty_days(plan):
    assert sellable_on(plan, D(2027, 5, 31)).retires_on == D(2027, 6, 30)  # 30 days before
    assert sellable_on(plan, D(2027, 5, 30)).retires_on is None  # 31 days before
    assert status_label(plan, D(2027, 6, 1)) == "retires 2027-06-30"


def test_a_plan_zuora_no_longer_lists_is_not_sellable(plan):
    ProductRatePlan.objects.filter(id=plan.id).update(removed_at=dt.datetime(2026, 9, 1, tzinfo=dt.UTC))
    plan.refresh_from_db()
    verdict = sellable_on(plan, D(2026, 10, 1), "USD")
    assert not verdict.ok and "no longer in Zuora" in verdict.reason
    assert verdict.code == Unsellable.REMOVED and verdict.ended
    assert status_label(plan, D(2026, 10, 1)) == "removed from Zuora"


def test_badges(plan):
    assert status_label(plan, D(2026, 1, 1)) == "not yet effective"
    assert status_label(plan, D(2026, 8, 1)) == "sellable"
    assert status_label(plan, D(2028, 1, 1)) == "retired"
