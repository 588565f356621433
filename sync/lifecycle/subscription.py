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

from sync import kommo_texts
from sync.clients.errors import NotFoundError
from sync.clients.zuora import ZuoraClient
from sync.flows.sale import field_value
from sync.lifecycle.models import Subscription
from sync.locks import release, try_lock
from sync.models import SyncRecord
from sync.outcomes import NeedsAttention, Waiting
from zkbridge.business_time import date_of_timestamp

WAIT = dt.timedelta(seconds=2)
# The subscription custom field that names the Kommo deal a subscription bills (the tenant must have it:
# docs/operations.md). The won flow writes it; bulk reads find a deal's subscription by it.
LEAD_FIELD = "KommoLeadId__c"


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
    # The whole subscription's MRR when it is known only as a total (the won flow's order preview prices the
    # order, not each rate plan); otherwise the rate plans' sum.
    stated_mrr: Decimal | None = None
    currency: str = ""

    @property
    def plan_ids(self) -> set[str]:
        return {p.product_rate_plan_id for p in self.rate_plans}

    @property
    def mrr(self) -> Decimal:
        if self.stated_mrr is not None:
            return self.stated_mrr
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
        currency=str(body.get("currency") or ""),
    )


def read_current(zuora: ZuoraClient, number: str) -> Current:
    try:
        return parse(zuora.get_subscription(number))
    except NotFoundError:
        raise NeedsAttention(
            f"Zuora has no subscription {number} any more (deleted in Zuora?); nothing was sent"
        ) from None


MIRRORED = (
    "account_number",
    "version",
    "status",
    "term_type",
    "term_start",
    "term_end",
    "auto_renew",
    "charged_through",
    "ends_on",
    "mrr",
    "currency",
    "rate_plans",
    "refreshed_at",
)


def mirror(*currents: Current, lead_ids: dict[str, int | None] | None = None) -> int:
    """The one way into the subscription mirror: subscriptions' current versions, however they were read
    (`parse` of the REST answer, `from_rows` of ZOQL rows, `from_order` of the order zkbridge just placed),
    written in one INSERT … ON CONFLICT. A lead id is kept when the version does not name one. Returns the
    number of rows written."""
    lead_ids = lead_ids or {}
    now = timezone.now()
    rows = []
    for current in currents:
        lead = lead_ids.get(current.number)
        if lead is None:
            named = str(current.custom.get(LEAD_FIELD) or "")
            lead = int(named) if named.isdigit() else None
        rows.append(
            Subscription(
                number=current.number,
                kommo_lead_id=lead,
                account_number=current.account_number,
                version=current.version,
                status=current.status,
                term_type=current.term_type,
                term_start=current.term_start,
                term_end=current.term_end,
                auto_renew=current.auto_renew,
                charged_through=current.charged_through,
                ends_on=current.ends_on,
                mrr=current.mrr,
                currency=current.currency[:3],
                rate_plans=[
                    {"id": p.id, "productRatePlanId": p.product_rate_plan_id, "name": p.name, "mrr": str(p.mrr)}
                    for p in current.rate_plans
                ],
                refreshed_at=now,
            )
        )
    with_lead = [r for r in rows if r.kommo_lead_id is not None]
    without = [r for r in rows if r.kommo_lead_id is None]
    for batch, fields in ((with_lead, [*MIRRORED, "kommo_lead_id"]), (without, list(MIRRORED))):
        for start in range(0, len(batch), 500):
            Subscription.objects.bulk_create(
                batch[start : start + 500], update_conflicts=True, unique_fields=["number"], update_fields=fields
            )
    return len(rows)


def gone(number: str) -> None:
    """Zuora answers that the subscription does not exist (deleted in Zuora): the mirror keeps the row, says so."""
    Subscription.objects.filter(number=number).update(status="Deleted in Zuora", refreshed_at=timezone.now())


def refresh(number: str, lead_id: int | None = None, zuora: ZuoraClient | None = None) -> Subscription | None:
    """Read the subscription's current version from Zuora into the mirror; None when Zuora has none."""
    from sync.flows.entities import entity_of_lead

    try:
        body = (zuora or ZuoraClient.for_entity(entity_of_lead(lead_id, number))).get_subscription(number)
    except NotFoundError:
        gone(number)
        return None
    current = parse(body)
    mirror(current, lead_ids={current.number: lead_id})
    return Subscription.objects.get(number=current.number)


# --- the deal this record changes ------------------------------------------------------------------------
def billed_deal(record: SyncRecord) -> SyncRecord:
    """The deal_won record that billed this lead: a change to a deal zkbridge never billed is refused."""
    deal = SyncRecord.objects.billed_deal_of(record.kommo_lead_id)
    if deal is None:
        raise NeedsAttention(
            f"zkbridge never billed Kommo lead {record.kommo_lead_id} (no successful won sync with a "
            f"subscription); nothing was sent to Zuora — bill the deal first",
            task=kommo_texts.task(
                "this deal has no Zuora subscription to change or cancel",
                "ask RevOps to check the deal's won sync",
            ),
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
            task=kommo_texts.task(f"the deal's {what} is empty", f"set the {what} on this deal"),
        )
    if raw.lstrip("-").isdigit():
        return date_of_timestamp(int(raw))
    parsed = zuora_date(raw)
    if parsed is None:
        raise NeedsAttention(
            f"the deal's {what} field says {raw!r}, which is not a date; nothing was sent",
            task=kommo_texts.task(f"the deal's {what} is not a date", f"set the {what} to a date"),
        )
    return parsed


