"""A Won deal becomes one Zuora account (created or reused) and one subscription — exactly once.

Steps, each recorded on the SyncRecord so a retry resumes after the last one completed:
  lead        re-fetch the lead from Kommo (the web hook is an unsigned hint)
  order       find what an earlier attempt created (by KommoLeadId__c), else one POST /v1/orders
  lead_fields write the account and subscription numbers into the configured lead fields
  note        a note on the lead naming them

This is the only won flow. A burst of deals won together (sync.flows.burst) runs these same steps for each
deal, handing them a read cache (BurstReads, a `Reads`) and a batching Kommo writer (a `Writes`): the steps,
the Idempotency-Keys and the outcomes are the ones here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings

from catalog.models import ProductRatePlan, ZuoraEntity
from sync import kommo_texts, orders
from sync.clients.errors import BusinessError, NotFoundError, TransientError, UnexpectedAnswer
from sync.clients.kommo import KommoClient
from sync.clients.zuora import ZuoraClient
from sync.flows.customer import Customer, customer_key, customer_of, people_reads
from sync.flows.entities import link_key, route_record
from sync.flows.models import CustomerAccount
from sync.flows.sale import Sale, charge_overrides, line_items, plan_of, resolve_sale, subscription_terms
from sync.kommo_tasks import note_entry, write_note_once
from sync.lifecycle.subscription import LEAD_FIELD, RatePlan, from_order, in_force, mirror
from sync.locks import named_lock
from sync.models import SyncRecord
from sync.money import format_money
from sync.outcomes import NeedsAttention
from sync.parallel import Outcome, settle, together
from sync.registry import flow

log = logging.getLogger("zkbridge.sync")


@flow(SyncRecord.Kind.DEAL_WON)
def deal_won(record: SyncRecord) -> None:
    reads = Reads(KommoClient.from_settings(), ZuoraClient.from_settings())
    order_steps(record, reads)
    refused = write_back([record], Writes(reads.kommo))
    if record.id in refused:
        raise refused[record.id]


def order_steps(record: SyncRecord, reads: Reads) -> None:
    """The deal's steps up to Zuora's answer: the lead re-read (still Won), the entity that bills it, the order
    (or what an earlier attempt made)."""
    lead = fetch_lead(reads, record)
    if not record.step_done("order"):
        reads.route(record, lead)
        place_order(record, reads, lead)


class Reads:
    """Where a won deal's reads come from. A deal on its own asks Kommo and Zuora itself; a burst of deals
    (sync.flows.burst) answers from what it read for all of them at once."""

    def __init__(self, kommo: KommoClient, zuora: ZuoraClient):
        self.kommo = kommo
        self.zuora = zuora
        self.entity: ZuoraEntity | None = None

    def in_entity(self, entity: ZuoraEntity | None) -> None:
        """Zuora is asked in the deal's entity (its header, OAuth client and concurrency cap)."""
        if entity is not None:
            self.entity, self.zuora = entity, ZuoraClient.for_entity(entity)

    def route(self, record: SyncRecord, lead: dict[str, Any]) -> None:
        """The deal's entity, routed now (sync.flows.entities.route_record)."""
        self.in_entity(route_record(record, lead))

    def lead(self, lead_id: int) -> dict[str, Any]:
        """The lead with its contacts and products; NotFoundError when Kommo no longer shows it."""
        return self.kommo.get_lead(lead_id)

    def people(self, lead: dict[str, Any]) -> tuple[Callable[[], list[dict]], Callable[[], Any]]:
        return people_reads(self.kommo, lead)

    def accounts(self, key: str) -> list[dict]:
        return customer_accounts(self.zuora, key)

    def preview(self, record: SyncRecord, sale: Sale) -> tuple[str | None, str | None]:
        return preview(self.zuora, record, sale)


def read_lead(get: Callable[[int], dict[str, Any]], record: SyncRecord) -> dict[str, Any]:
    try:
        return get(record.lead_id)
    except NotFoundError:
        raise NeedsAttention(
            f"Kommo lead {record.kommo_lead_id} was deleted or is not visible to zkbridge's Kommo user"
        ) from None


