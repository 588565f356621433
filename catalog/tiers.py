"""Negotiated usage tiers: read in the CRM's form, converted to Zuora's.

CRMs and CPQ tools write tiers with an exclusive upper bound — `0-185:0.10;185-999:0.08;999+:0.05` bills
units 0 up to (not including) 185 at 0.10 — while Zuora's tiers are inclusive at both ends. Zuora's own CPQ
connector converts by lowering each upper bound by the unit of measure's smallest step (the last, open tier
unchanged), or by option by raising each next lower bound instead:

    0-185, 185-999, 999+   (CRM, whole units)
    0-184, 185-998, 999+   lower the upper bound (default)
    0-185, 186-999, 1000+  raise the next lower bound

With two decimal places the step is 0.01: 0-184.99, 185-998.99, 999+ (or 0-185, 185.01-999, 999.01+).
Pure functions: no database, no Zuora. Every refusal says exactly what is wrong and where.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

LOWER_UPPER = "lower_upper"
RAISE_LOWER = "raise_lower"
POLICIES = [
    (LOWER_UPPER, "lower each upper bound by one step (Zuora CPQ's default)"),
    (RAISE_LOWER, "raise each next lower bound by one step"),
]
MAX_TIERS = 50
MAX_TEXT = 2000


class TierError(ValueError):
    """Tiers that cannot be billed as written; the message names the problem."""


@dataclass(frozen=True)
class Tier:
    start: Decimal
    end: Decimal | None  # None: open ("999+")
    price: Decimal

    def bounds(self) -> str:
        return f"{plain(self.start)}+" if self.end is None else f"{plain(self.start)}-{plain(self.end)}"


def plain(value: Decimal) -> str:
    """185, 184.99, 0.10 — as people write numbers: no exponent, no trailing zeros past the point."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _number(text: str, what: str, where: str) -> Decimal:
    cleaned = text.strip()
    if not re.fullmatch(r"-?\d+(\.\d+)?", cleaned):
        raise TierError(f"{where}: {what} {text.strip()!r} is not a number")
    try:
        return Decimal(cleaned)
    except InvalidOperation:  # pragma: no cover - the pattern admits only what Decimal reads
        raise TierError(f"{where}: {what} {text.strip()!r} is not a number") from None


def parse(text: str) -> list[Tier]:
    """The CRM form, `start-end:price` tiers separated by `;`, the last `start+:price` (open). Spaces and a
    trailing `;` are ignored; a newline separates tiers as `;` does. Checked as a whole: see `check_crm`."""
    if len(text) > MAX_TEXT:
        raise TierError(f"the tiers are longer than {MAX_TEXT} characters")
    parts = [p.strip() for p in re.split(r"[;\n]", text) if p.strip()]
    if not parts:
        raise TierError("no tiers: write them as 0-185:0.10;185-999:0.08;999+:0.05")
    if len(parts) > MAX_TIERS:
        raise TierError(f"{len(parts)} tiers: at most {MAX_TIERS}")
    tiers = []
    for number, part in enumerate(parts, start=1):
        where = f"tier {number} ({part!r})"
        bounds, colon, price_text = part.partition(":")
        if not colon:
            raise TierError(f"{where}: no price (write start-end:price, or start+:price for the last)")
        bounds = bounds.strip()
        price = _number(price_text, "the price", where)
        if bounds.endswith("+"):
            start, end = _number(bounds[:-1], "the lower bound", where), None
        else:
            low, dash, high = bounds.partition("-")
            if not dash or not low.strip():  # "-5" (a negative bound) reads as a missing lower bound
                raise TierError(f"{where}: bounds must read start-end (or start+ for the last tier)")
            start, end = _number(low, "the lower bound", where), _number(high, "the upper bound", where)
        tiers.append(Tier(start, end, price))
    check_crm(tiers)
    return tiers


