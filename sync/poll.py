"""The safety net for lost web hooks: won leads updated since the last run that have no sync record."""

from __future__ import annotations

import logging
import time

from django.conf import settings

from sync.clients.kommo import KommoClient
from sync.models import Cursor, SyncRecord
from sync.records import ensure_record

log = logging.getLogger("zkbridge.poll")
OVERLAP_SECONDS = 300  # look a little further back than the last run: clocks and slow writes
FIRST_RUN_LOOKBACK = 7 * 86400


def poll_kommo(since: int | None = None) -> dict[str, int]:
    """Enqueue every won lead updated since the last run (or `since`) that zkbridge has not seen."""
    started = int(time.time())
    cursor = Cursor.objects.filter(name="poll_kommo").first()
    if since is None:
        since = int(cursor.value) - OVERLAP_SECONDS if cursor else started - FIRST_RUN_LOOKBACK
    kommo = KommoClient.from_settings()
    pipelines = kommo.pipelines()
    statuses = [(p["id"], settings.KOMMO_WON_STATUS_ID) for p in pipelines] or None
    seen = created = 0
    batch: list[dict] = []

    def flush() -> int:
        ids = [lead["id"] for lead in batch]
        known = set(SyncRecord.objects.deals().filter(kommo_lead_id__in=ids).values_list("kommo_lead_id", flat=True))
        count = 0
        for lead in batch:
            if lead["id"] not in known:
                _, new = ensure_record(
                    SyncRecord.Kind.DEAL_WON,
                    SyncRecord.deal_key(lead["id"]),
                    kommo_lead_id=lead["id"],
                    payload={"id": lead["id"], "found_by": "poll_kommo"},
                )
                count += new
        batch.clear()
        return count

    for lead in kommo.won_leads(statuses, updated_from=since, status_id=settings.KOMMO_WON_STATUS_ID):
        seen += 1
        batch.append(lead)
        if len(batch) >= 250:
            created += flush()
    created += flush()
    Cursor.objects.update_or_create(name="poll_kommo", defaults={"value": str(started)})
    if created:
        log.warning("poll_kommo: %s won lead(s) had no sync record (lost web hooks?)", created)
    return {"won_leads_seen": seen, "enqueued": created}
