"""A lead in a proposal stage is priced before it is won: the sale resolved exactly as the won flow resolves it
(plan map, sellability on the expected close date, entity, currency, tiers, who is billed) and handed to Zuora's
order preview. Nothing is created in Zuora.

The lead gets a note and the configured fields (KOMMO_PREVIEW_FIELD_IDS) with MRR, TCV, the first invoice's
amount and date and the term; a sale that cannot be billed gets its Kommo task now (one per reason), so the Won
moment is clean. What was priced is remembered as a fingerprint on the lead's QuotePreview: an edit that changes
nothing billable (zkbridge's own field write, reported back by Kommo, among them) writes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.utils import timezone

from sync import kommo_texts, orders
from sync.clients.errors import ApiError, BusinessError, NotFoundError, UnexpectedAnswer
from sync.clients.kommo import KommoClient
from sync.clients.zuora import ZuoraClient
from sync.flows.customer import customer_of
from sync.flows.deal_won import Reads, metric_sum, read_lead, what_is_sold
from sync.flows.entities import route
from sync.flows.sale import Sale, charge_overrides, field_value, resolve_sale, subscription_terms
from sync.locks import release, try_lock
from sync.models import SyncRecord
from sync.money import decimals, format_money
from sync.outcomes import Ignored, NeedsAttention, Waiting
from sync.parallel import settle, together
from sync.preview.models import QuotePreview
from sync.registry import flow
from zkbridge.business_time import business_today, date_of_timestamp

log = logging.getLogger("zkbridge.sync")
AGAIN = dt.timedelta(seconds=10)


@dataclass(frozen=True)
class Quote:
    """Zuora's figures for a sale (None where Zuora's answer states none)."""

    currency: str
    mrr: Decimal | None
    tcv: Decimal | None
    first_invoice: Decimal | None
    first_invoice_date: dt.date | None
    term: str


@flow(SyncRecord.Kind.QUOTE_PREVIEW)
def quote_preview(record: SyncRecord) -> None:
    # At most one preview in flight per lead: a second one (Kommo reporting the first's own field write, say) waits
    # for the first to finish, then finds its fingerprint and writes nothing.
    held = try_lock(f"quote_preview:{record.kommo_lead_id}")
    if held is None:
        raise Waiting("another preview of this lead is in flight", AGAIN)
    try:
        preview_lead(record)
    finally:
        release(held)


def preview_lead(record: SyncRecord) -> None:
    kommo = KommoClient.from_settings()
    lead = read_lead(kommo.get_lead, record)
    record.mark_step("lead", responsible_user_id=lead.get("responsible_user_id"), name=lead.get("name"))
    if lead.get("status_id") not in settings.KOMMO_PREVIEW_STATUS_IDS:
        raise Ignored(f"the lead left the preview stages (status {lead.get('status_id')}); nothing was written")
    if SyncRecord.objects.deal_of(record.lead_id) is not None:
        raise Ignored("the lead was already won: its deal is billed by its won record, not previewed")
    state, _ = QuotePreview.objects.get_or_create(lead_id=record.lead_id)
    reads = Reads(kommo, ZuoraClient.from_settings())
    try:
        sale = priced_sale(reads, lead)
    except NeedsAttention as exc:
        cannot_bill(record, state, kommo, exc)
        return
    fingerprint = fingerprint_of(sale, reads)
    if fingerprint == state.fingerprint:
        record.summary = "unchanged since the last preview: nothing written"
        record.save(update_fields=["summary"])
        return
    try:
        quote = ask_zuora(reads.zuora, record, sale)
    except BusinessError as exc:
        refused(record, state, kommo, exc.message.removeprefix("Zuora: "), fingerprint)
        return
    tell_kommo(record, state, kommo, sale, quote, fingerprint)


def priced_sale(reads: Reads, lead: dict[str, Any]) -> Sale:
    """The sale as the won flow would bill it on the expected close date; NeedsAttention (with its task) when it
    could not be billed: unmapped, not sellable by then, a currency the plans have no price in, tiers that do
    not apply, no customer or no billing e-mail."""
    reads.in_entity(route(lead))
    contacts_read, company_read = reads.people(lead)
    sale = resolve_sale(lead, on=expected_close(lead), entity=reads.entity)
    contacts, company = together(contacts_read, company_read)
    customer_of(lead, contacts, company)
    return sale


def expected_close(lead: dict[str, Any]) -> dt.date:
    """The lead's expected close date (KOMMO_CLOSE_DATE_FIELD_ID), or today when it is not set or past: the day
    the sale's plans must be sellable on, and the contract date the preview prices from."""
    today = business_today()
    value = field_value(lead, settings.KOMMO_CLOSE_DATE_FIELD_ID)
    if value.lstrip("-").isdigit():
        day = date_of_timestamp(int(value))
        return max(day, today)
    return today


