"""Machine endpoints: thin views that validate, store, create records and enqueue."""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sync import api_schema, kommo_webhook, usage, zuora_callout
from sync.inbox import body_hash, ensure_record, store_event
from sync.installation import kommo_webhook_token
from sync.models import SyncRecord, WebhookEvent

log = logging.getLogger("zkbridge.webhooks")


def read_body(request: HttpRequest) -> bytes | None:
    """The raw body, or None when it is larger than ZKBRIDGE_MAX_BODY_BYTES."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        return None
    try:
        return request.body
    except RequestDataTooBig:
        return None


class MachineEndpoint(APIView):
    """No session, no CSRF, no DRF auth: each endpoint checks its own secret."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes: list = []


class KommoWebhook(MachineEndpoint):
    @api_schema.kommo_webhook
    def post(self, request: Request, token: str) -> Response:
        if not hmac.compare_digest(token.encode(), kommo_webhook_token().encode()):
            return Response({"error": "not found"}, status=404)
        body = read_body(request._request)
        if body is None:
            return Response({"error": f"body larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"}, status=413)
        try:
            _, events = kommo_webhook.parse(body)
        except kommo_webhook.NotKommoFormat as exc:
            return Response({"error": f"not a Kommo web hook: {exc}"}, status=400)
        won = kommo_webhook.won_leads(events, settings.KOMMO_WON_STATUS_ID)
        with transaction.atomic():
            event, created = store_event("kommo", request._request, body_hash(body))
            if not created:
                return Response({"ok": True, "duplicate": True})
            records = 0
            for item in won:
                _, new = ensure_record(
                    SyncRecord.Kind.DEAL_WON,
                    f"deal_won:{item.lead_id}",
                    kommo_lead_id=item.lead_id,
                    payload=item.entity,
                    source_event=event,
                )
                records += new
            event.processed_at = timezone.now()
            event.save(update_fields=["processed_at"])
        log.info(
            "kommo web hook %s: %s lead event(s), %s won, %s new sync record(s)",
            event.id,
            len(events),
            len(won),
            records,
        )
        return Response({"ok": True, "won": len(won), "new_records": records})


class UsageFeed(APIView):
    """POST /api/usage/: a JSON array or CSV of usage records; idempotent on unique_key."""

    @api_schema.usage_feed
    def post(self, request: Request) -> Response:
        body = read_body(request._request)
        if body is None:
            return Response({"error": f"body larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"}, status=413)
        try:
            rows = usage.read_rows(body, request.content_type or "")
        except usage.BadFeed as exc:
            return Response({"error": str(exc)}, status=400)
        intake = usage.accept(rows)
        return Response(
            {"accepted": intake.accepted, "duplicates": intake.duplicates, "rejected": intake.rejected}, status=202
        )


def challenge(detail: str) -> Response:
    response = Response({"error": detail}, status=401)
    response["WWW-Authenticate"] = 'Basic realm="zkbridge Zuora callouts", charset="UTF-8"'
    return response


class ZuoraCallout(MachineEndpoint):
    """Zuora's HTTP callouts: Basic auth (challenge first, as Zuora performs it), optional HMAC."""

    @api_schema.zuora_callout
    def post(self, request: Request) -> Response:
        raw = request._request
        username, password = settings.ZUORA_CALLOUT_USERNAME, settings.ZUORA_CALLOUT_PASSWORD
        if username and password:
            if not zuora_callout.credentials_match(raw.headers.get("Authorization", ""), username, password):
                return challenge("credentials missing or wrong")
        elif not settings.ZKBRIDGE_SANDBOX:
            log.warning("Zuora callout refused: ZUORA_CALLOUT_USERNAME and ZUORA_CALLOUT_PASSWORD are not set")
            return challenge("callouts are refused until ZUORA_CALLOUT_USERNAME and ZUORA_CALLOUT_PASSWORD are set")
        body = read_body(raw)
        if body is None:
            return Response({"error": f"body larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"}, status=413)
        if settings.ZUORA_CALLOUT_HMAC_KEY:
            signature = raw.headers.get(settings.ZUORA_CALLOUT_HMAC_HEADER, "")
            if not signature or not zuora_callout.signature_valid(body, signature, settings.ZUORA_CALLOUT_HMAC_KEY):
                return challenge(f"{settings.ZUORA_CALLOUT_HMAC_HEADER} signature missing or wrong")
        try:
            event = zuora_callout.parse(body)
        except zuora_callout.BadCallout as exc:
            return Response({"error": f"not a zkbridge callout: {exc}"}, status=400)
        notification_id = raw.headers.get("Zuora-Notification-Id", "").strip()[:150]
        dedup = f"notification:{notification_id}" if notification_id else body_hash(body)
        with transaction.atomic():
            stored, created = store_event("zuora", raw, dedup)
            if not created:
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
            stored.processed_at = timezone.now()
            stored.save(update_fields=["processed_at"])
        log.info("zuora callout %s: %s for %s", stored.id, event.event_type, event.account_number or "?")
        return Response({"ok": True, "event": event.event_type, "known": event.known})


def healthz(request: HttpRequest) -> JsonResponse:
    """Database reachability, queue depth and age, last webhook and last successful sync."""
    from sync.dashboard import queue_state

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error means: not healthy
        return JsonResponse({"database": "error", "detail": str(exc)[:200]}, status=503)
    last_ok = SyncRecord.objects.filter(status=SyncRecord.Status.SUCCEEDED).order_by("-finished_at").first()
    last_hook = WebhookEvent.objects.filter(source="kommo").order_by("-received_at").first()
    last_callout = WebhookEvent.objects.filter(source="zuora").order_by("-received_at").first()
    queue = queue_state()
    return JsonResponse(
        {
            "database": "ok",
            "queue": {"queued": queue["depth"], "oldest_waiting_seconds": queue["oldest_age_seconds"]},
            "last_successful_sync": last_ok.finished_at.isoformat() if last_ok and last_ok.finished_at else None,
            "last_kommo_webhook": last_hook.received_at.isoformat() if last_hook else None,
            "last_zuora_callout": last_callout.received_at.isoformat() if last_callout else None,
            "needs_attention": SyncRecord.objects.filter(status=SyncRecord.Status.NEEDS_ATTENTION).count(),
            "sandbox": settings.ZKBRIDGE_SANDBOX,
        }
    )
