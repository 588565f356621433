"""Which Kommo lead events ask for a quote preview. Called by the web hook view inside the transaction that stores
the delivery: database reads and writes only, no call to Kommo or Zuora."""

from __future__ import annotations

from django.conf import settings

from sync.models import SyncRecord, WebhookEvent
from sync.preview.models import QuotePreview
from sync.records import ensure_record, pace
from sync.webhooks.kommo import LeadEvent, latest_by_lead


def preview_records(events: list[LeadEvent], event: WebhookEvent, source: str) -> int:
    """A quote_preview record for each lead the delivery shows in a preview stage (moved there, or edited while
    there), unless one already waits for a worker (it re-reads the lead when it runs) or the lead has a won
    record. Returns how many are new."""
    stages = settings.KOMMO_PREVIEW_STATUS_IDS
    if not stages:
        return 0
    latest = latest_by_lead(events)
    leads = sorted(lead_id for lead_id, item in latest.items() if item.status_id in stages)
    if not leads:
        return 0
    won = set(SyncRecord.objects.deals().filter(kommo_lead_id__in=leads).values_list("kommo_lead_id", flat=True))
    leads = [lead_id for lead_id in leads if lead_id not in won]
    if not leads:
        return 0
    # "A preview already waits" is checked, then a record inserted: two deliveries about one lead at once must not
    # both find none. Each locks the leads' rows (id order: no deadlock), so the second checks after the first
    # committed.
    QuotePreview.objects.bulk_create([QuotePreview(lead_id=lead_id) for lead_id in leads], ignore_conflicts=True)
    list(QuotePreview.objects.filter(lead_id__in=leads).order_by("lead_id").select_for_update())
    waiting = set(
        SyncRecord.objects.filter(
            kind=SyncRecord.Kind.QUOTE_PREVIEW, kommo_lead_id__in=leads, status__in=SyncRecord.RUNNABLE
        ).values_list("kommo_lead_id", flat=True)
    )
    created = 0
    for lead_id in leads:
        if lead_id in waiting:
            continue
        record, new = ensure_record(
            SyncRecord.Kind.QUOTE_PREVIEW,
            f"{SyncRecord.Kind.QUOTE_PREVIEW}:{lead_id}:{event.id}",
            enqueue=False,
            kommo_lead_id=lead_id,
            payload=latest[lead_id].entity,
            source_event=event,
        )
        if new:
            pace(record, source)
        created += new
    return created
