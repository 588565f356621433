"""A billed deal's subscription as Zuora has it now, the local mirror of it, and the rule that changes to
one subscription go one at a time, in the order Kommo made them.

Zuora keeps every earlier version of a subscription as its own record (same number, status Expired, its
own rate plans). `GET /v1/subscriptions/{number}` answers the latest version; bulk reads filter
`Status != 'Expired'`. Nothing here ever reads an Expired version as the subscription.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from sync.clients.errors import NotFoundError
from sync.clients.zuora import ZuoraClient
from sync.flows import NeedsAttention, Waiting
from sync.flows.sale import field_value
from sync.locks import release, try_lock
from sync.models import Subscription, SyncRecord
from zkbridge.business_time import date_of_timestamp

WAIT = dt.timedelta(seconds=2)


def in_force(rate_plan_row: dict) -> bool:
    """A RatePlan row (ZOQL, Object Query) the subscription still bills: Zuora keeps a removed rate plan on the
    later versions with AmendmentType RemoveProduct (its charges end-dated)."""
    kind = rate_plan_row.get("AmendmentType", rate_plan_row.get("amendmentType"))
    return kind != "RemoveProduct"


def zuora_date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


@dataclass
class RatePlan:
    id: str
    product_rate_plan_id: str
    name: str
    mrr: Decimal
    quantities: dict[str, Decimal] = field(default_factory=dict)  # product rate plan charge id → quantity


@dataclass
class Current:
    """The subscription's latest version."""

    number: str
    version: int
    status: str
    account_number: str
    term_type: str
    term_start: dt.date | None
    term_end: dt.date | None
    contract_effective: dt.date | None
    ends_on: dt.date | None
    auto_renew: bool | None
    charged_through: dt.date | None
    rate_plans: list[RatePlan] = field(default_factory=list)
    custom: dict[str, Any] = field(default_factory=dict)  # the version's custom fields (Name__c)

    @property
    def plan_ids(self) -> set[str]:
        return {p.product_rate_plan_id for p in self.rate_plans}

    @property
    def mrr(self) -> Decimal:
        return sum((p.mrr for p in self.rate_plans), Decimal(0))

    @property
    def cancelled(self) -> bool:
        return self.status == "Cancelled"

    def end_of_billing_period(self, today: dt.date) -> dt.date:
        """The end of the period being billed: the charged-through date when the charges are invoiced past
        today, else the next monthly boundary from the term start (the bill cycle)."""
        if self.charged_through and self.charged_through >= today:
            return self.charged_through
        start = self.term_start or today
        months = max((today.year - start.year) * 12 + today.month - start.month, 0)
        for step in (months, months + 1, months + 2):
            boundary = add_months(start, step)
            if boundary > today:
                return boundary
        return add_months(start, months + 1)


def add_months(day: dt.date, months: int) -> dt.date:
    import calendar

    month = day.month - 1 + months
    year = day.year + month // 12
    month = month % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def parse(body: dict) -> Current:
    """A subscription's current version from `GET /v1/subscriptions/{number}`. A rate plan an amendment removed
    stays on the later versions (`lastChangeType: Remove`, Zuora's RatePlan.AmendmentType RemoveProduct): it is
    not part of what the subscription bills now, and never counts as current."""
    plans = []
    charged: list[dt.date] = []
    for plan in body.get("ratePlans") or []:
        if not isinstance(plan, dict) or plan.get("lastChangeType") == "Remove":
            continue
        charges = [c for c in plan.get("ratePlanCharges") or [] if isinstance(c, dict)]
        charged += [d for d in (zuora_date(c.get("chargedThroughDate")) for c in charges) if d]
        plans.append(
            RatePlan(
                id=str(plan.get("id") or ""),
                product_rate_plan_id=str(plan.get("productRatePlanId") or ""),
                name=str(plan.get("ratePlanName") or plan.get("name") or ""),
                mrr=sum((Decimal(str(c.get("mrr") or 0)) for c in charges), Decimal(0)),
                quantities={
                    str(c.get("productRatePlanChargeId")): Decimal(str(c["quantity"]))
                    for c in charges
                    if c.get("quantity") is not None and c.get("productRatePlanChargeId")
                },
            )
        )
    return Current(
        number=str(body.get("subscriptionNumber") or ""),
        version=int(body.get("version") or 1),
        status=str(body.get("status") or ""),
        account_number=str(body.get("accountNumber") or ""),
        term_type=str(body.get("termType") or ""),
        term_start=zuora_date(body.get("termStartDate")),
        term_end=zuora_date(body.get("termEndDate")),
        contract_effective=zuora_date(body.get("contractEffectiveDate")),
        ends_on=zuora_date(body.get("subscriptionEndDate")),
        auto_renew=body.get("autoRenew"),
        charged_through=max(charged) if charged else None,
        rate_plans=plans,
        custom={k: v for k, v in body.items() if str(k).endswith("__c")},
    )