def fetch_any_lead(kommo: KommoClient, record: SyncRecord) -> dict[str, Any]:
    """The lead as Kommo has it now (whatever its status), remembered on the record."""
    lead = read_lead(kommo.get_lead, record)
    record.mark_step("lead", responsible_user_id=lead.get("responsible_user_id"), name=lead.get("name"))
    return lead


def fetch_lead(reads: Reads, record: SyncRecord) -> dict[str, Any]:
    lead = read_lead(reads.lead, record)
    if not record.step_done("order") and lead.get("status_id") != settings.KOMMO_WON_STATUS_ID:
        raise NeedsAttention(
            f"the lead is no longer Won in Kommo (status {lead.get('status_id')}); nothing was "
            f"created in Zuora. Cancel this record, or retry once the deal is Won again"
        )
    record.mark_step(
        "lead",
        responsible_user_id=lead.get("responsible_user_id"),
        name=lead.get("name"),
        plan=plan_of(lead),
    )
    return lead


def may_have_reached_zuora(record: SyncRecord) -> bool:
    """Whether an earlier attempt may have created this deal's subscription. The order step is marked `sent`
    (and committed) before the order leaves, and a staff re-run starts a new generation: a first attempt of
    the first generation without the mark cannot have reached Zuora, so it skips the lookup by lead (one
    Zuora read off every deal's path). Any other attempt looks, because Zuora forgets Idempotency-Keys
    after 24 hours and a re-run sends a new one."""
    return record.generation > 1 or record.attempts > 1 or bool(record.step_data("order").get("sent"))


def place_order(record: SyncRecord, reads: Reads, lead: dict) -> None:
    """Reads that need nothing from each other travel together: the lead's contacts and company, the
    customer's account, the preview (MRR for the note) and, on a retry, the subscription an earlier attempt
    may have made. Then the order alone. Critical path: two round trips to Zuora, one to Kommo."""
    looked = may_have_reached_zuora(record)
    # A first attempt knows what is sold before it reads anything, so its preview travels with the reads.
    sale = None if looked else resolve_sale(lead, entity=reads.entity)
    try:
        key = customer_key(lead)
    except NeedsAttention:  # no customer on the lead any more: what an earlier attempt made still counts
        if looked and (existing := lead_subscriptions(reads.zuora, record)):
            record_found(record, existing[0])
            return
        raise
    # Two deals of one company won at once must not both create its account: one at a time per customer.
    with named_lock(f"customer:{key}"):
        known, lookup = linked_account(reads, key)
        contacts_read, company_read = reads.people(lead)
        contacts, company, accounts, existing, figures = together(
            contacts_read,
            company_read,
            lookup,
            partial(lead_subscriptions, reads.zuora, record) if looked else None,
            partial(reads.preview, record, sale) if sale is not None else None,
        )
        if existing:
            record_found(record, existing[0])
            return
        if sale is None:
            sale = resolve_sale(lead, entity=reads.entity)
        customer = customer_of(lead, contacts, company)
        if customer.key != key:  # the lead names a company Kommo no longer shows: its main contact is billed
            with named_lock(f"customer:{customer.key}"):
                known, lookup = linked_account(reads, customer.key)
                accounts = lookup() if lookup else None
                send_order(record, reads, sale, customer, account_of(known, accounts, sale), figures)
            return
        send_order(record, reads, sale, customer, account_of(known, accounts, sale), figures)


def linked_account(reads: Reads, key: str) -> tuple[CustomerAccount | None, Callable[[], list[dict]] | None]:
    """The account zkbridge billed this customer on (no lookup needed), else how to look it up. A link with no
    number yet means an order that creates the customer's account was sent and its answer is not known: Zuora
    is asked afresh (never an answer read before that order left, such as a burst's shared lookup)."""
    known = CustomerAccount.objects.filter(customer_key=link_key(key, reads.entity)).first()
    if known is None:
        return None, partial(reads.accounts, key)
    if not known.account_number:
        return None, partial(customer_accounts, reads.zuora, key)
    return known, None


def lead_subscriptions(zuora: ZuoraClient, record: SyncRecord) -> list[dict]:
    """The subscriptions carrying this deal's lead id (what an earlier attempt made)."""
    return zuora.find_subscriptions(LEAD_FIELD, str(record.kommo_lead_id))


