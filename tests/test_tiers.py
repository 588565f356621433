"""Negotiated tiers: the CRM's exclusive form read and converted to Zuora's inclusive tiers (catalog/tiers.py).
The emulator's own check (sandbox.zuora_orders.tier_problem, written apart from the converter) judges what the
converter makes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalog.tiers import LOWER_UPPER, RAISE_LOWER, TierError, describe, parse, to_zuora
from sandbox.zuora_orders import tier_problem

NEGOTIATED = "0-185:0.10;185-999:0.08;999+:0.05"


def bounds(tiers: list[dict]) -> list[tuple[str, str | None]]:
    return [(str(t["startingUnit"]), None if t["endingUnit"] is None else str(t["endingUnit"])) for t in tiers]


@pytest.mark.parametrize(
    "places, policy, expected",
    [
        (0, LOWER_UPPER, [("0", "184"), ("185", "998"), ("999", None)]),
        (0, RAISE_LOWER, [("0", "185"), ("186", "999"), ("1000", None)]),
        (2, LOWER_UPPER, [("0", "184.99"), ("185", "998.99"), ("999", None)]),
        (2, RAISE_LOWER, [("0", "185"), ("185.01", "999"), ("999.01", None)]),
    ],
)
def test_crm_tiers_become_zuora_tiers_by_policy_and_precision(places, policy, expected):
    tiers = to_zuora(parse(NEGOTIATED), places, policy)
    assert bounds(tiers) == expected
    assert [str(t["price"]) for t in tiers] == ["0.10", "0.08", "0.05"]  # prices as negotiated, never rounded
    assert [t["tier"] for t in tiers] == [1, 2, 3] and {t["priceFormat"] for t in tiers} == {"PerUnit"}
    assert tier_problem(tiers, places) is None  # what Zuora (its emulator) accepts


def test_two_decimal_bounds_convert_by_one_hundredth():
    tiers = to_zuora(parse("0-10.5:1.25; 10.5-20.25:1; 20.25+:0.5"), 2, LOWER_UPPER)
    assert describe(tiers) == "0–10.49: 1.25; 10.5–20.24: 1; 20.25+: 0.5"


def test_the_text_may_use_spaces_newlines_and_a_trailing_separator():
    assert parse(" 0 - 185 : 0.10 ;\n185+ : 0.08 ;") == parse("0-185:0.10;185+:0.08")


@pytest.mark.parametrize(
    "text, places, words",
    [
        ("0-185:0.10;190-999:0.08;999+:0.05", 0, "a gap after tier 1 — units from 185 up to 190 have no price"),
        ("0-185:0.10;180-999:0.08;999+:0.05", 0, "tier 2 (180-999): it overlaps tier 1 (0-185)"),
        ("0-185.5:0.10;185.5+:0.08", 0, "the bound 185.5 is finer than the unit 'Seat' allows (whole units)"),
        ("0-1.255:0.10;1.255+:0.08", 2, "the bound 1.255 is finer than the unit 'Seat' allows (2 decimal places)"),
        ("0-185:-0.10;185+:0.08", 0, "tier 1 (0-185): the price -0.10 is negative"),
        ("0-185:0.10;185-999:0.08", 0, "the last tier (185-999) must be open, written 185+:price"),
        ("0+:0.10;185+:0.08", 0, "tier 1 (0+): only the last tier may be open"),
        ("0-185:abc;185+:1", 0, "tier 1 ('0-185:abc'): the price 'abc' is not a number"),
        ("0-185;185+:1", 0, "tier 1 ('0-185'): no price"),
        ("ten-185:1;185+:1", 0, "the lower bound 'ten' is not a number"),
        ("-5-185:1;185+:1", 0, "bounds must read start-end"),
        ("185-185:1;185+:1", 0, "tier 1 (185-185): it holds no units"),
        ("", 0, "no tiers: write them as 0-185:0.10"),
        (";".join(f"{n}-{n + 1}:1" for n in range(60)) + ";60+:1", 0, "61 tiers: at most 50"),
    ],
)
def test_tiers_that_cannot_be_billed_are_refused_with_the_exact_problem(text, places, words):
    with pytest.raises(TierError) as refused:
        to_zuora(parse(text), places, LOWER_UPPER, "Seat")
    assert words in str(refused.value)


def test_a_one_unit_tier_keeps_its_one_unit_either_way():
    assert bounds(to_zuora(parse("0-5:1;5-6:2;6+:3"), 0, LOWER_UPPER)) == [("0", "4"), ("5", "5"), ("6", None)]
    assert bounds(to_zuora(parse("0-5:1;5-6:2;6+:3"), 0, RAISE_LOWER)) == [("0", "5"), ("6", "6"), ("7", None)]


@given(
    widths=st.lists(st.integers(min_value=2, max_value=10_000), min_size=0, max_size=8),
    places=st.integers(min_value=0, max_value=4),
    policy=st.sampled_from([LOWER_UPPER, RAISE_LOWER]),
    prices=st.lists(st.decimals(min_value=0, max_value=1000, places=3), min_size=9, max_size=9),
)
def test_every_valid_crm_tiering_converts_to_tiers_zuora_accepts(widths, places, policy, prices):
    step = Decimal(1).scaleb(-places)
    start, parts = Decimal(0), []
    for index, width in enumerate(widths):
        end = start + width * step
        parts.append(f"{start}-{end}:{prices[index]}")
        start = end
    parts.append(f"{start}+:{prices[-1]}")
    crm = parse(";".join(parts))
    tiers = to_zuora(crm, places, policy)
    assert tier_problem(tiers, places) is None
    assert len(tiers) == len(crm) and tiers[-1]["endingUnit"] is None
    # Every unit the CRM priced keeps its price: each CRM tier's first unit lands in the same-numbered tier.
    for crm_tier, tier in zip(crm, tiers, strict=True):
        first_unit = crm_tier.start if policy == LOWER_UPPER or crm_tier is crm[0] else crm_tier.start + step
        assert Decimal(tier["startingUnit"]) == first_unit and Decimal(tier["price"]) == crm_tier.price


def tier(number: int, start: str, end: str | None, price: str = "1") -> dict:
    return {"tier": number, "startingUnit": start, "endingUnit": end, "price": price}


@pytest.mark.parametrize(
    "tiers, words",
    [
        ([tier(1, "0", "185"), tier(2, "185", None)], "must follow the previous tier's endingUnit 185"),
        ([tier(1, "0", "100")], "the last tier must have no endingUnit"),
        ([tier(1, "0", None, "-1")], "must not be negative"),
        ([tier(2, "0", None)], "numbered 1, 2, 3"),
        ([tier(1, "0", "9.5"), tier(2, "10", None)], "9.5 has more decimal places than the unit of measure (0)"),
        (["x"], "must be an object"),
        ([], "must not be empty"),
    ],
)
def test_the_zuora_emulator_refuses_tiers_zuora_would(tiers, words):
    assert words in tier_problem(tiers, 0)
