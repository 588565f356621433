"""Which Kommo lead events become which lifecycle records. Called by the web hook view, inside the
transaction that stores the delivery: database reads only, no call to Kommo or Zuora.

Only deals zkbridge billed (a successful won sync with a subscription) get lifecycle records; every other
lead's edits are none of zkbridge's business. The event is a hint: each flow re-reads the lead and acts
on its state then, so an old event arriving late never rolls a newer change back.
"""

from __future__ import annotations

from django.conf import settings

from catalog.planmap import plan_option
from sync.lifecycle.subscription import churned
from sync.models import SyncRecord, WebhookEvent
from sync.records import ensure_record, pace
from sync.webhooks.kommo import LeadEvent, latest_by_lead

UNDONE = (SyncRecord.Status.CANCELLED, SyncRecord.Status.IGNORED, SyncRecord.Status.RESOLVED)


def kind_for(event: LeadEvent, last_undo: dict[int, str]) -> str | None:
    """The lifecycle record a billed deal's event asks for; `last_undo`: the kind of each lead's latest
    cancellation or reopening still standing (see last_undo_kinds)."""
    if churned(event.status_id):
        return SyncRecord.Kind.CANCELLATION
    if event.status_id != settings.KOMMO_WON_STATUS_ID:
        return None
    if last_undo.get(event.lead_id) == SyncRecord.Kind.CANCELLATION:
        return SyncRecord.Kind.REOPENING  # Won again after a cancellation: undo it
    return SyncRecord.Kind.PLAN_CHANGE


def last_undo_kinds(lead_ids: list[int]) -> dict[int, str]:
    """Each lead's latest cancellation or reopening record that still stands, one query for a delivery
    (a batch edit's web hook reports up to 50 billed deals)."""
    rows = (
        SyncRecord.objects.filter(
            kommo_lead_id__in=lead_ids, kind__in=(SyncRecord.Kind.CANCELLATION, SyncRecord.Kind.REOPENING)
        )
        .exclude(status__in=UNDONE)
        .order_by("id")
        .values_list("kommo_lead_id", "kind")
    )
    return {lead_id: kind for lead_id, kind in rows if lead_id is not None}  # (by id: each lead's latest wins)


def hinted_plan(item: LeadEvent) -> str | None:
    """The plan field's value as the web hook shows it (None when the body does not carry the field)."""
    field_id = str(settings.KOMMO_PLAN_FIELD_ID or "")
    fields = item.entity.get("custom_fields")
    for field in (fields.values() if isinstance(fields, dict) else fields) or []:
        if isinstance(field, dict) and str(field.get("id")) == field_id:
            values = field.get("values")
            first = (list(values.values()) if isinstance(values, dict) else values or [None])[0]
            return plan_option(str(first.get("value") if isinstance(first, dict) else first or ""))
    return None


def own_write(deal: SyncRecord, item: LeadEvent) -> bool:
    """The update Kommo reports for zkbridge's own write of the account and subscription fields: the same
    updated_at Kommo answered that write with, and the plan the deal was billed on (Kommo's times are in
    seconds: a salesperson's change in that same second still shows in the plan)."""
    ours = deal.own_write_at
    if ours is None or str(item.entity.get("updated_at") or "") != str(ours):
        return False
    plan = hinted_plan(item)
    return plan is None or plan == deal.sold_plan


def lifecycle_records(events: list[LeadEvent], event: WebhookEvent, source: str) -> int:
    """Create the lifecycle records a delivery asks for; returns how many are new. A record of the same
    kind still waiting for a worker covers a newer event too (it re-reads the lead when it runs)."""
    latest = latest_by_lead(events)
    if not latest:
        return 0
    deals = list(SyncRecord.objects.billed().filter(status=SyncRecord.Status.SUCCEEDED, kommo_lead_id__in=list(latest)))
    created = 0
    won = [deal.lead_id for deal in deals if latest[deal.lead_id].status_id == settings.KOMMO_WON_STATUS_ID]
    undo = last_undo_kinds(won) if won else {}
    wanted: list[tuple[SyncRecord, LeadEvent, str]] = []
    for deal in deals:
        item = latest[deal.lead_id]
        kind = kind_for(item, undo)
        if kind is None or (kind == SyncRecord.Kind.PLAN_CHANGE and own_write(deal, item)):
            continue
        wanted.append((deal, item, kind))
    if not wanted:
        return 0
    # "A record of this kind already waits" is checked, then a record inserted: two deliveries about one deal at
    # once must not both find none. Each locks the deals it would add to (in id order: no deadlock between two
    # deliveries), so the second checks only once the first committed, and sees its record.
    list(SyncRecord.objects.filter(id__in=[deal.id for deal, _, _ in wanted]).order_by("id").select_for_update())
    for deal, item, kind in wanted:
        waiting = SyncRecord.objects.filter(kind=kind, kommo_lead_id=deal.lead_id, status__in=SyncRecord.RUNNABLE)
        if waiting.exists():
            continue
        record, new = ensure_record(
            kind,
            f"{kind}:{deal.lead_id}:{event.id}",
            enqueue=False,
            kommo_lead_id=deal.lead_id,
            zuora_account_number=deal.zuora_account_number,
            zuora_subscription_number=deal.zuora_subscription_number,
            payload=item.entity,
            source_event=event,
        )
        if new:
            pace(record, source)
        created += new
    return created