def customer_accounts(zuora: ZuoraClient, key: str) -> list[dict]:
    """The Zuora accounts carrying this Kommo customer's key."""
    return zuora.find_accounts(settings.ZUORA_ACCOUNT_CRM_FIELD, key)


def record_found(record: SyncRecord, sub: dict) -> None:
    """An earlier attempt made the subscription: take its numbers and send nothing."""
    account = sub.get("account") or {}
    plans = [rp for rp in sub.get("ratePlans") or [] if isinstance(rp, dict) and in_force(rp)]
    plan_ids = [rp.get("productRatePlanId") for rp in plans]
    record.rate_plans.set(ProductRatePlan.objects.filter(zuora_id__in=plan_ids))
    save_order_step(
        record,
        account.get("accountNumber", ""),
        sub.get("name", ""),
        order_number="",
        found=True,
        customer_key=account.get("crmId") or "",
        summary=record.summary or ", ".join(rp.get("name", "") for rp in plans),
    )


def send_order(
    record: SyncRecord,
    reads: Reads,
    sale: Sale,
    customer: Customer,
    account: Account,
    figures: tuple[str | None, str | None] | None,
) -> None:
    """The order; beside it the preview when it did not travel with the reads (`figures` None)."""
    order = build_order(record, sale, customer, account.number)
    link = link_key(customer.key, reads.entity)
    if account.number is None:
        # This order creates the customer's account: until its answer is known, a deal of the same customer
        # asks Zuora afresh (see linked_account).
        CustomerAccount.objects.get_or_create(customer_key=link, defaults={"account_number": ""})
    record.mark_step("order", done=False, sent=True)  # committed before the order leaves (see may_have_reached_zuora)
    zuora = reads.zuora
    placed, previewed = settle(
        lambda: zuora.create_order(
            order, idempotency_key=record.idempotency_key("order"), track_id=f"zkbridge-{record.id}"
        ),
        (lambda: reads.preview(record, sale)) if figures is None else None,
    )
    if account.known and isinstance(placed.error, BusinessError | NotFoundError):
        # The account zkbridge remembered may be gone (merged, deleted): the retry asks Zuora again.
        CustomerAccount.objects.filter(customer_key=link).delete()
    elif account.number is None and isinstance(placed.error, BusinessError):
        # Refused: no account was created, nothing is in flight.
        CustomerAccount.objects.filter(customer_key=link, account_number="").delete()
    if isinstance(placed.error, UnexpectedAnswer):
        raise NeedsAttention(
            f"{placed.error.message}. The order may have been made: a retry first looks for the deal's "
            f"subscription in Zuora ({LEAD_FIELD} = {record.kommo_lead_id})",
            task=kommo_texts.task(
                "Zuora's answer to this deal's order could not be read", "ask RevOps to check Zuora and retry the deal"
            ),
        ) from None
    if isinstance(placed.error, BusinessError):
        raise NeedsAttention(
            f"Zuora refused the order: {placed.error.message}",
            task=kommo_texts.task(
                f"Zuora refused this deal's subscription: {placed.error.message}",
                "ask RevOps to fix it and retry the deal",
            ),
        ) from None
    result = placed.get()
    mrr, tcv = figures or previewed.value or (None, None)
    if not result.subscription_numbers and sale.subscription_items:
        raise NeedsAttention(
            f"Zuora answered order {result.order_number} (status {result.status}) without the subscription it "
            f"was to create. A retry first looks for the deal's subscription in Zuora",
            task=kommo_texts.task(
                "Zuora's answer to this deal's order named no subscription",
                "ask RevOps to check Zuora and retry the deal",
            ),
        )
    subscription = result.subscription_numbers[0] if result.subscription_numbers else ""
    items = sale.subscription_items + sale.one_time_items
    record.plan_mappings.set({item.mapping for item in items})
    record.rate_plans.set({item.rate_plan for item in items})
    if subscription:
        plans = [
            RatePlan(id="", product_rate_plan_id=item.rate_plan.zuora_id, name=item.rate_plan.name, mrr=Decimal(0))
            for item in sale.subscription_items
        ]
        terms = subscription_terms(sale)
        try:
            stated = Decimal(str(mrr)) if mrr not in (None, "") else None
        except ArithmeticError:  # decimal.InvalidOperation: a figure the preview could not state
            stated = None
        mirror(
            from_order(subscription, result.account_number, terms, sale.contract_date, plans, stated, sale.currency),
            lead_ids={subscription: record.lead_id},
        )
    if result.account_number:
        CustomerAccount.link(link, result.account_number, sale.currency)
    save_order_step(
        record,
        result.account_number,
        subscription,
        order_number=result.order_number,
        summary=sale.label,
        currency=sale.currency,
        mrr=mrr,
        tcv=tcv,
        account_created=account.number is None,
        account_known=account.known,
        customer_key=customer.key,
    )


