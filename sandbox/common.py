"""What both emulators share: settings, fault and latency injection, request logging."""

from __future__ import annotations

import json
import logging
import random
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.request import RawPostDataException
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from sandbox.models import Fault, RequestLog, Setting

log = logging.getLogger("zkbridge.sandbox")

DEFAULTS: dict[str, Any] = {
    "zuora_clients": {"2b7e1a90-5c3d-4f8e-9a6b-0d4c7e1f3a25": "zkbridge-demo-secret"},
    "kommo_long_lived_tokens": ["kommo-demo-long-lived-token"],
    "kommo_oauth_clients": {"kommo-demo-client": "kommo-demo-client-secret"},
    # Each OAuth client's redirect URI, as the integration's settings hold it (its consent page sends the browser
    # there with the code). Empty: the one the consent page's link names.
    "kommo_oauth_redirects": {"kommo-demo-client": ""},
    # The account the emulated Kommo is (GET /api/v4/account).
    "kommo_account": {"id": 30112233, "name": "Hooli (Kommo sandbox)", "subdomain": "sandbox"},
    "kommo_requests_per_second": 7,
    # "async": deliver web hooks from a thread after commit, as Kommo does (a little later);
    # "sync": deliver before answering (deterministic tests); "off": record only.
    "kommo_webhook_delivery": "async",
    # How many status polls a usage import stays Processing before it completes.
    "zuora_usage_polls_before_done": 1,
    # "at_poll": a usage file is imported when its status is polled (deterministic, for tests); "background":
    # in a thread after the upload, as Zuora does (a status poll answers at once; for benchmarks).
    "zuora_usage_import": "at_poll",
    # The embedded demo imported its plan map (first run only; `dev.py demo --reset` forgets it).
    "demo_connected": False,
    # The tenant's custom fields (Object Manager): object → {field name: filterable}. None: zuora_objects' default.
    "zuora_custom_fields": None,
    # The tenant has Advanced Consumption Billing: its usage files may carry UNIQUE_KEY (refused otherwise).
    "zuora_usage_unique_key": False,
    # The tenant's notification (communication) profiles; a new account gets the first.
    "zuora_communication_profiles": ["CP-STANDARD", "CP-SILENT"],
    # The tenant's callout notifications (payments): where Zuora posts them, with which Basic credentials. None: off.
    "zuora_callout": None,
}


def get_setting(key: str) -> Any:
    row = Setting.objects.filter(key=key).first()
    return row.value if row else DEFAULTS[key]


def set_setting(key: str, value: Any) -> None:
    if key not in DEFAULTS:
        raise KeyError(key)
    Setting.objects.update_or_create(key=key, defaults={"value": value})


def json_body(request: HttpRequest) -> Any:
    """The request's JSON body; ValueError when it is not JSON."""
    return json.loads(request.body.decode("utf-8"))


def _matching_faults(service: str, method: str, path: str) -> list[Fault]:
    """Every matching latency fault, plus the first (oldest) matching fault of another kind.

    Only faults that apply are used up, so faults queue: "drop once, then time out twice" is two faults.
    """
    faults = (
        Fault.objects.filter(service=service)
        .filter(Q(method="*") | Q(method=method))
        .exclude(remaining=0)
        .exclude(kind="refuse_entity")  # read by the views that write entities (refused_entities)
    )
    chosen: list[Fault] = []
    failing = False
    for fault in faults:
        # "/v1/orders" matches everything under it; "/v1/orders$" only that path.
        exact = fault.path_prefix.endswith("$")
        if (path != fault.path_prefix[:-1]) if exact else not path.startswith(fault.path_prefix):
            continue
        if failing and fault.kind != "latency":
            continue
        if fault.probability < 1 and random.random() >= fault.probability:
            continue  # a random fault that does not strike this time (its remaining uses are kept)
        if fault.remaining is not None:
            # Claim one use atomically: two concurrent requests never both spend the last one.
            if not Fault.objects.filter(id=fault.id, remaining__gt=0).update(remaining=F("remaining") - 1):
                continue
        if not (fault.kind == "latency" and fault.probability >= 1 and fault.remaining is None):
            # (a standing latency strikes every request: counting it would only add a write to each)
            Fault.objects.filter(id=fault.id).update(hits=F("hits") + 1)
        failing = failing or fault.kind != "latency"
        chosen.append(fault)
    return chosen


def refused_entities(service: str, request: HttpRequest, prefix: str) -> dict[int, str]:
    """The entity ids a `refuse_entity` fault names for this request: id → the refusal's detail."""
    path = request.path[len(prefix) :] or "/"
    faults = Fault.objects.filter(service=service, kind="refuse_entity").filter(
        Q(method="*") | Q(method=request.method)
    )
    refused = {}
    for fault in faults:
        exact = fault.path_prefix.endswith("$")
        if (path == fault.path_prefix[:-1]) if exact else path.startswith(fault.path_prefix):
            refused[int(fault.reason_code)] = fault.reason_message
    return refused


def drop_connection(request: HttpRequest) -> bool:
    """Close the client's TCP connection without an answer (the work is already committed).

    Works under Django's development/live test server (the request handler is on the stack) and
    under gunicorn (`gunicorn.socket` in the environ). Returns False when no socket was found.
    """
    sock = request.META.get("gunicorn.socket")
    if sock is None:
        frame = sys._getframe(1)
        while frame is not None:
            handler = frame.f_locals.get("self")
            if isinstance(handler, socketserver.StreamRequestHandler):
                sock = handler.connection
                # The server must not try to write an answer or an error page afterwards.
                handler.close_connection = True
                break
            frame = frame.f_back
    if sock is None:
        return False
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    return True


