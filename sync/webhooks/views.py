"""Kommo's web hooks and Zuora's callouts: thin DRF views that authenticate, store the delivery in the
inbox, create the sync records it asks for and answer at once; the workers do the rest."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from rest_framework.exceptions import ParseError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from sync.lifecycle.routing import lifecycle_records
from sync.models import SyncRecord, WebhookEvent
from sync.preview.routing import preview_records
from sync.records import ensure_record, pace
from sync.webhooks import kommo, schema
from sync.webhooks.auth import KommoWebhookToken, ZuoraCalloutCredentials, require_signature
from sync.webhooks.base import MachineEndpoint
from sync.webhooks.inbox import body_hash, claim_event, outcome_written, refuse, store_event
from sync.webhooks.parsers import KommoForm, ZuoraCallout
from zkbridge.network import client_address

log = logging.getLogger("zkbridge.webhooks")


class KommoWebhookView(MachineEndpoint):
    """POST /webhooks/kommo/<token>/: leads that moved to Won become deal_won sync records; later edits
    and stage changes of billed deals become plan_change, cancellation or reopening records."""

    authentication_classes = [KommoWebhookToken]
    permission_classes = [IsAuthenticated]
    parser_classes = [KommoForm]

    @schema.kommo_webhook
    def post(self, request: Request, token: str) -> Response:
        received = self.received()
        # Stored first, in a transaction of its own, before it is judged: whatever happens next, the delivery
        # is in the inbox, and its outcome is written on it (processed, refused, or the error that stopped it).
        stored, _ = store_event("kommo", request, body_hash(received.body), received.body, problem=received.problem)
        if stored.processed_at is not None:  # a delivery already acted on (Kommo retries, duplicates)
            return Response({"ok": True, "duplicate": True})
        _, events = received.judged()
        won = kommo.won_leads(events, settings.KOMMO_WON_STATUS_ID)
        if len(won) > settings.ZKBRIDGE_MAX_LEADS_PER_WEBHOOK:
            problem = f"{len(won)} won leads in one web hook; at most {settings.ZKBRIDGE_MAX_LEADS_PER_WEBHOOK}"
            refuse(stored, problem)
            raise ParseError(problem)
        source = client_address(request) or "-"  # (the client behind our proxy: per-source budgets)
        new = self.not_recorded(won)
        with outcome_written(stored):
            try:  # the common case, a new delivery of new won leads: no savepoints
                outcome = self.record(stored, events, new, source, careful=False)
            except IntegrityError:  # a lead with a record already (or made meanwhile): one by one
                outcome = self.record(stored, events, new, source, careful=True)
        if outcome is None:
            return Response({"ok": True, "duplicate": True})
        records, changes, previews = outcome
        log.info(
            "kommo web hook %s: %s lead event(s), %s won, %s new sync record(s), %s change(s) to billed deals, "
            "%s quote preview(s)",
            stored.id,
            len(events),
            len(won),
            records,
            changes,
            previews,
        )
        return Response({"ok": True, "won": len(won), "new_records": records, "changes": changes, "previews": previews})

    @staticmethod
    def not_recorded(won: list) -> list:
        """The won leads that may have no deal_won record yet. A lead moved to Won now rarely has one; a
        lead edited while in Won usually has (Kommo reports zkbridge's own field writes as edits, one per
        billed deal): those are looked up in one query, so the delivery does not fail its plain insert
        and redo everything with savepoints. (A record created meanwhile still takes the careful path.)"""
        edits = [SyncRecord.deal_key(item.lead_id) for item in won if item.action != "status"]
        if not edits:
            return won
        known = set(SyncRecord.objects.filter(key__in=edits).values_list("kommo_lead_id", flat=True))
        return [item for item in won if item.lead_id not in known]

    @staticmethod
    def record(
        event: WebhookEvent, events: list, won: list, source: str, *, careful: bool
    ) -> tuple[int, int, int] | None:
        """Act on the stored delivery: its records, and the delivery marked processed, in one transaction;
        None when another request acted on it first. Not `careful`: every insert is plain, and any conflict
        (IntegrityError) undoes the whole transaction for the caller to run again carefully (savepoints:
        existing records reused)."""
        with transaction.atomic():
            if not claim_event(event):
                return None
            records, fresh = 0, set()
            for item in won:
                record, new = ensure_record(
                    SyncRecord.Kind.DEAL_WON,
                    SyncRecord.deal_key(item.lead_id),
                    enqueue=False,
                    savepoint=careful,
                    kommo_lead_id=item.lead_id,
                    payload=item.entity,
                    source_event=event,
                )
                if new:  # (a conflict later redoes this carefully: the source's budget counts it twice)
                    pace(record, source)
                    fresh.add(item.lead_id)
                records += new
            # A lead whose won record was created just now was never billed: no lifecycle to look for.
            rest = [e for e in events if e.lead_id not in fresh]
            changes = lifecycle_records(rest, event, source)
            previews = preview_records(rest, event, source)
        return records, changes, previews


def callout_key(request, body: bytes) -> str:
    """What makes a callout the same callout. With ZUORA_CALLOUT_HMAC_KEY, the hash of the signed body: the
    signature covers the body only, so an unsigned header (Zuora-Notification-Id) would let anyone who saw one
    signed callout replay it under new ids; Zuora's retries repeat the same body. Without a key,
    Zuora-Notification-Id (stable across Zuora's retries), else the body's hash."""
    if settings.ZUORA_CALLOUT_HMAC_KEY:
        return f"signed:{body_hash(body)}"
    notification_id = request.headers.get("Zuora-Notification-Id", "").strip()[:150]
    return f"notification:{notification_id}" if notification_id else body_hash(body)


class ZuoraCalloutView(MachineEndpoint):
    """POST /webhooks/zuora/: a billing event becomes a billing_event sync record."""

    authentication_classes = [ZuoraCalloutCredentials]
    permission_classes = [IsAuthenticated]
    parser_classes = [ZuoraCallout]

    @schema.zuora_callout
    def post(self, request: Request) -> Response:
        received = self.received()
        # The signature is checked before anything is stored: a forger fills no inbox and learns nothing.
        require_signature(request, received.body)
        # (a refused body is kept under its own hash: a later good callout with its notification id is not it)
        dedup = body_hash(received.body) if received.problem else callout_key(request, received.body)
        # Stored first, in a transaction of its own, before it is judged; its outcome is written on it.
        stored, _ = store_event("zuora", request, dedup, received.body, problem=received.problem)
        if stored.processed_at is not None:
            return Response({"ok": True, "duplicate": True})
        event = received.judged()
        with outcome_written(stored), transaction.atomic():
            if not claim_event(stored):
                return Response({"ok": True, "duplicate": True})
            ensure_record(
                SyncRecord.Kind.BILLING_EVENT,
                f"billing_event:{dedup}",
                payload={"event": event.as_dict()},
                source_event=stored,
                zuora_account_number=event.account_number,
                zuora_subscription_number=event.subscription_number,
                summary=event.event_type,
            )
        log.info("zuora callout %s: %s for %s", stored.id, event.event_type, event.account_number or "?")
        return Response({"ok": True, "event": event.event_type, "known": event.known})