def check_crm(tiers: list[Tier]) -> None:
    """CRM tiers as a whole: from a bound of zero or more, each starting where the one before ends (no gap,
    no overlap), each holding units, only the last open, no negative price."""
    if not tiers:
        raise TierError("no tiers")
    for number, tier in enumerate(tiers, start=1):
        where = f"tier {number} ({tier.bounds()})"
        if tier.price < 0:
            raise TierError(f"{where}: the price {tier.price:f} is negative")
        if tier.start < 0:
            raise TierError(f"{where}: the lower bound is negative")
        if tier.end is None and number < len(tiers):
            raise TierError(f"{where}: only the last tier may be open (start+)")
        if tier.end is not None and tier.end <= tier.start:
            raise TierError(f"{where}: it holds no units (the upper bound must be above the lower)")
        if number > 1:
            before = tiers[number - 2]
            assert before.end is not None
            if tier.start > before.end:
                raise TierError(
                    f"{where}: a gap after tier {number - 1} — units from {plain(before.end)} up to "
                    f"{plain(tier.start)} have no price (in the CRM form a tier starts where the one before ends)"
                )
            if tier.start < before.end:
                raise TierError(
                    f"{where}: it overlaps tier {number - 1} ({before.bounds()}) — it must start at "
                    f"{plain(before.end)}, where tier {number - 1} ends"
                )
    if tiers[-1].end is not None:
        raise TierError(
            f"the last tier ({tiers[-1].bounds()}) must be open, written {plain(tiers[-1].start)}+:price — "
            "Zuora bills every unit past the last bound at the last tier's price"
        )


def step(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)


def check_precision(tiers: list[Tier], places: int, uom: str = "") -> None:
    """Every bound must be a multiple of the unit's smallest step (Zuora rounds tier quantities to it)."""
    unit = f"the unit {uom!r}" if uom else "the unit"
    whole = "whole units" if places == 0 else f"{places} decimal place{'s' if places > 1 else ''}"
    for number, tier in enumerate(tiers, start=1):
        for bound in (tier.start, tier.end):
            if bound is not None and bound % step(places) != 0:
                raise TierError(
                    f"tier {number} ({tier.bounds()}): the bound {plain(bound)} is finer than {unit} allows ({whole})"
                )


def to_zuora(tiers: list[Tier], places: int, policy: str = LOWER_UPPER, uom: str = "") -> list[dict]:
    """CRM tiers → Zuora's inclusive tiers (as the Orders API's charge overrides take them)."""
    check_crm(tiers)
    check_precision(tiers, places, uom)
    if policy not in (LOWER_UPPER, RAISE_LOWER):
        raise TierError(f"unknown tier policy {policy!r}")
    unit = step(places)
    converted = []
    for number, tier in enumerate(tiers, start=1):
        start, end = tier.start, tier.end
        if policy == LOWER_UPPER and end is not None:
            end -= unit
        if policy == RAISE_LOWER and number > 1:
            start += unit
        # (a tier holds at least one step — bounds are whole steps and the upper above the lower — so the
        # inclusive form always holds at least one unit: 5-6 becomes 5–5, or 6–6)
        converted.append(
            {
                "tier": number,
                # JSON numbers, exact (Zuora's ChargeTier: startingUnit, endingUnit and price are numbers)
                "startingUnit": Decimal(plain(start)),
                "endingUnit": Decimal(plain(end)) if end is not None else None,
                "price": tier.price,  # as negotiated: prices are never rounded
                "priceFormat": "PerUnit",
            }
        )
    return converted


def describe(tiers: list[dict]) -> str:
    """Zuora tiers as people read them: `0–184: 0.10; 185–998: 0.08; 999+: 0.05`."""
    return "; ".join(
        f"{t['startingUnit']}+: {t['price']}"
        if t.get("endingUnit") in (None, "")
        else f"{t['startingUnit']}–{t['endingUnit']}: {t['price']}"
        for t in tiers
    )
