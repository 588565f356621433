"""The Zuora order envelope, written once: who is billed, on which day, without a bill run or a payment
(zkbridge never bills or collects: Zuora's bill runs do), and the preview of an order.

Every flow that writes to Zuora builds its order actions and hands them here; nothing else spells
`processingOptions` or `previewOptions`."""

from __future__ import annotations

import datetime as dt
from typing import Any

# Zuora's Orders API would otherwise be free to bill and collect at once (its default is not to, but a
# tenant's settings can change defaults): zkbridge says so on every order.
NO_BILLING = {"runBilling": False, "collectPayment": False}
# What zkbridge reads from a preview: the charges' MRR and TCV (their deltas for a change), through the term.
PREVIEW = {"previewTypes": ["ChargeMetrics"], "previewThruType": "TermEnd"}
# A quote (before Won) also reads the invoices a bill run through the term's end would make: the first one is
# what the customer pays first.
QUOTE = {"previewTypes": ["ChargeMetrics", "BillingDocs"], "previewThruType": "TermEnd"}


def new_sale(
    on: dt.date,
    *,
    account_number: str | None,
    new_account: dict[str, Any] | None,
    sold: dict[str, Any],
) -> dict[str, Any]:
    """An order that sells (`sold`: its `subscriptions` and `orderLineItems`) to an existing account or to
    the account it creates."""
    if bool(account_number) == bool(new_account):
        raise ValueError("an order bills either an existing account or a new one")
    order: dict[str, Any] = {"orderDate": on.isoformat(), "processingOptions": dict(NO_BILLING)}
    if account_number:
        order["existingAccountNumber"] = account_number
    else:
        order["newAccount"] = new_account
    order.update(sold)
    return order


def change(on: dt.date, *, account_number: str, subscription_number: str, actions: list[dict]) -> dict[str, Any]:
    """An order that changes one existing subscription (plan change, cancellation, migration)."""
    return {
        "orderDate": on.isoformat(),
        "existingAccountNumber": account_number,
        "processingOptions": dict(NO_BILLING),
        "subscriptions": [{"subscriptionNumber": subscription_number, "orderActions": actions}],
    }


def preview(
    order: dict[str, Any], *, account_info: dict[str, Any] | None = None, invoices: bool = False
) -> dict[str, Any]:
    """The preview of `order` (Zuora's preview has no processing options). With `account_info`, the preview
    is made for a stand-in account (`previewAccountInfo`) instead of the order's own; with `invoices`, Zuora
    also previews the invoices (a quote)."""
    body = {k: v for k, v in order.items() if k != "processingOptions"}
    if account_info is not None:
        body.pop("existingAccountNumber", None)
        body.pop("newAccount", None)
        body["previewAccountInfo"] = account_info
    body["previewOptions"] = dict(QUOTE if invoices else PREVIEW)
    return body
