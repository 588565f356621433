"""Reading Zuora's HTTP callouts: the JSON body template of ../shared/CONTRACT.md (flat or nested),
Basic credentials as Zuora sends them, and the optional HMAC-SHA256 signature."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sync.webhooks import values

ALIASES = {
    "PaymentDeclined": "PaymentProcessingError",
    "SubscriptionCancelled": "SubscriptionCanceled",
}
KNOWN = {
    "PaymentProcessed",
    "PaymentProcessingError",
    "SubscriptionCanceled",
    "SubscriptionRenewed",
    "ContractRenewalReminder",
}
MAX_AMOUNT = Decimal("1e12")


class BadCallout(ValueError):
    """The body is not a callout zkbridge can read; the message says why, briefly."""


@dataclass(frozen=True)
class BillingEvent:
    event_type: str  # canonical name (aliases resolved); unknown types are kept as sent
    account_number: str
    crm_id: str
    subscription_number: str
    amount: str  # Decimal as text ("" when the event has none)
    currency: str

    @property
    def known(self) -> bool:
        return self.event_type in KNOWN

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _text(value: Any, name: str, limit: int = 100) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise BadCallout(f"{name} must be a text value")
    text = str(value).strip()  # NUL and lone surrogates were refused with the whole body (values.load_json)
    # Zuora leaves a merge field it cannot fill as the literal "<Account.CrmId>": treat it as empty.
    if text.startswith("<") and text.endswith(">"):
        return ""
    if len(text) > limit:
        raise BadCallout(f"{name} is longer than {limit} characters")
    return text


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    """The nested body form's sections ({"Account": {...}}); empty when absent or not an object."""
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def parse(body: bytes) -> BillingEvent:
    try:
        data = values.json_body(body, "the body is not JSON (configure the callout body as in docs/api.md)")
    except ValueError as exc:
        raise BadCallout(str(exc)) from None
    if not isinstance(data, dict):
        raise BadCallout("the body must be a JSON object, not a " + type(data).__name__)
    event_type = _text(data.get("eventType"), "eventType", 60)
    if not event_type:
        raise BadCallout("eventType is missing")
    account, payment, subscription = (
        _section(data, "Account"),
        _section(data, "Payment"),
        _section(data, "Subscription"),
    )
    raw_amount = data.get("amount", payment.get("amount", payment.get("Amount")))
    amount = ""
    if raw_amount not in (None, "") and not (isinstance(raw_amount, str) and raw_amount.startswith("<")):
        if isinstance(raw_amount, bool):
            raise BadCallout("amount must be a number")
        try:
            number = Decimal(str(raw_amount).replace(",", ""))
        except InvalidOperation:
            raise BadCallout(f"amount {str(raw_amount)[:30]!r} is not a number") from None
        if not number.is_finite() or abs(number) >= MAX_AMOUNT:
            raise BadCallout("amount is not a plausible sum of money")
        amount = str(number)
    currency = _text(data.get("currency", account.get("Currency", account.get("currency"))), "currency", 3).upper()
    if currency and not currency.isalpha():
        raise BadCallout("currency must be a three-letter code")
    return BillingEvent(
        event_type=ALIASES.get(event_type, event_type),
        account_number=_text(
            data.get("accountNumber", account.get("AccountNumber", account.get("accountNumber"))), "accountNumber", 50
        ),
        crm_id=_text(data.get("crmId", account.get("crmId", account.get("CrmId"))), "crmId"),
        subscription_number=_text(
            data.get(
                "subscriptionNumber", subscription.get("SubscriptionNumber", subscription.get("subscriptionNumber"))
            ),
            "subscriptionNumber",
            50,
        ),
        amount=amount,
        currency=currency,
    )


def basic_credentials(header: str) -> tuple[str, str] | None:
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # not base64 (non-ASCII included), or not UTF-8 once decoded
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def credentials_match(header: str, username: str, password: str) -> bool:
    given = basic_credentials(header)
    if given is None:
        return False
    # Both compared, always, in constant time: no early exit that times the username.
    user_ok = hmac.compare_digest(given[0].encode(), username.encode())
    password_ok = hmac.compare_digest(given[1].encode(), password.encode())
    return user_ok and password_ok


def signature_valid(body: bytes, signature: str, key: str) -> bool:
    """HMAC-SHA256 of the raw body, sent hex- or base64-encoded (Zuora lets the admin choose)."""
    digest = hmac.new(key.encode(), body, hashlib.sha256).digest()
    signature = signature.strip()
    if signature.lower().startswith("sha256="):
        signature = signature[7:]
    candidates = [digest.hex(), base64.b64encode(digest).decode()]
    return any(hmac.compare_digest(signature.encode(), c.encode()) for c in candidates)
