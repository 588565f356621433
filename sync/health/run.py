"""The customer's billing health on its Kommo company (issue 29, part 3): what Zuora 360 gives Salesforce.

For each Zuora account zkbridge bills a Kommo company on (CustomerAccount), the configured company fields
(KOMMO_COMPANY_HEALTH_FIELD_IDS) — for a customer billed as a person, its contact's (KOMMO_CONTACT_HEALTH_FIELD_IDS)
— receive: the subscriptions' status, their MRR, the next renewal or end date (from
the subscription mirror), the account's balance and what is overdue (Zuora's Account and Invoice objects, by ZOQL:
one paged read for any number of accounts or invoices), the last payment's outcome (Zuora's payment callouts) and a
link to the account. Refreshed for one account after each billing event zkbridge receives, and for every account
by a daily bulk pass; written in batches of 50 companies (the Kommo client keeps to the rate limit), only where a
value changed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from catalog.models import ZuoraEntity
from sync.admin_common import zuora_url
from sync.clients.errors import ApiError
from sync.clients.kommo import BATCH, KommoClient
from sync.clients.zuora import ZuoraClient
from sync.flows.models import CustomerAccount
from sync.health.models import BillingHealth
from sync.lifecycle.models import Subscription
from sync.money import decimals, format_money
from sync.webhooks.zuora import BillingEvent
from zkbridge.business_time import business_today

log = logging.getLogger("zkbridge.sync")
PAYMENT_EVENTS = {"PaymentProcessed": "paid", "PaymentProcessingError": "failed"}


@dataclass(frozen=True)
class Owed:
    balance: Decimal | None = None
    overdue: Decimal | None = None


@dataclass(frozen=True)
class Customer:
    account_number: str
    party: str  # "companies" or "contacts": where its health is written
    party_id: int
    currency: str
    entity_id: int | None  # the Zuora entity that bills it


PARTIES = {"company": "companies", "contact": "contacts"}


def health_fields() -> dict[str, dict[str, int]]:
    """Each Kommo entity's configured health fields (a party with none is not written)."""
    return {
        "companies": settings.KOMMO_COMPANY_HEALTH_FIELD_IDS,
        "contacts": settings.KOMMO_CONTACT_HEALTH_FIELD_IDS,
    }


def customers(account_numbers: list[str] | None = None) -> list[Customer]:
    """The accounts zkbridge bills a Kommo company — or, for a person, a contact — on (the won flow's links)."""
    links = CustomerAccount.objects.exclude(account_number="")
    if account_numbers is not None:
        links = links.filter(account_number__in=account_numbers)
    found = {}
    for link in links.order_by("customer_key"):
        key, _, entity = link.customer_key.partition("@")
        kind, _, party_id = key.partition(":")
        if kind in PARTIES and party_id.isdigit():
            found[link.account_number] = Customer(
                link.account_number,
                PARTIES[kind],
                int(party_id),
                link.currency,
                int(entity) if entity.isdigit() else None,
            )
    return list(found.values())


