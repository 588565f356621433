"""Billing event rules: the defaults, template rendering, and where an event belongs in Kommo."""

from __future__ import annotations

import datetime as dt
import string
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from sync.billing.models import BillingEventRule
from sync.models import SyncRecord
from sync.money import format_money
from sync.webhooks.zuora import BillingEvent
from zkbridge.business_time import business_today, end_of_business_day

PLACEHOLDERS = {"amount", "currency", "account", "subscription", "date", "event"}

DEFAULT_RULES: list[dict[str, Any]] = [
    {"event_type": "PaymentProcessed", "note_template": "Zuora: payment of {amount} received on account {account}."},
    {
        "event_type": "PaymentProcessingError",
        "note_template": "Zuora: payment of {amount} failed on account {account} on {date}.",
        "open_task": True,
        "task_template": "Zuora: payment of {amount} failed on account {account}. Contact the client about it.",
        "task_due_days": 0,
    },
    {
        "event_type": "SubscriptionCanceled",
        "note_template": "Zuora: subscription {subscription} is cancelled, effective {date}.",
    },
    {"event_type": "SubscriptionRenewed", "note_template": "Zuora: subscription {subscription} renewed on {date}."},
    {
        "event_type": "ContractRenewalReminder",
        "note_template": "",
        "open_task": True,
        "task_template": "Zuora: subscription {subscription} ends in 30 days. Discuss the renewal with the client.",
        "task_due_days": 3,
    },
]


def ensure_default_rules(**kwargs) -> None:
    """Create the default rules that are missing; never overwrite what RevOps edited."""
    for rule in DEFAULT_RULES:
        BillingEventRule.objects.get_or_create(event_type=rule["event_type"], defaults=rule)


def template_problems(template: str) -> list[str]:
    problems = []
    try:
        parsed = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)]
    except ValueError as exc:
        return [f"the template is not valid ({exc}); write {{{{ and }}}} for literal braces"]
    for name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion:  # {amount:>999999999} would render a billion characters in a worker
            problems.append(
                f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}: "
                f"placeholders take no format or conversion; write {{{name}}}"
            )
            continue
        if name not in PLACEHOLDERS:
            problems.append(
                f"unknown placeholder {{{name}}}; use one of " + ", ".join(f"{{{p}}}" for p in sorted(PLACEHOLDERS))
            )
    return problems


def render(template: str, event: BillingEvent) -> str:
    currency = event.currency or settings.ZKBRIDGE_DEFAULT_CURRENCY
    values = {
        "amount": format_money(event.amount, currency) if event.amount else "(no amount)",
        "currency": currency,
        "account": event.account_number or "(unknown account)",
        "subscription": event.subscription_number or "(no subscription)",
        "date": business_today().isoformat(),
        "event": event.event_type,
    }
    if template_problems(template):  # (a rule saved before templates were checked: its text, as written)
        return template
    return template.format_map(values)


def due_at(days: int) -> dt.datetime:
    """The end of the business day, `days` from today, in ZKBRIDGE_TIME_ZONE."""
    return end_of_business_day(business_today() + dt.timedelta(days=days))


@dataclass(frozen=True)
class Place:
    entity: str  # "leads" or "companies"
    entity_id: int
    deal: SyncRecord | None


def place(event: BillingEvent) -> Place | None:
    """Where the event goes: the deal of its subscription; for account events the account's most recent
    deal (or its Kommo company, with ZKBRIDGE_ACCOUNT_EVENTS_TO_COMPANY). None: zkbridge cannot place it."""
    deals = SyncRecord.objects.deals().filter(kommo_lead_id__isnull=False).exclude(zuora_account_number="")
    if event.subscription_number:
        deal = deals.filter(zuora_subscription_number=event.subscription_number).order_by("-created_at").first()
        if deal:
            return Place("leads", int(deal.kommo_lead_id or 0), deal)
    if event.account_number:
        deal = deals.filter(zuora_account_number=event.account_number).order_by("-created_at").first()
        if deal:
            company = deal.customer_key
            if (
                settings.ZKBRIDGE_ACCOUNT_EVENTS_TO_COMPANY
                and company.startswith("company:")
                and not event.subscription_number
            ):
                return Place("companies", int(company.split(":", 1)[1]), deal)
            return Place("leads", int(deal.kommo_lead_id or 0), deal)
    return None