@dataclass(frozen=True)
class Account:
    number: str | None  # None: a new account is created with the order
    known: bool = False  # remembered by zkbridge (no Zuora lookup was made)


def account_of(known: CustomerAccount | None, accounts: list[dict] | None, sale: Sale) -> Account:
    """The customer's Zuora account: the one zkbridge billed before, else the oldest Zuora finds by the
    Kommo key; a new one when there is none. Its currency must be the deal's."""
    if known is not None:
        check_currency(known.account_number, known.currency, sale)
        return Account(known.account_number, known=True)
    if not accounts:
        return Account(None)
    # Several accounts for one Kommo company is a reconciliation finding; bill the oldest meanwhile.
    account = sorted(accounts, key=lambda a: (a.get("createdDate") or "", a.get("accountNumber") or ""))[0]
    check_currency(account.get("accountNumber") or "", account.get("currency") or "", sale)
    return Account(account.get("accountNumber"))


def check_currency(account_number: str, currency: str, sale: Sale) -> None:
    if currency and currency != sale.currency:
        raise NeedsAttention(
            f"the customer's Zuora account {account_number} bills in {currency} but the deal is in {sale.currency}",
            task=kommo_texts.task(
                f"this customer is billed in {currency} in Zuora and the deal is in {sale.currency}",
                "set the deal's currency to match, or ask RevOps",
            ),
        )


def build_order(record: SyncRecord, sale: Sale, customer: Customer, account_number: str | None) -> dict:
    account: dict[str, Any] | None = None
    if not account_number:
        account = {
            "name": customer.name,
            "currency": sale.currency,
            "billCycleDay": 0,
            "autoPay": False,
            "crmId": customer.key,
            "customFields": {settings.ZUORA_ACCOUNT_CRM_FIELD: customer.key},
            "billToContact": customer.bill_to.as_zuora(),
            "soldToContact": customer.sold_to.as_zuora(),
        }
        if sale.terms is not None and sale.terms.payment_term:
            account["paymentTerm"] = sale.terms.payment_term
    return orders.new_sale(
        sale.contract_date, account_number=account_number, new_account=account, sold=what_is_sold(record, sale)
    )


def what_is_sold(record: SyncRecord, sale: Sale) -> dict[str, Any]:
    """The order's subscription and one-time items: everything but who is billed."""
    contract = sale.contract_date.isoformat()
    part: dict[str, Any] = {}
    if sale.subscription_items:
        part["subscriptions"] = [
            {
                "orderActions": [
                    {
                        "type": "CreateSubscription",
                        "triggerDates": [
                            {"name": n, "triggerDate": contract}
                            for n in ("ContractEffective", "ServiceActivation", "CustomerAcceptance")
                        ],
                        "createSubscription": {
                            "terms": subscription_terms(sale),
                            "subscribeToRatePlans": [
                                {
                                    "productRatePlanId": item.rate_plan.zuora_id,
                                    "chargeOverrides": charge_overrides(item),
                                }
                                for item in sale.subscription_items
                            ],
                        },
                    }
                ],
                "customFields": {LEAD_FIELD: str(record.kommo_lead_id)},
            }
        ]
    items = line_items(sale)
    if items:
        part["orderLineItems"] = items
    return part