def literal(value: str) -> str:
    """A ZOQL string literal."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def owed(zuora: ZuoraClient, account_numbers: list[str] | None) -> dict[str, Owed]:
    """Each account's balance and overdue amount: two paged ZOQL reads, whatever the number of accounts and
    invoices (`None`: every account; one account: filtered by its number)."""
    where = (
        f" where AccountNumber = {literal(account_numbers[0])}" if account_numbers and len(account_numbers) == 1 else ""
    )
    accounts = {
        row.get("Id"): row
        for row in zuora.zoql(f"select Id, AccountNumber, Balance from Account{where}")
        if account_numbers is None or row.get("AccountNumber") in account_numbers
    }
    one = f" and AccountId = {literal(next(iter(accounts)))}" if where and accounts else ""
    today = business_today().isoformat()
    overdue: dict[str, Decimal] = defaultdict(Decimal)
    for row in zuora.zoql(
        f"select AccountId, Balance, DueDate from Invoice where Status = 'Posted' and Balance > 0{one}"
    ):
        if row.get("AccountId") in accounts and str(row.get("DueDate") or "9999") < today:
            overdue[str(row["AccountId"])] += Decimal(str(row.get("Balance") or 0))
    return {
        str(row.get("AccountNumber")): Owed(
            balance=Decimal(str(row.get("Balance"))) if row.get("Balance") is not None else None,
            overdue=overdue.get(str(account_id), Decimal(0)),
        )
        for account_id, row in accounts.items()
    }


def subscriptions_of(account_numbers: list[str] | None) -> dict[str, list[Subscription]]:
    """The mirrored subscriptions of these accounts (None: every account), in one read."""
    found: dict[str, list[Subscription]] = defaultdict(list)
    mirrored = Subscription.objects.all()
    if account_numbers is not None:
        mirrored = mirrored.filter(account_number__in=account_numbers)
    for sub in mirrored:
        found[sub.account_number].append(sub)
    return found


def figures(customer: Customer, subs: list[Subscription], owed_now: Owed, last_payment: str) -> dict[str, str | None]:
    """The health figures as the company fields show them (None clears a field), from the account's mirrored
    subscriptions and what Zuora says it owes."""
    active = [s for s in subs if s.status == "Active"]
    currency = customer.currency or next((s.currency for s in subs if s.currency), "") or "USD"
    places = Decimal(1).scaleb(-decimals(currency))
    if active:
        status = "Active" if len(active) == 1 else f"Active ({len(active)} subscriptions)"
    elif subs:
        latest = max(subs, key=lambda s: (s.ends_on or s.term_end or dt.date.min, s.number))
        status = latest.status or "unknown"
    else:
        status = "No subscription"
    ending = [s.ends_on for s in subs if s.ends_on] + [
        s.term_end for s in active if s.term_end and s.term_type == "TERMED"
    ]
    upcoming = [day for day in ending if day >= business_today()]
    renewal = min(upcoming) if upcoming else None

    def amount(value: Decimal | None) -> str | None:
        return None if value is None else str(value.quantize(places))

    return {
        "status": status,
        "mrr": amount(sum((s.mrr or Decimal(0) for s in active), Decimal(0))),
        "renewal": str(int(dt.datetime.combine(renewal, dt.time(12), dt.UTC).timestamp())) if renewal else None,
        "balance": amount(owed_now.balance),
        "overdue": amount(owed_now.overdue),
        "last_payment": last_payment or None,
        "account_link": zuora_url(customer.account_number),
    }


def refresh(account_numbers: list[str] | None = None) -> str:
    """Bring the health fields of these accounts' companies or contacts (None: every account) in step; returns what
    it did."""
    fields = health_fields()
    if not any(fields.values()):
        return "KOMMO_COMPANY_HEALTH_FIELD_IDS and KOMMO_CONTACT_HEALTH_FIELD_IDS are not set: no health written"
    wanted = [c for c in customers(account_numbers) if fields[c.party]]
    if not wanted:
        return "no company or contact with health fields billed on these accounts"
    by_entity: dict[int | None, list[Customer]] = defaultdict(list)
    for customer in wanted:
        by_entity[customer.entity_id].append(customer)
    now = timezone.now()
    rows = {
        h.account_number: h for h in BillingHealth.objects.filter(account_number__in=[c.account_number for c in wanted])
    }
    changes: list[tuple[Customer, dict[str, str | None]]] = []
    subscriptions = subscriptions_of(account_numbers)
    for entity_id, group in by_entity.items():
        entity = ZuoraEntity.objects.filter(pk=entity_id).first() if entity_id else None
        numbers = [c.account_number for c in group]
        balances = owed(ZuoraClient.for_entity(entity), numbers if account_numbers is not None else None)
        for customer in group:
            row = rows.get(customer.account_number) or BillingHealth(account_number=customer.account_number)
            values = figures(
                customer,
                subscriptions.get(customer.account_number, []),
                balances.get(customer.account_number, Owed()),
                row.last_payment,
            )
            shown = {name: values[name] for name in fields[customer.party]}
            if row.values != shown or (row.entity, row.kommo_id) != (customer.party, customer.party_id):
                changes.append((customer, shown))
            rows[customer.account_number] = row
    kommo = KommoClient.from_settings()
    written, failed = 0, []
    for party in ("companies", "contacts"):
        changed = [(c, shown) for c, shown in changes if c.party == party]
        for start in range(0, len(changed), BATCH):
            batch = changed[start : start + BATCH]
            try:
                kommo.update_parties_fields(
                    party,
                    [(c.party_id, {fields[party][name]: value for name, value in shown.items()}) for c, shown in batch],
                )
            except ApiError as exc:
                failed.append(str(exc))
                for customer, _ in batch:
                    row = rows[customer.account_number]
                    row.entity, row.kommo_id = customer.party, customer.party_id
                    row.error, row.checked_at = str(exc)[:1000], now
                    row.save()
                continue
            for customer, shown in batch:
                row = rows[customer.account_number]
                row.entity, row.kommo_id, row.values = customer.party, customer.party_id, shown
                row.written_at, row.checked_at, row.error = now, now, ""
                row.save()
            written += len(batch)
    unchanged = [n for n, row in rows.items() if n not in {c.account_number for c, _ in changes}]
    BillingHealth.objects.filter(account_number__in=unchanged).update(checked_at=now)
    said = f"{len(wanted)} account(s): {written} written, {len(unchanged)} unchanged"
    if failed:
        said += f"; Kommo refused: {'; '.join(failed)[:300]}"
    return said


def after_event(event: BillingEvent) -> str:
    """A billing event changed the customer's billing: a payment's outcome is remembered, then its company's
    health refreshed (one account: one read of each kind, one write when something changed)."""
    if not event.account_number:
        return "no account named"
    outcome = PAYMENT_EVENTS.get(event.event_type)
    if outcome is not None:
        money = ""
        if event.amount and event.currency:
            money = f" {format_money(event.amount, event.currency)}"
        text = f"{outcome}{money} on {business_today():%Y-%m-%d}"
        row, _ = BillingHealth.objects.get_or_create(account_number=event.account_number)
        BillingHealth.objects.filter(pk=row.pk).update(last_payment=text[:300])
    return refresh([event.account_number])


def scheduled() -> str:
    """django-q2 entry point: the daily bulk pass over every account."""
    return refresh(None)
