"""Unit tests of the pure rules: business dates, money, and reading a plan map CSV line by line."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from catalog.planmap import ImportResult, _read_lines
from sync.money import format_money
from zkbridge import business_time

UTC = dt.UTC


@pytest.fixture
def berlin(settings):
    settings.ZKBRIDGE_TIME_ZONE = "Europe/Berlin"


def at(monkeypatch, moment: dt.datetime) -> None:
    monkeypatch.setattr(business_time.timezone, "now", lambda: moment)


def test_today_is_the_business_days_date_not_utcs(berlin, monkeypatch):
    at(monkeypatch, dt.datetime(2026, 11, 27, 23, 30, tzinfo=UTC))  # 00:30 on the 28th in Berlin
    assert business_time.business_today() == dt.date(2026, 11, 28)
    at(monkeypatch, dt.datetime(2026, 11, 27, 22, 59, tzinfo=UTC))  # 23:59 on the 27th in Berlin
    assert business_time.business_today() == dt.date(2026, 11, 27)


def test_the_catalog_and_sync_share_the_one_today(berlin, monkeypatch):
    from catalog.models import today

    at(monkeypatch, dt.datetime(2026, 6, 30, 22, 30, tzinfo=UTC))  # already July 1st in Berlin
    assert today() == business_time.business_today() == dt.date(2026, 7, 1)


def test_a_kommo_timestamp_becomes_a_business_date(berlin):
    closed_at = int(dt.datetime(2026, 3, 28, 23, 30, tzinfo=UTC).timestamp())
    assert business_time.date_of_timestamp(closed_at) == dt.date(2026, 3, 29)


def test_a_day_ends_at_2359_in_the_business_zone_across_a_clock_change(berlin):
    end = business_time.end_of_business_day(dt.date(2026, 3, 29))  # the day Berlin moves to summer time
    assert end.astimezone(UTC) == dt.datetime(2026, 3, 29, 21, 59, tzinfo=UTC)
    start = business_time.start_of_business_day(dt.date(2026, 3, 29))
    assert start.astimezone(UTC) == dt.datetime(2026, 3, 28, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "amount, currency, text",
    [
        ("1200", "USD", "$1,200.00"),
        (Decimal("-12.345"), "EUR", "-€12.35"),
        ("0.005", "GBP", "£0.01"),
        (7, "CHF", "7.00 CHF"),
        ("1234567.891", "usd", "$1,234,567.89"),
        ("120000", "JPY", "¥120,000"),  # yen have no decimals
        ("1499.5", "JPY", "¥1,500"),
        ("52000.4", "KRW", "52,000 KRW"),
        ("1.2345", "KWD", "1.235 KWD"),  # three decimals
    ],
)
def test_money_is_formatted_for_people(amount, currency, text):
    assert format_money(amount, currency) == text


def read(text: str) -> tuple[list, ImportResult]:
    result = ImportResult()
    return _read_lines(text, "USD", result), result


def test_a_plan_map_line_becomes_a_mapping_with_its_plans_and_fields():
    rows, result = read(
        "kommo_value,product_rate_plan_id,currency,label,quantity,price,evergreen,active,payment_term\n"
        " Growth ,p1;p2,eur,Growth,10;,;5.5,true,no,Net 30\n"
    )
    assert result.errors == []
    [row] = rows
    assert (row.line, row.kind, row.value, row.currency) == (2, "plan", "Growth", "EUR")
    assert [(i.plan_id, i.quantity, i.price) for i in row.items] == [
        ("p1", Decimal("10"), None),
        ("p2", None, Decimal("5.5")),
    ]
    assert row.fields == {"label": "Growth", "evergreen": True, "active": False, "payment_term": "Net 30"}


def test_columns_left_empty_leave_the_mapping_as_it_is():
    [row], result = read("kommo_value,product_rate_plan_id,label,term_months,active\nGrowth,p1,,,\n")
    assert result.errors == [] and row.fields == {} and row.currency == "USD"


@pytest.mark.parametrize(
    "line, problem",
    [
        (",p1", "line 2: kommo_value is empty"),
        ("Growth,", "line 2: product_rate_plan_id is empty"),
        ("42x,p1,product", "line 2: a Kommo product is named by its catalog element id"),
        ("Growth,p1,plan,-1", "line 2: quantity must be zero or more"),
        ("Growth,p1,plan,NaN", "line 2: quantity must be zero or more"),
        ("Growth,p1,bundle", "line 2: kind must be one of plan, product"),
    ],
)
def test_each_bad_line_is_named(line, problem):
    _, result = read("kommo_value,product_rate_plan_id,kind,quantity\n" + line + "\n")
    assert any(error.startswith(problem) for error in result.errors), result.errors


def test_the_same_value_twice_is_a_duplicate_even_in_other_case_and_spaces():
    _, result = read("kommo_value,product_rate_plan_id\nGrowth,p1\n  GROWTH ,p2\n")
    assert result.errors == ["line 3: duplicate kommo_value 'GROWTH' (USD); first on line 2"]


def test_a_header_with_unknown_or_missing_columns_is_refused_whole():
    rows, result = read("kommo_value,plan,colour\nGrowth,p1,red\n")
    assert rows == [] and result.errors == [
        "line 1: missing column(s) product_rate_plan_id (header must be kommo_value,product_rate_plan_id"
        "[,currency,label,kind,quantity,price,term_months,auto_renew,evergreen,renewal_term_months,payment_term,"
        "active,tier_policy,tiers,entity])",
        "line 1: unknown column(s) plan, colour",
    ]