def read_current(zuora: ZuoraClient, number: str) -> Current:
    try:
        return parse(zuora.get_subscription(number))
    except NotFoundError:
        raise NeedsAttention(
            f"Zuora has no subscription {number} any more (deleted in Zuora?); nothing was sent"
        ) from None


def mirror(current: Current, lead_id: int | None = None) -> Subscription:
    """Keep the local mirror of the subscription's current version."""
    defaults: dict[str, Any] = {
        "account_number": current.account_number,
        "version": current.version,
        "status": current.status,
        "term_type": current.term_type,
        "term_start": current.term_start,
        "term_end": current.term_end,
        "auto_renew": current.auto_renew,
        "charged_through": current.charged_through,
        "ends_on": current.ends_on,
        "rate_plans": [
            {"id": p.id, "productRatePlanId": p.product_rate_plan_id, "name": p.name} for p in current.rate_plans
        ],
        "refreshed_at": timezone.now(),
    }
    if lead_id is not None:
        defaults["kommo_lead_id"] = lead_id
    row, _ = Subscription.objects.update_or_create(number=current.number, defaults=defaults)
    return row


def refresh(number: str, lead_id: int | None = None, zuora: ZuoraClient | None = None) -> Subscription | None:
    """Read the subscription's current version from Zuora into the mirror; None when Zuora has none."""
    from sync.flows.entities import entity_of_lead

    try:
        body = (zuora or ZuoraClient.for_entity(entity_of_lead(lead_id, number))).get_subscription(number)
    except NotFoundError:
        Subscription.objects.filter(number=number).update(status="Deleted in Zuora", refreshed_at=timezone.now())
        return None
    return mirror(parse(body), lead_id)


# --- the deal this record changes ------------------------------------------------------------------------
def billed_deal(record: SyncRecord) -> SyncRecord:
    """The deal_won record that billed this lead: a change to a deal zkbridge never billed is refused."""
    deal = SyncRecord.objects.filter(
        kind=SyncRecord.Kind.DEAL_WON, kommo_lead_id=record.kommo_lead_id, status=SyncRecord.Status.SUCCEEDED
    ).first()
    if deal is None or not deal.zuora_subscription_number:
        raise NeedsAttention(
            f"zkbridge never billed Kommo lead {record.kommo_lead_id} (no successful won sync with a "
            f"subscription); nothing was sent to Zuora — bill the deal first",
            task="zkbridge has no Zuora subscription for this deal, so it cannot change or cancel one. Ask "
            "RevOps to check the deal's won sync.",
        )
    if not record.zuora_subscription_number:
        record.zuora_subscription_number = deal.zuora_subscription_number
        record.zuora_account_number = deal.zuora_account_number
        record.save(update_fields=["zuora_subscription_number", "zuora_account_number", "updated_at"])
    return deal


def in_turn(record: SyncRecord) -> None:
    """Changes to one deal's subscription apply in the order they arrived: an earlier record of the same
    lead that is still open goes first."""
    if record.kommo_lead_id is None:
        return  # no deal to order by (the subscription's lock still keeps changes apart)
    earlier = (
        SyncRecord.objects.filter(kommo_lead_id=record.kommo_lead_id, id__lt=record.id, status__in=SyncRecord.OPEN)
        .filter(kind__in=(SyncRecord.Kind.DEAL_WON, *SyncRecord.LIFECYCLE))
        .order_by("id")
        .first()
    )
    if earlier is not None:
        raise Waiting(f"waits for {earlier.key} ({earlier.status}) to finish first", WAIT)


@contextlib.contextmanager
def in_order(record: SyncRecord, number: str) -> Iterator[None]:
    """A lifecycle record's turn: earlier records of its deal first, then the subscription's lock."""
    in_turn(record)
    with subscription_turn(number):
        yield


@contextlib.contextmanager
def subscription_turn(number: str) -> Iterator[None]:
    """One change at a time per subscription, across every worker: a change that arrives while another
    is in flight waits (and is retried in a moment) rather than racing it."""
    held = try_lock(f"subscription:{number}")
    if held is None:
        raise Waiting(f"another change to {number} is in flight", WAIT)
    try:
        yield
    finally:
        release(held)


