"""The one answer to "can this rate plan be sold on date D in currency C?" — and why not.

The admin, the won flow, the plan map and the reports all call `sellable_on`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from catalog.models import ProductRatePlan

RETIRES_SOON_DAYS = 30


@dataclass(frozen=True)
class Sellability:
    ok: bool
    reason: str = ""
    # Set when sellable but retiring within RETIRES_SOON_DAYS of the date asked about.
    retires_on: dt.date | None = None

    @property
    def retires_soon(self) -> bool:
        return self.retires_on is not None


def sellable_on(plan: ProductRatePlan, day: dt.date, currency: str | None = None) -> Sellability:
    """Effective dates are inclusive at both ends (first and last effective day are sellable)."""
    product = plan.product
    if plan.removed_at or product.removed_at:
        return Sellability(False, f"rate plan '{plan}' is no longer in Zuora's catalog")
    for start, end, what in (
        (product.effective_start, product.effective_end, f"product '{product.name}'"),
        (plan.effective_start, plan.effective_end, f"rate plan '{plan}'"),
    ):
        if day < start:
            return Sellability(False, f"{what} is not yet effective on {day:%Y-%m-%d} (sellable from {start:%Y-%m-%d})")
        if day > end:
            return Sellability(False, f"{what} retired on {end:%Y-%m-%d}")
    if currency:
        charges = list(plan.charges.all())
        if not charges:
            return Sellability(False, f"rate plan '{plan}' has no charges")
        missing = [c.name for c in charges if c.removed_at is None and c.price_in(currency) is None]
        if missing:
            return Sellability(
                False,
                f"rate plan '{plan}' has no price in {currency} "
                f"(charges: {', '.join(missing)}; priced in "
                f"{', '.join(sorted(plan.currencies())) or 'nothing'})",
            )
    end = min(plan.effective_end, product.effective_end)
    soon = end if (end - day).days <= RETIRES_SOON_DAYS else None
    return Sellability(True, retires_on=soon)


def status_label(plan: ProductRatePlan, day: dt.date) -> str:
    """A badge for the admin: sellable / retires soon / retired / not yet effective / removed."""
    verdict = sellable_on(plan, day)
    if verdict.ok:
        return f"retires {verdict.retires_on:%Y-%m-%d}" if verdict.retires_soon else "sellable"
    if plan.removed_at or plan.product.removed_at:
        return "removed from Zuora"
    if "not yet effective" in verdict.reason:
        return "not yet effective"
    return "retired"