@dataclass
class Exchange:
    """One request an emulator answered, as it crossed the wire: what observers (the test suite's referee,
    which judges it against the vendors' own definitions) are handed."""

    service: str
    method: str
    path: str  # under the emulator's prefix: /v1/orders
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    form: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    status: int = 0
    answer: bytes = b""
    answer_type: str = ""
    fault: str = ""  # the injected fault that made the answer (deliberately not what the vendor sends)


_observers: list[Callable[[Exchange], None]] | None = None


def observers() -> list[Callable[[Exchange], None]]:
    """The callables named by settings.SANDBOX_OBSERVERS (dotted paths), imported once."""
    global _observers
    if _observers is None:
        _observers = [import_string(path) for path in getattr(settings, "SANDBOX_OBSERVERS", [])]
    return _observers


def _exchange(service: str, path: str, request: HttpRequest, response: HttpResponse, fault: str) -> Exchange:
    content_type = request.headers.get("Content-Type", "")
    files: dict[str, tuple[str, bytes]] = {}
    form: list[tuple[str, str]] = []
    body = b""
    if "multipart/form-data" in content_type:  # an upload: its parts (read by the view or not)
        try:
            for name, upload in request.FILES.items():
                upload.seek(0)
                files[name] = (upload.name or "", upload.read())
            form = [(k, v) for k, values in request.POST.lists() for v in values]
        except (RawPostDataException, ValueError, OSError):
            pass
    else:
        try:
            body = request.body
        except RawPostDataException:
            body = b""
        if "form-urlencoded" in content_type:
            form = [(k, v) for k, values in request.POST.lists() for v in values]
    return Exchange(
        service=service,
        method=request.method or "",
        path=path,
        query=[(k, v) for k, values in request.GET.lists() for v in values],
        headers=dict(request.headers),
        body=body,
        form=form,
        files=files,
        status=response.status_code,
        answer=b"" if getattr(response, "streaming", False) else response.content,
        answer_type=response.get("Content-Type", ""),
        fault=fault,
    )


class ConnectionDropped(HttpResponse):
    """Returned after drop_connection: the server's write fails quietly (broken pipe)."""


class _InFlight:
    """How many emulator requests this process is serving: a test waits for the previous test's slow ones
    (a timeout fault still sleeping after its client gave up) before it resets the emulators."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def __enter__(self) -> None:
        with self.changed:
            self.count += 1

    def __exit__(self, *exc: object) -> None:
        with self.changed:
            self.count -= 1
            self.changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.count == 0, timeout)


IN_FLIGHT = _InFlight()


def emulated(
    service: str,
    prefix: str,
    fault_response: Callable[[Fault, HttpRequest], HttpResponse | None],
    before: Callable[[HttpRequest], HttpResponse | None] | None = None,
):
    """Wrap an emulator view with request logging, `before` checks (auth, rate limit) and faults."""

    def decorator(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            with IN_FLIGHT:
                return serve(request, *args, **kwargs)

        def serve(request: HttpRequest, *args, **kwargs):
            arrived = time.time()
            path = request.path[len(prefix) :] or "/"
            faults = _matching_faults(service, request.method, path)
            delay = sum(f.latency_ms for f in faults if f.kind == "latency") / 1000
            if delay:
                time.sleep(delay)
            response = before(request) if before else None
            drop = None
            struck = ""
            if response is None:
                for fault in faults:
                    if fault.kind in ("latency", "slow"):
                        continue
                    if fault.kind == "drop_after_commit":
                        drop = fault
                        continue
                    response = fault_response(fault, request)
                    if response is not None:
                        struck = fault.kind
                        break
            if response is None:
                request.processing_delay = sum(f.sleep_seconds for f in faults if f.kind == "slow")  # type: ignore[attr-defined]
                if getattr(view, "manages_transactions", False):
                    response = view(request, *args, **kwargs)
                else:
                    response = process(view, request, *args, **kwargs)
            request_id = uuid.uuid4().hex
            if service == "zuora":
                response["Zuora-Request-Id"] = request_id
                if request.headers.get("Zuora-Track-Id"):
                    response["Zuora-Track-Id"] = request.headers["Zuora-Track-Id"][:64]
            RequestLog.objects.create(
                service=service, method=request.method, path=path[:500], status=response.status_code, at=arrived
            )
            if observers():
                exchange = _exchange(service, path, request, response, struck)
                for observer in observers():
                    observer(exchange)
            if drop is not None and drop_connection(request):
                log.info("sandbox %s: dropped the connection after %s %s", service, request.method, path)
                # The server never finishes this response, so Django's request_finished (which closes the
                # thread's database connection) never fires: close it here, the work is committed.
                db_connection.close()
                return ConnectionDropped(status=500)
            return response

        return wrapper

    return decorator


def process(view, request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """Run the emulated work in one transaction, taking as long as a "slow" fault says."""
    if getattr(request, "processing_delay", 0):
        time.sleep(request.processing_delay)
    with transaction.atomic():
        return view(request, *args, **kwargs)


def sleep_then(fault: Fault, response: HttpResponse) -> HttpResponse:
    time.sleep(fault.sleep_seconds)
    return response


def problem(
    status: int,
    title: str,
    detail: str,
    errors: list[dict] | None = None,
    by_entry: dict[int, list[dict]] | None = None,
) -> JsonResponse:
    """Kommo's application/problem+json error; `by_entry` names the refused entries of a batch (request_id:
    the entry's index in the request)."""
    body: dict[str, Any] = {
        "title": title,
        "type": f"https://httpstatus.es/{status}",
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["validation-errors"] = [{"request_id": "0", "errors": errors}]
    if by_entry:
        body["validation-errors"] = [{"request_id": str(i), "errors": e} for i, e in sorted(by_entry.items())]
    return JsonResponse(body, status=status, content_type="application/problem+json")