def preview(zuora: ZuoraClient, record: SyncRecord, sale: Sale) -> tuple[str | None, str | None]:
    """MRR and TCV for the note, from what is sold alone (a preview account in the deal's currency: the
    figures do not depend on who is billed, so the preview need not wait for the account lookup). A preview
    that fails, or is switched off, only makes the note shorter."""
    body = preview_body(record, sale)
    if body is None:
        return None, None
    try:
        result = zuora.preview_order(body)
        metrics = (result.get("previewResult") or {}).get("chargeMetrics") or []
        if not metrics:
            return None, None
        return str(metric_sum(metrics, "cmrr", "regular")), str(metric_sum(metrics, "tcv", "regular"))
    except (BusinessError, TransientError, NotFoundError) as exc:  # an unreadable answer too (UnexpectedAnswer)
        log.warning("sync_record=%s preview not used: %s", record.id, exc)
        return None, None


def preview_body(record: SyncRecord, sale: Sale) -> dict[str, Any] | None:
    """The preview order for what is sold (None when previews are off or nothing recurring is sold)."""
    if not (settings.ZUORA_PREVIEW_ORDERS and sale.subscription_items):
        return None
    sold = {"subscriptions": what_is_sold(record, sale)["subscriptions"]}
    order = {"orderDate": sale.contract_date.isoformat(), **sold}
    return orders.preview(order, account_info={"currency": sale.currency, "billCycleDay": 1})


def metric_sum(metrics: list[dict], figure: str, part: str) -> Decimal:
    """Sum one figure of an order preview. Zuora writes `cmrr` / `tcv` on each charge of each
    subscription's `chargeMetrics[].charges[]`; a figure on the subscription itself is read only when
    its charges carry none."""
    total = Decimal(0)
    for metric in metrics:
        charges = [c for c in metric.get("charges") or [] if isinstance(c.get(figure), dict)]
        sources = charges or [metric]
        for source in sources:
            value = (source.get(figure) or {}).get(part)
            try:
                total += Decimal(str(value or 0))
            except ArithmeticError:  # Decimal's InvalidOperation: a figure that is no number
                raise UnexpectedAnswer(f"Zuora's preview gives {figure}.{part} = {value!r}, not a number") from None
    return total


def save_order_step(record: SyncRecord, account_number: str, subscription_number: str, **data: Any) -> None:
    summary = data.pop("summary", "") or ""
    record.zuora_account_number = account_number
    record.zuora_subscription_number = subscription_number
    record.summary = summary[:300]
    record.mark_step(
        "order",
        with_fields=("zuora_account_number", "zuora_subscription_number", "summary"),
        account_number=account_number,
        subscription_number=subscription_number,
        **data,
    )


def lead_field_values(account_number: str, subscription_number: str) -> dict[int, str]:
    """The configured lead fields that receive Zuora's numbers (none when not configured)."""
    values = {}
    if settings.KOMMO_ACCOUNT_FIELD_ID and account_number:
        values[settings.KOMMO_ACCOUNT_FIELD_ID] = account_number
    if settings.KOMMO_SUBSCRIPTION_FIELD_ID and subscription_number:
        values[settings.KOMMO_SUBSCRIPTION_FIELD_ID] = subscription_number
    return values


class Writes:
    """How the write-back reaches Kommo. A deal on its own sends its two writes itself, together; a burst
    (sync.flows.burst.BatchWrites) sends many deals' fields and notes 50 a call."""

    def __init__(self, kommo: KommoClient):
        self.kommo = kommo

    def acting(self, record: SyncRecord) -> contextlib.AbstractContextManager[Any]:
        """The context a deal's writes are made in (a single deal's task has already set it)."""
        return contextlib.nullcontext()

    def send(
        self, records: list[SyncRecord], values: dict[int, dict[int, str]], texts: dict[int, str]
    ) -> tuple[dict[int, Outcome], dict[int, Outcome]]:
        """Each deal's lead fields (where it has any) and note; what each came to, by record id."""
        fields, notes = {}, {}
        for record in records:
            with self.acting(record):
                wanted = values[record.id]
                fields[record.id], notes[record.id] = settle(
                    partial(self.kommo.update_lead_fields, record.lead_id, wanted) if wanted else None,
                    partial(self.kommo.add_note, "leads", record.lead_id, texts[record.id]),
                )
        return fields, notes