# --- dates from the lead -------------------------------------------------------------------------------
def lead_date(lead: dict, field_id: int | None, what: str) -> dt.date:
    """A date a salesperson set on the deal (Kommo date fields hold a Unix time; text 'YYYY-MM-DD' too)."""
    raw = field_value(lead, field_id)
    if not raw:
        raise NeedsAttention(
            f"the deal's {what} field ({field_id}) is empty; nothing was sent",
            task=f"Set the {what} on this deal.",
        )
    if raw.lstrip("-").isdigit():
        return date_of_timestamp(int(raw))
    parsed = zuora_date(raw)
    if parsed is None:
        raise NeedsAttention(
            f"the deal's {what} field says {raw!r}, which is not a date; nothing was sent",
            task=f"Set the {what} on this deal to a date.",
        )
    return parsed


def churned(status_id: int | None) -> bool:
    return status_id is not None and status_id in settings.ZKBRIDGE_CHURN_STATUS_IDS


def mirror_new(number: str, account_number: str, lead_id: int, terms: dict, start: dt.date) -> None:
    """A subscription the won flow just created, mirrored from the order zkbridge sent (no extra call):
    the daily refresh and Zuora's callouts keep it current from then on."""
    initial = terms.get("initialTerm") or {}
    termed = initial.get("termType") == "TERMED"
    mirrored = {
        "account_number": account_number,
        "kommo_lead_id": lead_id,
        "version": 1,
        "status": "Active",
        "term_type": initial.get("termType") or "",
        "term_start": start,
        "term_end": add_months(start, int(initial.get("period") or 12)) if termed else None,
        "auto_renew": terms.get("autoRenew"),
        "refreshed_at": timezone.now(),
    }
    # One INSERT … ON CONFLICT (a retry of the same order finds its row and updates it).
    Subscription.objects.bulk_create(
        [Subscription(number=number, **mirrored)],
        update_conflicts=True,
        unique_fields=["number"],
        update_fields=list(mirrored),
    )


def refresh_all(progress=None) -> int:
    """The daily refresh: every billed deal's subscription, current versions only, in bulk (ZOQL pages of
    2,000), never one call per subscription — in every entity of a multi-entity tenant. Returns how many rows
    it updated."""
    from sync.catalog_sync import catalogs_to_sync

    return sum(refresh_entity(ZuoraClient.for_entity(entity), progress) for entity in catalogs_to_sync())


def refresh_entity(zuora: ZuoraClient, progress=None) -> int:
    from sync.flows.deal_won import LEAD_FIELD

    accounts = {a["Id"]: a.get("AccountNumber") or "" for a in zuora.zoql("select Id, AccountNumber from Account")}
    subscriptions = list(
        zuora.zoql(
            f"select Id, Name, Version, AccountId, Status, TermType, TermStartDate, TermEndDate, AutoRenew, "
            f"SubscriptionEndDate, {LEAD_FIELD} from Subscription where {LEAD_FIELD} != null and Status != 'Expired'"
        )
    )
    current = {row["Id"] for row in subscriptions}
    # Charged-through dates sit on the charges of each version's rate plans: rate plan → subscription.
    plan_of: dict[str, str] = {}
    for plan in zuora.zoql("select Id, SubscriptionId, AmendmentType from RatePlan"):
        if plan.get("SubscriptionId") in current and in_force(plan):
            plan_of[plan["Id"]] = plan["SubscriptionId"]
    charged: dict[str, dt.date] = {}
    for charge in zuora.zoql(
        "select RatePlanId, ChargedThroughDate from RatePlanCharge where ChargedThroughDate != null"
    ):
        owner = plan_of.get(charge.get("RatePlanId") or "")
        day = zuora_date(charge.get("ChargedThroughDate"))
        if owner and day and (owner not in charged or day > charged[owner]):
            charged[owner] = day
    updated = 0
    for row in subscriptions:
        lead = str(row.get(LEAD_FIELD) or "")
        Subscription.objects.update_or_create(
            number=row["Name"],
            defaults={
                "account_number": accounts.get(row.get("AccountId"), ""),
                "kommo_lead_id": int(lead) if lead.isdigit() else None,
                "version": int(row.get("Version") or 1),
                "status": row.get("Status") or "",
                "term_type": row.get("TermType") or "",
                "term_start": zuora_date(row.get("TermStartDate")),
                "term_end": zuora_date(row.get("TermEndDate")),
                "auto_renew": row.get("AutoRenew"),
                "ends_on": zuora_date(row.get("SubscriptionEndDate")),
                "charged_through": charged.get(row["Id"]),
                "refreshed_at": timezone.now(),
            },
        )
        updated += 1
    return updated


def scheduled_refresh() -> str:
    return f"{refresh_all()} subscription(s) refreshed"
