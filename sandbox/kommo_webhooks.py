"""The Kommo emulator's web hooks: subscriptions (GET/POST/DELETE /api/v4/webhooks) and deliveries,
form-encoded with PHP-style keys as Kommo sends them."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator

import requests
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from qs_codec import EncodeOptions, encode

from sandbox.common import get_setting, json_body, problem
from sandbox.kommo import ACCOUNT_ID, SUBDOMAIN, kommo_view, unix_now
from sandbox.models import (
    KLead,
    KWebhook,
    KWebhookDelivery,
)

log = logging.getLogger("zkbridge.sandbox")


# --- Web hooks -------------------------------------------------------------------------------------
@kommo_view
def webhooks(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        hooks = list(KWebhook.objects.order_by("id"))
        if not hooks:
            return HttpResponse(status=204)
        return JsonResponse(
            {
                "_total_items": len(hooks),
                "_embedded": {
                    "webhooks": [
                        {
                            "id": h.id,
                            "destination": h.destination,
                            "settings": h.settings,
                            "disabled": h.disabled,
                            "created_at": h.created_at,
                            "account_id": ACCOUNT_ID,
                        }
                        for h in hooks
                    ]
                },
            }
        )
    try:
        body = json_body(request)
        assert isinstance(body, dict) and str(body.get("destination", "")).startswith(("http://", "https://"))
    except (ValueError, AssertionError):
        return problem(
            400,
            "Bad Request",
            "Request validation failed",
            [{"code": "FieldMissing", "path": "destination", "detail": "This field is missing"}],
        )
    if request.method == "POST":
        settings = body.get("settings") or ["status_lead"]
        hook, _ = KWebhook.objects.update_or_create(
            destination=body["destination"],
            defaults={"settings": settings, "disabled": False, "failures": 0, "created_at": unix_now()},
        )
        return JsonResponse(
            {
                "id": hook.id,
                "destination": hook.destination,
                "settings": hook.settings,
                "disabled": False,
                "created_at": hook.created_at,
                "account_id": ACCOUNT_ID,
            },
            status=201,
        )
    if request.method == "DELETE":
        KWebhook.objects.filter(destination=body["destination"]).delete()
        return HttpResponse(status=204)
    return problem(405, "Method Not Allowed", "Use GET, POST or DELETE")


def lead_entity(lead: KLead, old_status: int) -> dict:
    """A lead as a web hook shows it, PHP-style keys to be, every value a string."""
    fields = []
    for field in lead.custom_fields_values or []:
        values = []
        for value in field.get("values") or []:
            # Kommo's quirk: date fields arrive as values[0]=<unix> with no [value] key.
            if field.get("field_type") == "date":
                values.append(str(value.get("value")))
            else:
                item = {"value": str(value.get("value"))}
                if value.get("enum_id"):
                    item["enum"] = str(value["enum_id"])
                values.append(item)
        fields.append({"id": str(field["field_id"]), "name": field.get("field_name") or "", "values": values})
    entity = {
        "id": str(lead.id),
        "name": lead.name,
        "status_id": str(lead.status_id),
        "old_status_id": str(old_status),
        "pipeline_id": str(lead.pipeline_id),
        "old_pipeline_id": str(lead.pipeline_id),
        "price": str(lead.price),
        "responsible_user_id": str(lead.responsible_user_id),
        "last_modified": str(lead.updated_at),
        "modified_user_id": str(lead.responsible_user_id),
        "created_user_id": str(lead.responsible_user_id),
        "date_create": str(lead.created_at),
        "created_at": str(lead.created_at),
        "updated_at": str(lead.updated_at),
        "account_id": str(ACCOUNT_ID),
    }
    if fields:
        entity["custom_fields"] = fields
    return entity


def webhook_body(events: list[tuple[str, dict]]) -> str:
    """The form-encoded body Kommo posts for lead events (action, entity): one request carries several
    entities and several actions."""
    leads: dict[str, list[dict]] = {}
    for action, entity in events:
        leads.setdefault(action, []).append(entity)
    payload = {
        "leads": leads,
        "account": {
            "subdomain": SUBDOMAIN,
            "id": str(ACCOUNT_ID),
            "_links": {"self": f"https://{SUBDOMAIN}.kommo.com"},
        },
    }
    return encode(payload, EncodeOptions())


def deliver(hook_id: int, body: str) -> None:
    hook = KWebhook.objects.get(id=hook_id)
    delivery = KWebhookDelivery(webhook=hook, body=body)
    started = time.monotonic()
    try:
        answer = requests.post(
            hook.destination,
            data=body,
            timeout=5,
            headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "amoCRM-Webhooks/3.0"},
        )
        delivery.status = answer.status_code
    except requests.RequestException as exc:
        delivery.error = str(exc)[:300]
    delivery.duration_ms = int((time.monotonic() - started) * 1000)
    delivery.save()
    ok = delivery.status is not None and 200 <= delivery.status < 300
    # Kommo switches a hook off after repeated failures (the exact number is not confirmed: 100 here).
    hook.failures = 0 if ok else hook.failures + 1
    hook.disabled = hook.failures >= 100
    hook.save(update_fields=["failures", "disabled"])


_batch = threading.local()


@contextlib.contextmanager
def one_delivery() -> Iterator[None]:
    """Lead events fired inside (one API request's edits) reach each subscribed hook as one delivery, as
    Kommo reports a batch edit: a PATCH of 50 leads is one web hook carrying 50 entities, not 50 posts."""
    if getattr(_batch, "events", None) is not None:
        yield
        return
    _batch.events = []
    try:
        yield
        events = _batch.events
    finally:
        _batch.events = None
    _send(events)


def fire_webhooks(action: str, lead: KLead, old_status: int) -> None:
    event = (action, lead_entity(lead, old_status))  # the lead as it is now, whatever changes after
    if getattr(_batch, "events", None) is not None:
        _batch.events.append(event)
    else:
        _send([event])


def _send(events: list[tuple[str, dict]]) -> None:
    if not events:
        return
    hooks = list(KWebhook.objects.filter(disabled=False))
    mode = get_setting("kommo_webhook_delivery") if hooks else None
    for hook in hooks:
        wanted = [(action, entity) for action, entity in events if f"{action}_lead" in hook.settings]
        if not wanted:
            continue
        body = webhook_body(wanted)
        if mode == "sync":
            transaction.on_commit(lambda h=hook.id, b=body: deliver(h, b))
        elif mode == "async":
            _start_courier()
            transaction.on_commit(lambda h=hook.id, b=body: _later.put((h, b)))
        else:
            KWebhookDelivery.objects.create(webhook=hook, body=body, error="delivery switched off")


# "async" deliveries: a few threads per process post them, each keeping its database connection (a thread and
# a database session per delivery had cost a burst of 1,000 lead edits 1,000 PostgreSQL server processes).
# Each delivery opens its own HTTP connection, as Kommo's do: a kept-alive one the server has meanwhile
# closed would lose the delivery.
COURIERS = 4
_later: queue.SimpleQueue[tuple[int, str]] = queue.SimpleQueue()
_courier_lock = threading.Lock()
_couriers: list[threading.Thread] = []


def _start_courier() -> None:
    with _courier_lock:
        _couriers[:] = [t for t in _couriers if t.is_alive()]  # (none survive a fork)
        while len(_couriers) < COURIERS:
            courier = threading.Thread(target=_deliver_later, name="kommo-webhook-courier", daemon=True)
            courier.start()
            _couriers.append(courier)


def _deliver_later() -> None:
    from django.db import connection

    while True:
        hook_id, body = _later.get()
        try:
            deliver(hook_id, body)
        except Exception:  # the courier must not die
            log.exception("sandbox kommo: web hook delivery failed")
            connection.close()  # a broken connection is opened afresh for the next delivery