def write_back(records: list[SyncRecord], writes: Writes) -> dict[int, BaseException]:
    """The write-back to Kommo, the only one: each deal's lead fields and note. A deal writing both for the
    first time has its note step marked `attempted` (committed) before the writes leave, then both travel
    together (in a burst, with other deals'); a deal resuming sends what is left one step after the other,
    looking first for a note an earlier attempt may have written (write_note_once). Returns the deals that
    stopped, with why (the field refusal as a reason a person can act on)."""
    errors: dict[int, BaseException] = {}
    first: list[SyncRecord] = []
    for record in records:
        with writes.acting(record):
            try:
                if first_write(record):
                    record.mark_step("note", done=False, attempted=True)  # before the writes leave
                    first.append(record)
                else:
                    write_rest(record, writes.kommo)
            except Exception as exc:
                errors[record.id] = exc
    if not first:
        return errors
    values = {r.id: lead_field_values(r.zuora_account_number, r.zuora_subscription_number) for r in first}
    texts = {r.id: note_text(r) for r in first}
    fields, notes = writes.send(first, values, texts)
    for record in first:
        with writes.acting(record):
            try:
                kommo_told(
                    record, values[record.id], texts[record.id], fields.get(record.id, Outcome()), notes[record.id]
                )
            except Exception as exc:
                errors[record.id] = exc
    return errors


def first_write(record: SyncRecord) -> bool:
    """Neither write done, nor a note maybe written by an earlier attempt."""
    due = not record.step_done("lead_fields") and not record.step_done("note")
    return due and not record.step_data("note").get("attempted")


def write_rest(record: SyncRecord, kommo: KommoClient) -> None:
    """A resumed deal's writes still due, one after the other."""
    if not record.step_done("lead_fields"):
        write_lead_fields(record, kommo)
    if not record.step_done("note"):
        write_note_once(record, kommo, "leads", record.lead_id, note_text(record))


def kommo_told(record: SyncRecord, values: dict[int, str], text: str, fields: Outcome, note: Outcome) -> None:
    """Record what the field write and the note (sent together, after the note step was marked attempted)
    came to (both in one write); the first error is raised afterwards, the field refusal as a reason a person
    can act on."""
    done = {}
    if note.error is None:
        done["note"] = note_entry(text, "leads", record.lead_id, note.value)
    if fields.error is None:
        done["lead_fields"] = lead_fields_entry(values, fields.value)
    if done:
        record.mark_steps(done)
    if isinstance(fields.error, BusinessError):
        raise fields_refused(fields.error) from None
    if fields.error is not None:
        raise fields.error
    note.get()


def write_lead_fields(record: SyncRecord, kommo: KommoClient) -> None:
    values = lead_field_values(record.zuora_account_number, record.zuora_subscription_number)
    updated_at = None
    if values:
        try:
            updated_at = kommo.update_lead_fields(record.lead_id, values)
        except BusinessError as exc:
            raise fields_refused(exc) from None
    lead_fields_written(record, values, updated_at)


def fields_refused(exc: BusinessError) -> NeedsAttention:
    return NeedsAttention(
        f"Zuora is done, but Kommo refused the lead fields: {exc.message} (check "
        f"KOMMO_ACCOUNT_FIELD_ID / KOMMO_SUBSCRIPTION_FIELD_ID)"
    )


def lead_fields_written(record: SyncRecord, values: dict[int, str], updated_at: int | None) -> None:
    record.mark_step("lead_fields", **lead_fields_entry(values, updated_at))


def lead_fields_entry(values: dict[int, str], updated_at: int | None) -> dict[str, Any]:
    # updated_at: Kommo reports this write back as a lead `update` web hook; routing knows it for ours.
    return {"fields": {str(k): v for k, v in values.items()}, "updated_at": updated_at}


def note_text(record: SyncRecord) -> str:
    order = record.step_data("order")
    what = [record.summary] if record.summary else []
    if order.get("mrr") and order.get("currency"):
        what.append(f"{format_money(order['mrr'], order['currency'])} MRR")
    detail = f" ({', '.join(what)})" if what else ""
    if record.zuora_subscription_number:
        return kommo_texts.note(
            f"subscription {record.zuora_subscription_number} on account {record.zuora_account_number} is "
            f"active{detail}"
        )
    return kommo_texts.note(f"account {record.zuora_account_number} is billed{detail}")