def fingerprint_of(sale: Sale, reads: Reads) -> str:
    """What is priced, as a short hash: the entity, currency, contract date, terms and each item's rate plan,
    quantity, price and tiers (and the charges' overrides they make)."""
    items = [
        {
            "plan": item.rate_plan.zuora_id,
            "quantity": str(item.quantity),
            "price": str(item.price),
            "tiers": item.tiers,
            "overrides": charge_overrides(item),
            "one_time": item in sale.one_time_items,
        }
        for item in sale.subscription_items + sale.one_time_items
    ]
    what = {
        "entity": reads.entity.pk if reads.entity else None,
        "currency": sale.currency,
        "on": sale.contract_date.isoformat(),
        "terms": subscription_terms(sale),
        "items": items,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def ask_zuora(zuora: ZuoraClient, record: SyncRecord, sale: Sale) -> Quote:
    """Zuora's preview of the order the won flow would send (for a stand-in account in the deal's currency: the
    figures do not depend on who is billed), its charge metrics and its invoices."""
    order = {"orderDate": sale.contract_date.isoformat(), **what_is_sold(record, sale)}
    body = orders.preview(order, account_info={"currency": sale.currency, "billCycleDay": 1}, invoices=True)
    answer = zuora.preview_order(body)
    result = answer.get("previewResult") or {}
    metrics = result.get("chargeMetrics") or []
    first, first_date = first_invoice(result.get("invoices") or [])
    return Quote(
        currency=sale.currency,
        mrr=metric_sum(metrics, "cmrr", "regular") if metrics else None,
        tcv=metric_sum(metrics, "tcv", "regular") if metrics else None,
        first_invoice=first,
        first_invoice_date=first_date,
        term=term_text(sale),
    )


def first_invoice(invoices: list[dict]) -> tuple[Decimal | None, dt.date | None]:
    """The first invoice the customer receives: the invoice items of the earliest service period (Zuora's preview
    through the term's end lists every period's items, on one invoice or several), with their tax."""
    items = []
    for invoice in invoices:
        for item in invoice.get("invoiceItems") or []:
            try:
                start = dt.date.fromisoformat(str(item.get("serviceStartDate")))
                amount = Decimal(str(item.get("amountWithoutTax") or 0)) + Decimal(str(item.get("taxAmount") or 0))
            except (ValueError, ArithmeticError):
                raise UnexpectedAnswer(
                    f"Zuora's preview has an invoice item that cannot be read: {item!r}"[:300]
                ) from None
            items.append((start, amount))
    if not items:
        return None, None
    day = min(start for start, _ in items)
    return sum((amount for start, amount in items if start == day), Decimal(0)), day


def term_text(sale: Sale) -> str:
    terms = subscription_terms(sale)
    if not sale.subscription_items:
        return "one-time sale"
    initial = terms["initialTerm"]
    if initial["termType"] == "EVERGREEN":
        return "evergreen (no end date)"
    months = f"{initial['period']} months"
    if not terms.get("autoRenew"):
        return f"{months}, not renewed automatically"
    return f"{months}, renews for {terms['renewalTerms'][0]['period']} months"


def field_values(quote: Quote) -> dict[int, str | None]:
    """The configured preview fields and their values (a figure Zuora did not state clears its field)."""

    def amount(value: Decimal | None) -> str | None:  # in the currency's places: 300.00, ¥30000
        return None if value is None else str(value.quantize(Decimal(1).scaleb(-decimals(quote.currency))))

    wanted: dict[str, str | None] = {
        "mrr": amount(quote.mrr),
        "tcv": amount(quote.tcv),
        "first_invoice": amount(quote.first_invoice),
        "first_invoice_date": str(int(dt.datetime.combine(quote.first_invoice_date, dt.time(12), dt.UTC).timestamp()))
        if quote.first_invoice_date
        else None,
        "term": quote.term,
    }
    return {field_id: wanted[name] for name, field_id in settings.KOMMO_PREVIEW_FIELD_IDS.items()}


def note_text(sale: Sale, quote: Quote) -> str:
    figures = []
    if quote.mrr is not None:
        figures.append(f"{format_money(quote.mrr, quote.currency)} MRR")
    if quote.tcv is not None:
        figures.append(f"{format_money(quote.tcv, quote.currency)} TCV")
    if quote.first_invoice is not None and quote.first_invoice_date is not None:
        figures.append(
            f"first invoice {format_money(quote.first_invoice, quote.currency)} on {quote.first_invoice_date:%Y-%m-%d}"
        )
    figures.append(quote.term)
    return kommo_texts.note(
        f"quote for {sale.label} from {sale.contract_date:%Y-%m-%d}: {', '.join(figures)}. Nothing is billed "
        f"until the deal is won"
    )


def tell_kommo(
    record: SyncRecord, state: QuotePreview, kommo: KommoClient, sale: Sale, quote: Quote, fingerprint: str
) -> None:
    """The figures on the lead (fields and a note, together); an open preview task is completed: its cause is
    gone. The fingerprint is kept only once both writes went through (a retry writes them again)."""
    values = field_values(quote)
    text = note_text(sale, quote)
    fields, note = settle(
        partial(kommo.update_lead_fields, record.lead_id, values) if values else None,
        partial(kommo.add_note, "leads", record.lead_id, text),
    )
    if isinstance(fields.error, BusinessError):
        raise NeedsAttention(
            f"Zuora priced the quote but Kommo refused the preview fields: {fields.error.message} (check "
            f"KOMMO_PREVIEW_FIELD_IDS)"
        ) from None
    fields.get()
    note.get()
    close_task(state, kommo, "fixed: the deal now prices in Zuora")
    state.fingerprint = fingerprint
    state.summary = sale.label[:300]
    state.currency = quote.currency
    state.mrr, state.tcv = quote.mrr, quote.tcv
    state.first_invoice, state.first_invoice_date = quote.first_invoice, quote.first_invoice_date
    state.term = quote.term[:100]
    state.problem = state.refused = ""
    state.previewed_at = timezone.now()
    state.save()
    record.summary = f"quoted {sale.label}"[:300]
    record.save(update_fields=["summary"])


def cannot_bill(record: SyncRecord, state: QuotePreview, kommo: KommoClient, exc: NeedsAttention) -> None:
    """The sale cannot be billed as it stands: the salesperson's task now, once per reason (a new reason
    completes the old task first). The preview's record ends here: the problem is the salesperson's to fix,
    and their edit previews the lead again."""
    record.summary = f"cannot be billed as it stands: {exc.reason}"[:300]
    record.save(update_fields=["summary"])
    if state.problem == exc.reason and state.task_id:
        return
    close_task(state, kommo, f"replaced by a newer task: {exc.reason}")
    text = exc.task or kommo_texts.task(
        f"this deal could not be priced in Zuora: {exc.reason}", "fix it before the deal is won, or ask RevOps"
    )
    try:
        task_id = kommo.add_task(
            record.lead_id,
            text,
            due=timezone.now() + dt.timedelta(days=1),
            responsible_user_id=record.responsible_user_id,
        )
    except BusinessError as err:  # the record says what is wrong; the task is a courtesy
        log.warning("sync_record=%s could not open the preview's Kommo task: %s", record.id, err)
        task_id = None
    QuotePreview.objects.filter(pk=state.pk).update(
        problem=exc.reason, refused="", fingerprint="", task_id=task_id, updated_at=timezone.now()
    )


def refused(record: SyncRecord, state: QuotePreview, kommo: KommoClient, message: str, fingerprint: str) -> None:
    """Zuora refused the preview: its reason on the lead as a note, once (the same sale refused again writes
    nothing; no retry: the sale must change first)."""
    record.summary = f"Zuora refused the preview: {message}"[:300]
    record.save(update_fields=["summary"])
    if state.refused == message and state.fingerprint == fingerprint:
        return
    kommo.add_note(
        "leads",
        record.lead_id,
        kommo_texts.note(f"the quote was refused in preview: {message}. Ask RevOps before the deal is won"),
    )
    QuotePreview.objects.filter(pk=state.pk).update(refused=message, fingerprint=fingerprint, updated_at=timezone.now())


def close_task(state: QuotePreview, kommo: KommoClient, outcome: str) -> None:
    """Complete the lead's open preview task (a task deleted in Kommo counts as completed)."""
    if not state.task_id:
        return
    try:
        kommo.complete_task(state.task_id, kommo_texts.result(outcome))
    except NotFoundError:
        pass
    except ApiError as err:
        if not isinstance(err, BusinessError):
            raise
        log.warning("lead %s: Kommo refused to complete preview task %s: %s", state.lead_id, state.task_id, err)
    QuotePreview.objects.filter(pk=state.pk).update(task_id=None, problem="")
    state.task_id, state.problem = None, ""
