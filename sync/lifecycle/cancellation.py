"""A billed deal moved to Lost (or a churn status): its Zuora subscription is cancelled per policy.

Steps: lead (re-read: the deal must still be Lost), order (one CancelSubscription, dated by
ZKBRIDGE_CANCEL_POLICY), refresh (the mirror), note (on the deal: when the subscription ends).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings

from sync import kommo_texts, orders
from sync.clients.errors import BusinessError
from sync.clients.kommo import KommoClient
from sync.clients.zuora import ZuoraClient
from sync.flows.deal_won import fetch_any_lead
from sync.flows.entities import zuora_for
from sync.kommo_tasks import write_note_once
from sync.lifecycle.subscription import (
    Current,
    billed_deal,
    churned,
    in_order,
    lead_date,
    read_current,
    refresh,
)
from sync.models import SyncRecord
from sync.outcomes import Ignored, NeedsAttention
from sync.registry import flow
from zkbridge.business_time import business_today

SAID = {
    "EndOfCurrentTerm": "at the end of the current term (no proration)",
    "EndOfLastInvoicePeriod": "at the end of the last invoiced period (no proration, no credit)",
    "SpecificDate": "on the deal's cancellation date",
}


@flow(SyncRecord.Kind.CANCELLATION)
def cancellation(record: SyncRecord) -> None:
    kommo, zuora = KommoClient.from_settings(), zuora_for(record)
    lead = fetch_any_lead(kommo, record)
    deal = billed_deal(record)
    if not record.step_done("order"):
        with in_order(record, deal.zuora_subscription_number):
            cancel(record, zuora, lead)
    if not record.step_done("refresh"):
        refresh(record.zuora_subscription_number, record.kommo_lead_id, zuora)
        record.mark_step("refresh")
    if not record.step_done("note"):
        write_note_once(record, kommo, "leads", record.lead_id, note_text(record))


def cancel(record: SyncRecord, zuora: ZuoraClient, lead: dict) -> None:
    status = lead.get("status_id")
    if not churned(status):
        raise Ignored(f"the deal is no longer Lost in Kommo (status {status}); nothing sent")
    current = read_current(zuora, record.zuora_subscription_number)
    if current.cancelled:
        if record.step_data("order").get("attempted"):  # our order reached Zuora; its answer was lost
            record.mark_step(
                "order", found=True, effective=str(current.ends_on), order_number=last_cancel_order(zuora, current)
            )
            return
        raise Ignored(f"{current.number} is already cancelled in Zuora (ends {current.ends_on}); nothing sent")
    policy, effective = cancellation_date(current, lead)
    action: dict[str, Any] = {"cancellationPolicy": policy}
    if policy == "SpecificDate":
        action["cancellationEffectiveDate"] = effective.isoformat()
    cancel = {
        "type": "CancelSubscription",
        "triggerDates": [{"name": "ContractEffective", "triggerDate": effective.isoformat()}],
        "cancelSubscription": action,
    }
    order = orders.change(
        business_today(), account_number=current.account_number, subscription_number=current.number, actions=[cancel]
    )
    record.mark_step("order", done=False, attempted=True, policy=policy, effective=effective.isoformat())
    try:
        result = zuora.create_order(
            order, idempotency_key=record.idempotency_key("order"), track_id=f"zkbridge-{record.id}"
        )
    except BusinessError as exc:
        raise NeedsAttention(
            f"Zuora refused the cancellation: {exc.message}",
            task=kommo_texts.task(
                f"Zuora refused to cancel this deal's subscription: {exc.message}", "ask RevOps to look into it"
            ),
        ) from None
    record.summary = f"cancel {current.number} on {effective}"
    record.save(update_fields=["summary", "updated_at"])
    record.mark_step("order", order_number=result.order_number)


def last_cancel_order(zuora: ZuoraClient, current: Current) -> str:
    """The number of the order that cancelled the subscription (to undo it if the deal is won again)."""
    for order in reversed(zuora.orders_of_subscription(current.number)):
        for sub in order.get("subscriptions") or []:
            if any(a.get("type") == "CancelSubscription" for a in sub.get("orderActions") or []):
                return str(order.get("orderNumber") or "")
    return ""


def cancellation_date(current: Current, lead: dict) -> tuple[str, dt.date]:
    """The policy Zuora gets and the date the subscription ends. An evergreen subscription has no term
    end: 'end of current term' cancels it at the end of its last invoiced period instead."""
    policy = settings.ZKBRIDGE_CANCEL_POLICY
    if policy == "EndOfCurrentTerm" and current.term_end is None:
        policy = "EndOfLastInvoicePeriod"
    if policy == "EndOfCurrentTerm":
        assert current.term_end is not None
        return policy, current.term_end
    if policy == "EndOfLastInvoicePeriod":
        return policy, current.charged_through or current.term_start or business_today()
    day = lead_date(lead, settings.KOMMO_CANCEL_DATE_FIELD_ID, "cancellation date")
    start = current.contract_effective or current.term_start
    if start and day < start:
        raise NeedsAttention(
            f"the cancellation date {day} is before the subscription's start {start}; nothing was sent",
            task=kommo_texts.task(
                f"the cancellation date on this deal ({day}) is before the subscription started ({start})",
                "correct the cancellation date",
            ),
        )
    return policy, day


def note_text(record: SyncRecord) -> str:
    order = record.step_data("order")
    said = SAID.get(order.get("policy", ""), "")
    detail = f" {said}" if said else ""
    return kommo_texts.note(
        f"subscription {record.zuora_subscription_number} is cancelled{detail}: billing ends on "
        f"{order.get('effective')}"
    )
