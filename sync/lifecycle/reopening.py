"""A deal moved back to Won before its cancellation took effect: the cancellation is undone in Zuora.

Zuora undoes an order with `DELETE /v1/orders/{orderNumber}` (the subscription rolls back to its
previous version) while the order is the subscription's latest change and its charges are not invoiced;
otherwise it refuses, and the deal needs a person (with the reason, and a task on the deal).

Steps: lead (re-read: the deal must be Won), undo (delete zkbridge's cancellation order), refresh, note.
"""

from __future__ import annotations

from django.conf import settings

from sync import kommo_texts
from sync.clients.errors import BusinessError, NotFoundError
from sync.clients.kommo import KommoClient
from sync.clients.zuora import ZuoraClient
from sync.flows.deal_won import fetch_any_lead
from sync.flows.entities import zuora_for
from sync.kommo_tasks import write_note_once
from sync.lifecycle.subscription import billed_deal, in_order, read_current, refresh
from sync.models import SyncRecord
from sync.outcomes import Ignored, NeedsAttention
from sync.registry import flow
from zkbridge.business_time import business_today


@flow(SyncRecord.Kind.REOPENING)
def reopening(record: SyncRecord) -> None:
    kommo, zuora = KommoClient.from_settings(), zuora_for(record)
    lead = fetch_any_lead(kommo, record)
    deal = billed_deal(record)
    if not record.step_done("undo"):
        with in_order(record, deal.zuora_subscription_number):
            undo(record, zuora, lead)
    if not record.step_done("refresh"):
        refresh(record.zuora_subscription_number, record.kommo_lead_id, zuora)
        record.mark_step("refresh")
    if not record.step_done("note"):
        order = record.step_data("undo").get("order_number")
        write_note_once(
            record,
            kommo,
            "leads",
            record.lead_id,
            kommo_texts.note(
                f"the cancellation of subscription {record.zuora_subscription_number} is undone (order {order} "
                f"deleted): the subscription continues"
            ),
        )


def cancellation_order(record: SyncRecord) -> SyncRecord | None:
    """zkbridge's latest successful cancellation of this deal's subscription."""
    return (
        SyncRecord.objects.filter(
            kind=SyncRecord.Kind.CANCELLATION,
            kommo_lead_id=record.kommo_lead_id,
            status=SyncRecord.Status.SUCCEEDED,
            id__lt=record.id,
        )
        .order_by("-id")
        .first()
    )


def undo(record: SyncRecord, zuora: ZuoraClient, lead: dict) -> None:
    status = lead.get("status_id")
    if status != settings.KOMMO_WON_STATUS_ID:
        raise Ignored(f"the deal is not Won in Kommo (status {status}); nothing to undo")
    current = read_current(zuora, record.zuora_subscription_number)
    if not current.cancelled:
        if record.step_data("undo").get("attempted"):
            record.mark_step("undo", found=True)
            return
        raise Ignored(f"{current.number} is not cancelled in Zuora ({current.status}); nothing to undo")
    cancelled_by = cancellation_order(record)
    order_number = (cancelled_by.step_data("order").get("order_number") if cancelled_by else "") or ""
    if not order_number:
        raise NeedsAttention(
            f"{current.number} was cancelled in Zuora, not by zkbridge: there is no cancellation order of ours to undo",
            task=kommo_texts.task(
                "this deal is Won again, but its subscription was cancelled outside zkbridge",
                "ask RevOps to renew or re-create it in Zuora",
            ),
        )
    if current.ends_on and current.ends_on <= business_today():
        raise NeedsAttention(
            f"the cancellation of {current.number} took effect on {current.ends_on}; Zuora cannot undo it",
            task=kommo_texts.task(
                f"this deal is Won again, but its subscription ended on {current.ends_on}",
                "ask RevOps to renew it in Zuora, or bill it as a new sale",
            ),
        )
    record.mark_step("undo", done=False, attempted=True, order_number=order_number)
    try:
        zuora.delete_order(order_number)
    except NotFoundError:  # deleted by an earlier attempt whose answer was lost, or by someone in Zuora
        if read_current(zuora, current.number).cancelled:
            raise NeedsAttention(
                f"Zuora no longer has order {order_number}, yet {current.number} is still cancelled"
            ) from None
    except BusinessError as exc:
        raise NeedsAttention(
            f"Zuora cannot undo the cancellation: {exc.message}",
            task=kommo_texts.task(
                f"this deal is Won again, but Zuora cannot undo its cancellation ({exc.message})",
                "ask RevOps to renew the subscription in Zuora",
            ),
        ) from None
    record.summary = f"undo cancellation {order_number}"
    record.save(update_fields=["summary", "updated_at"])
    record.mark_step("undo", order_number=order_number)
