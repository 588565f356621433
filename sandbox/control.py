"""The emulators' control API: reset, seed, faults and knobs, for tests, the demo and benchmarks.

Mounted only when ZKBRIDGE_SANDBOX is on, like the emulators themselves.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import wraps

from django.conf import settings as django_settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from sandbox import demo
from sandbox.common import DEFAULTS, json_body, set_setting
from sandbox.kommo import set_status
from sandbox.models import Fault, KLead, KNote, KTask, RequestLog, ZAccount, ZSubscription

FAULT_FIELDS = {
    "service",
    "method",
    "path_prefix",
    "kind",
    "remaining",
    "latency_ms",
    "retry_after",
    "sleep_seconds",
    "reason_code",
    "reason_message",
    "probability",
}


def _bad(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_FORWARDED")


def local_only(view):
    """The control API changes what the emulators do (faults, resets): it answers the machine itself only
    (or a bearer of ZKBRIDGE_SANDBOX_TOKEN), and never while a real Zuora or Kommo is configured."""

    @wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs):
        if not (django_settings.ZUORA_USES_EMULATOR and django_settings.KOMMO_USES_EMULATOR):
            return _bad("the emulators' control API is off while a real Zuora or Kommo is configured", 404)
        token = django_settings.ZKBRIDGE_SANDBOX_TOKEN
        given = request.headers.get("Authorization", "")
        if token and given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode()):
            return view(request, *args, **kwargs)
        try:
            loopback = ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
        except ValueError:
            loopback = False
        if not loopback or any(request.META.get(h) for h in FORWARDED):
            return _bad("the emulators' control API answers this machine only (or ZKBRIDGE_SANDBOX_TOKEN)", 403)
        return view(request, *args, **kwargs)

    return guarded


@csrf_exempt
@local_only
def reset(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _bad("use POST", 405)
    demo.reset()
    if request.GET.get("seed", "1") != "0":
        demo.seed()
    return JsonResponse({"reset": True})


@csrf_exempt
@local_only
def faults(request: HttpRequest) -> HttpResponse:
    if request.method == "DELETE":
        Fault.objects.all().delete()
        return HttpResponse(status=204)
    if request.method == "GET":
        return JsonResponse({"faults": list(Fault.objects.values())})
    if request.method != "POST":
        return _bad("use GET, POST or DELETE", 405)
    try:
        body = json_body(request)
    except ValueError:
        return _bad("body must be JSON")
    if not isinstance(body, dict) or set(body) - FAULT_FIELDS:
        return _bad(f"unknown fields: {sorted(set(body) - FAULT_FIELDS) if isinstance(body, dict) else body!r}")
    if body.get("service") not in ("zuora", "kommo") or body.get("kind") not in dict(Fault.KINDS):
        return _bad(f"service must be zuora or kommo; kind one of {sorted(dict(Fault.KINDS))}")
    fault = Fault.objects.create(**body)
    return JsonResponse({"id": fault.id}, status=201)


@csrf_exempt
@local_only
def settings(request: HttpRequest) -> HttpResponse:
    if request.method != "PUT":
        return _bad("use PUT", 405)
    try:
        body = json_body(request)
    except ValueError:
        return _bad("body must be JSON")
    if not isinstance(body, dict) or set(body) - set(DEFAULTS):
        return _bad(f"known settings: {sorted(DEFAULTS)}")
    for key, value in body.items():
        set_setting(key, value)
    return JsonResponse({"ok": True})


@csrf_exempt
@local_only
def lead_status(request: HttpRequest, lead_id: int) -> HttpResponse:
    """Move a Kommo lead to a stage as a salesperson would; the status web hooks fire."""
    if request.method != "POST":
        return _bad("use POST", 405)
    try:
        status_id = int(json_body(request)["status_id"])
    except (ValueError, KeyError, TypeError):
        return _bad('body must be {"status_id": <int>}')
    lead = KLead.objects.filter(id=lead_id).first()
    if lead is None:
        return _bad("no such lead", 404)
    set_status(lead, status_id, lead.status_id)
    return JsonResponse({"id": lead.id, "status_id": lead.status_id, "closed_at": lead.closed_at})


@csrf_exempt
@local_only
def generate_leads(request: HttpRequest) -> HttpResponse:
    """POST {"first_id": 70000000, "count": 200, "plan": "Starter"}: leads of independent customers."""
    if request.method != "POST":
        return _bad("use POST", 405)
    try:
        body = json_body(request)
        first_id, count = int(body["first_id"]), int(body["count"])
        plan = str(body.get("plan") or "Starter")
    except (ValueError, KeyError, TypeError):
        return _bad('body must be {"first_id": <int>, "count": <int>[, "plan": <text>]}')
    if not (1 <= count <= demo.MAX_GENERATED and 1 <= first_id < 2**53):
        return _bad(f"count must be 1 to {demo.MAX_GENERATED}; first_id positive")
    return JsonResponse({"ids": demo.generate_leads(first_id, count, plan)}, status=201)


@csrf_exempt
@local_only
def bill_subscription(request: HttpRequest, number: str) -> HttpResponse:
    """POST {"through": "YYYY-MM-DD"}: a bill run invoices the subscription's charges through that date."""
    import datetime as dt

    from sandbox.zuora_subscriptions import bill_through

    if request.method != "POST":
        return _bad("use POST", 405)
    try:
        through = dt.date.fromisoformat(str(json_body(request)["through"]))
    except (ValueError, KeyError, TypeError):
        return _bad('body must be {"through": "YYYY-MM-DD"}')
    sub = bill_through(number, through)
    if sub is None:
        return _bad("no such subscription", 404)
    return JsonResponse({"subscriptionNumber": number, "chargedThroughDate": through.isoformat()})


@csrf_exempt
@local_only
def account_payment(request: HttpRequest, number: str) -> HttpResponse:
    """POST {"amount": "300.00", "outcome": "processed" | "failed"}: a payment run charges the account; a processed
    payment pays its oldest invoices, a failed one changes nothing (Zuora then sends its callout)."""
    from decimal import Decimal, InvalidOperation

    from sandbox.models import ZAccount
    from sandbox.zuora_subscriptions import pay

    if request.method != "POST":
        return _bad("use POST", 405)
    try:
        body = json_body(request)
        amount = Decimal(str(body["amount"]))
        outcome = str(body.get("outcome") or "processed")
        assert outcome in ("processed", "failed") and amount > 0
    except (ValueError, KeyError, TypeError, InvalidOperation, AssertionError):
        return _bad('body must be {"amount": "<positive number>", "outcome": "processed" | "failed"}')
    account = ZAccount.objects.filter(account_number=number).first()
    if account is None:
        return _bad("no such account", 404)
    unapplied = pay(account, amount) if outcome == "processed" else Decimal(0)
    return JsonResponse({"accountNumber": number, "outcome": outcome, "unapplied": str(unapplied)})


@local_only
def state(request: HttpRequest) -> HttpResponse:
    calls = RequestLog.objects.values("service", "method", "path").annotate(n=Count("id")).order_by("service", "path")
    return JsonResponse(
        {
            "zuora": {"accounts": ZAccount.objects.count(), "subscriptions": ZSubscription.objects.count()},
            "kommo": {"notes": KNote.objects.count(), "tasks": KTask.objects.count()},
            "calls": list(calls),
        }
    )
