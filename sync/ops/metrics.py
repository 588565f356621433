"""GET /metrics: Prometheus text for the machine itself, or for a bearer of ZKBRIDGE_METRICS_TOKEN."""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress

from django.conf import settings
from django.db.models import Avg, Count
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from sync.models import ApiCall, SyncRecord, WebhookEvent
from sync.ops.dashboard import queue_state


def metrics_allowed(request: HttpRequest) -> bool:
    token = settings.ZKBRIDGE_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        return given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode())
    return from_this_machine(request)


FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_FORWARDED")


def from_this_machine(request: HttpRequest) -> bool:
    """A request from the machine itself: a loopback address and no proxy in between (a reverse proxy on
    the same host also connects from 127.0.0.1, but says whom it forwards)."""
    if any(request.META.get(header) for header in FORWARDED):
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def _line(name: str, value: float | int, **labels: str) -> str:
    label = ",".join(f'{k}="{str(v).replace(chr(34), "")}"' for k, v in sorted(labels.items()))
    return f"{name}{{{label}}} {value}" if labels else f"{name} {value}"


def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        return HttpResponse(
            "forbidden: set ZKBRIDGE_METRICS_TOKEN and send it as a Bearer token\n",
            status=403,
            content_type="text/plain",
        )
    since = timezone.now() - dt.timedelta(hours=1)
    lines = [
        "# HELP zkbridge_webhooks_received_total Webhooks and callouts stored in the inbox.",
        "# TYPE zkbridge_webhooks_received_total counter",
    ]
    for hooks in WebhookEvent.objects.values("source").annotate(n=Count("id")):
        lines.append(_line("zkbridge_webhooks_received_total", hooks["n"], source=hooks["source"]))
    lines += ["# HELP zkbridge_sync_records Sync records by kind and state.", "# TYPE zkbridge_sync_records gauge"]
    for records in SyncRecord.objects.values("kind", "status").annotate(n=Count("id")):
        lines.append(_line("zkbridge_sync_records", records["n"], kind=records["kind"], status=records["status"]))
    lines += [
        "# HELP zkbridge_api_calls_last_hour API calls in the last hour by provider and status.",
        "# TYPE zkbridge_api_calls_last_hour gauge",
    ]
    for calls in ApiCall.objects.filter(at__gte=since).values("provider", "status").annotate(n=Count("id")):
        status = str(calls["status"] or "none")
        lines.append(_line("zkbridge_api_calls_last_hour", calls["n"], provider=calls["provider"], status=status))
    lines += [
        "# HELP zkbridge_api_call_latency_ms_avg Mean API call duration in the last hour.",
        "# TYPE zkbridge_api_call_latency_ms_avg gauge",
    ]
    for latency in ApiCall.objects.filter(at__gte=since).values("provider").annotate(ms=Avg("duration_ms")):
        lines.append(
            _line("zkbridge_api_call_latency_ms_avg", round(latency["ms"] or 0, 1), provider=latency["provider"])
        )
    queue = queue_state()
    lines += [
        "# HELP zkbridge_queue_depth Tasks waiting for a worker.",
        "# TYPE zkbridge_queue_depth gauge",
        _line("zkbridge_queue_depth", queue["depth"] if queue["depth"] is not None else -1),
        "# HELP zkbridge_queue_oldest_age_seconds Age of the oldest record waiting to run.",
        "# TYPE zkbridge_queue_oldest_age_seconds gauge",
        _line("zkbridge_queue_oldest_age_seconds", queue["oldest_age_seconds"]),
    ]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4")
