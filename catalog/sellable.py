"""The one answer to "can this rate plan be sold on date D in currency C?" — and why not.

The admin, the won flow, the plan map and the reports all call `sellable_on`. A refusal carries a code
(`Unsellable`) for code to act on, and words for people: callers decide by the code, never by the words.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from catalog.models import ProductRatePlan

RETIRES_SOON_DAYS = 30


class Unsellable(enum.StrEnum):
    """Why a plan cannot be sold."""

    REMOVED = "removed"  # Zuora no longer lists it
    NOT_YET_EFFECTIVE = "not_yet_effective"
    RETIRED = "retired"
    NO_CHARGES = "no_charges"
    NO_PRICE = "no_price"  # not priced in the currency asked about


@dataclass(frozen=True)
class Sellability:
    ok: bool
    reason: str = ""
    code: Unsellable | None = None
    # Set when sellable but retiring within RETIRES_SOON_DAYS of the date asked about.
    retires_on: dt.date | None = None

    @property
    def retires_soon(self) -> bool:
        return self.retires_on is not None

    @property
    def ended(self) -> bool:
        """No longer sellable for good (retired or removed), as opposed to not yet, or not in a currency."""
        return self.code in (Unsellable.RETIRED, Unsellable.REMOVED)


def refused(code: Unsellable, reason: str) -> Sellability:
    return Sellability(False, reason, code)


def sellable_on(plan: ProductRatePlan, day: dt.date, currency: str | None = None) -> Sellability:
    """Effective dates are inclusive at both ends (first and last effective day are sellable)."""
    product = plan.product
    if plan.removed_at or product.removed_at:
        return refused(Unsellable.REMOVED, f"rate plan '{plan}' is no longer in Zuora's catalog")
    for start, end, what in (
        (product.effective_start, product.effective_end, f"product '{product.name}'"),
        (plan.effective_start, plan.effective_end, f"rate plan '{plan}'"),
    ):
        if day < start:
            return refused(
                Unsellable.NOT_YET_EFFECTIVE,
                f"{what} is not yet effective on {day:%Y-%m-%d} (sellable from {start:%Y-%m-%d})",
            )
        if day > end:
            return refused(Unsellable.RETIRED, f"{what} retired on {end:%Y-%m-%d}")
    if currency:
        charges = list(plan.charges.all())
        if not charges:
            return refused(Unsellable.NO_CHARGES, f"rate plan '{plan}' has no charges")
        missing = [c.name for c in charges if c.removed_at is None and c.price_in(currency) is None]
        if missing:
            return refused(
                Unsellable.NO_PRICE,
                f"rate plan '{plan}' has no price in {currency} "
                f"(charges: {', '.join(missing)}; priced in "
                f"{', '.join(sorted(plan.currencies())) or 'nothing'})",
            )
    end = min(plan.effective_end, product.effective_end)
    soon = end if (end - day).days <= RETIRES_SOON_DAYS else None
    return Sellability(True, retires_on=soon)


LABELS = {
    Unsellable.REMOVED: "removed from Zuora",
    Unsellable.NOT_YET_EFFECTIVE: "not yet effective",
    Unsellable.RETIRED: "retired",
}


def status_label(plan: ProductRatePlan, day: dt.date) -> str:
    """A badge for the admin: sellable / retires soon / retired / not yet effective / removed."""
    verdict = sellable_on(plan, day)
    if verdict.ok:
        return f"retires {verdict.retires_on:%Y-%m-%d}" if verdict.retires_soon else "sellable"
    return LABELS.get(verdict.code, "retired") if verdict.code else "retired"
