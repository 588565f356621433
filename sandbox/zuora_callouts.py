"""The Zuora tenant's callout notifications: a payment run's outcome posted, as Zuora's notifications do, to the
URL the tenant's notification names (the sandbox setting `zuora_callout`: {url, username, password}), with the
merge fields zkbridge's notification template asks for (docs/api.md, "Zuora callouts")."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal

import requests

from sandbox.common import get_setting
from sandbox.models import ZAccount

log = logging.getLogger("zkbridge.sandbox")


def send(event_type: str, account: ZAccount, amount: Decimal, subscription_number: str = "") -> str:
    """Post one callout; what happened, in words (the demo page shows it)."""
    target = get_setting("zuora_callout")
    if not target or not target.get("url"):
        return "no callout notification is set up in this tenant"
    body = {
        "eventType": event_type,
        "accountNumber": account.account_number,
        "crmId": account.crm_id,
        "subscriptionNumber": subscription_number,
        "amount": str(amount),
        "currency": account.currency,
    }
    auth = (target["username"], target["password"]) if target.get("username") else None
    try:
        answer = requests.post(
            target["url"],
            json=body,
            auth=auth,
            headers={"Zuora-Notification-Id": uuid.uuid4().hex},
            timeout=10,
        )
    except requests.RequestException as exc:
        log.warning("sandbox zuora: callout to %s failed: %s", target["url"], exc)
        return f"the callout could not be delivered ({type(exc).__name__})"
    return f"callout {event_type} delivered (HTTP {answer.status_code})"