def churned(status_id: int | None) -> bool:
    return status_id is not None and status_id in settings.ZKBRIDGE_CHURN_STATUS_IDS


def from_order(
    number: str,
    account_number: str,
    terms: dict,
    start: dt.date,
    plans: list[RatePlan],
    mrr: Decimal | None,
    currency: str,
) -> Current:
    """The current version of a subscription the won flow just created, from the order zkbridge sent (no extra
    call): its rate plans by product rate plan (Zuora names the subscription's own rate plan ids on the next
    read), its MRR from the order's preview. The daily refresh and Zuora's callouts keep it current."""
    initial = terms.get("initialTerm") or {}
    termed = initial.get("termType") == "TERMED"
    return Current(
        number=number,
        version=1,
        status="Active",
        account_number=account_number,
        term_type=initial.get("termType") or "",
        term_start=start,
        term_end=add_months(start, int(initial.get("period") or 12)) if termed else None,
        contract_effective=start,
        ends_on=None,
        auto_renew=terms.get("autoRenew"),
        charged_through=None,
        rate_plans=plans,
        stated_mrr=mrr,
        currency=currency,
    )


def refresh_all(progress=None) -> int:
    """The daily refresh: every billed deal's subscription, current versions only, in bulk (ZOQL pages of
    2,000), never one call per subscription — in every entity of a multi-entity tenant. Returns how many rows
    it updated."""
    from sync.catalog_sync import catalogs_to_sync

    return sum(refresh_entity(ZuoraClient.for_entity(entity), progress) for entity in catalogs_to_sync())


def from_rows(row: dict, account: dict, plans: list[dict], charges: list[dict]) -> Current:
    """A subscription's current version from ZOQL rows (Subscription, its RatePlans, their RatePlanCharges):
    the same value `parse` makes of the REST answer, so the mirror has one shape whatever read it."""
    rate_plans, charged = [], []
    for plan in plans:
        if not in_force(plan):
            continue
        own = [c for c in charges if c.get("RatePlanId") == plan.get("Id")]
        charged += [d for d in (zuora_date(c.get("ChargedThroughDate")) for c in own) if d]
        rate_plans.append(
            RatePlan(
                id=str(plan.get("Id") or ""),
                product_rate_plan_id=str(plan.get("ProductRatePlanId") or ""),
                name=str(plan.get("Name") or ""),
                mrr=sum((Decimal(str(c.get("MRR") or 0)) for c in own), Decimal(0)),
                quantities={
                    str(c["ProductRatePlanChargeId"]): Decimal(str(c["Quantity"]))
                    for c in own
                    if c.get("Quantity") is not None and c.get("ProductRatePlanChargeId")
                },
            )
        )
    return Current(
        number=str(row.get("Name") or ""),
        version=int(row.get("Version") or 1),
        status=str(row.get("Status") or ""),
        account_number=str(account.get("AccountNumber") or ""),
        term_type=str(row.get("TermType") or ""),
        term_start=zuora_date(row.get("TermStartDate")),
        term_end=zuora_date(row.get("TermEndDate")),
        contract_effective=zuora_date(row.get("ContractEffectiveDate")),
        ends_on=zuora_date(row.get("SubscriptionEndDate")),
        auto_renew=row.get("AutoRenew"),
        charged_through=max(charged) if charged else None,
        rate_plans=rate_plans,
        custom={k: v for k, v in row.items() if str(k).endswith("__c")},
        currency=str(account.get("Currency") or ""),
    )


def refresh_entity(zuora: ZuoraClient, progress=None) -> int:
    """Every billed subscription of one entity, current versions only, from four bulk reads (accounts,
    subscriptions, rate plans, charges), parsed by `from_rows` and written by `mirror`."""
    field_name = LEAD_FIELD
    accounts = {a["Id"]: a for a in zuora.zoql("select Id, AccountNumber, Currency from Account")}
    subscriptions = list(
        zuora.zoql(
            f"select Id, Name, Version, AccountId, Status, TermType, TermStartDate, TermEndDate, AutoRenew, "
            f"ContractEffectiveDate, SubscriptionEndDate, {field_name} from Subscription "
            f"where {field_name} != null and Status != 'Expired'"
        )
    )
    current = {row["Id"] for row in subscriptions}
    plans: dict[str, list[dict]] = {}  # subscription id → its rate plans
    owner: dict[str, str] = {}  # rate plan id → subscription id
    for plan in zuora.zoql("select Id, SubscriptionId, ProductRatePlanId, Name, AmendmentType from RatePlan"):
        if plan.get("SubscriptionId") in current:
            plans.setdefault(plan["SubscriptionId"], []).append(plan)
            owner[plan["Id"]] = plan["SubscriptionId"]
    charges: dict[str, list[dict]] = {}
    for charge in zuora.zoql(
        "select RatePlanId, ProductRatePlanChargeId, Quantity, MRR, ChargedThroughDate from RatePlanCharge"
    ):
        subscription = owner.get(charge.get("RatePlanId") or "")
        if subscription:
            charges.setdefault(subscription, []).append(charge)
    return mirror(
        *(
            from_rows(
                row, accounts.get(row.get("AccountId")) or {}, plans.get(row["Id"], []), charges.get(row["Id"], [])
            )
            for row in subscriptions
        )
    )


def scheduled_refresh() -> str:
    return f"{refresh_all()} subscription(s) refreshed"
