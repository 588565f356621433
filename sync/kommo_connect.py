"""Connecting Kommo from the admin, with OAuth: no token copied into the environment.

Two ways in, both ending in one worker task (a web request never calls Kommo):
  pasted    the operator pastes the authorization code Kommo shows in the private integration's settings
            ("Keys and scopes"): connect_with_code
  callback  "Connect with Kommo" sends the operator to Kommo's consent page with a random `state`
            (begin_consent); Kommo sends the browser back to KOMMO_REDIRECT_URI, /kommo/oauth/callback, with
            the code and that state (accept_callback)
The worker (exchange) trades the code for a token pair, stores it (ProviderToken "kommo", encrypted) under
the same lock as every refresh, reads who the account is, subscribes zkbridge's web hook, and marks the
connection connected; the previous connection is replaced only then. A code Kommo refuses (expired: codes live
20 minutes; used twice; issued to another redirect URI) fails this attempt with Kommo's words and leaves the
previous connection as it was. From then on the rotating refresh token is handled as before; a connection made
here takes precedence over a long-lived KOMMO_ACCESS_TOKEN until it is disconnected.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from urllib.parse import urlencode, urlparse

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sync.clients.errors import ApiError
from sync.clients.kommo import KommoClient
from sync.clients.tokens import replace_token
from sync.installation import WEBHOOK_EVENTS, kommo_webhook_url
from sync.models import KommoConnection, ProviderToken

log = logging.getLogger("zkbridge.sync")
S = KommoConnection.Status
CODE_LIFETIME = dt.timedelta(minutes=20)  # Kommo's authorization codes; a consent left open longer is dead too
# Kommo's codes are long opaque strings (JWT-like); anything else pasted is a mistake worth naming at once.
CODE_SHAPE = re.compile(r"[A-Za-z0-9._~+/=-]{20,2000}")


class Refused(ValueError):
    """What the operator (or the browser Kommo sent back) gave cannot start a connection; the message says why."""


def missing_keys() -> list[str]:
    """The integration's keys zkbridge needs for OAuth and does not have."""
    wanted = {
        "KOMMO_CLIENT_ID": settings.KOMMO_CLIENT_ID,
        "KOMMO_CLIENT_SECRET": settings.KOMMO_CLIENT_SECRET,
        "KOMMO_REDIRECT_URI": settings.KOMMO_REDIRECT_URI,
    }
    return [name for name, value in wanted.items() if not value]


def current() -> KommoConnection | None:
    return KommoConnection.objects.filter(status=S.CONNECTED).first()


def latest() -> KommoConnection | None:
    return KommoConnection.objects.first()


def _ready() -> None:
    if missing := missing_keys():
        raise Refused(
            f"set {', '.join(missing)} first (the private integration's keys, and this server's "
            f"/kommo/oauth/callback as its redirect URI)"
        )


def connect_with_code(code: str, requested_by: str) -> KommoConnection:
    """A code pasted by the operator: recorded (encrypted) and handed to a worker."""
    _ready()
    code = (code or "").strip()
    if not CODE_SHAPE.fullmatch(code):
        raise Refused(
            'that is not an authorization code: copy the whole code from the integration\'s "Keys and scopes" tab '
            "(20 or more letters, digits and . _ - characters, no spaces)"
        )
    connection = KommoConnection.objects.create(
        requested_by=requested_by[:150], via="pasted", status=S.EXCHANGING, code=code
    )
    _enqueue(connection)
    return connection


def begin_consent(requested_by: str) -> tuple[KommoConnection, str]:
    """A connection waiting for Kommo's consent page, and the page's address (with its random state)."""
    _ready()
    state = secrets.token_urlsafe(32)
    connection = KommoConnection.objects.create(
        requested_by=requested_by[:150], via="callback", status=S.AWAITING, state=state
    )
    query = {"client_id": settings.KOMMO_CLIENT_ID, "state": state, "mode": "post_message"}
    if urlparse(settings.KOMMO_OAUTH_URL).netloc == urlparse(settings.KOMMO_BASE_URL).netloc:
        query["redirect_uri"] = settings.KOMMO_REDIRECT_URI  # the emulator's consent page reads it from here
    return connection, f"{settings.KOMMO_OAUTH_URL}?{urlencode(query)}"


def accept_callback(params: dict[str, str]) -> KommoConnection:
    """Kommo's redirect after its consent page: the state must be one zkbridge handed out in the last 20
    minutes, the client id ours; then the code is recorded and handed to a worker. Refused: nothing changes
    (a denied consent closes its waiting connection)."""
    state = params.get("state", "")
    waiting = (
        KommoConnection.objects.filter(
            state=state, status=S.AWAITING, started_at__gte=timezone.now() - CODE_LIFETIME
        ).first()
        if state
        else None
    )
    if waiting is None:
        raise Refused(
            "this sign-in link is unknown or older than 20 minutes: start again from the admin's Connections page"
        )
    if params.get("client_id") and params["client_id"] != settings.KOMMO_CLIENT_ID:
        raise Refused("Kommo named another integration than zkbridge's (KOMMO_CLIENT_ID)")
    if params.get("error"):
        finish(waiting, S.FAILED, f"Kommo's consent was not given ({params['error'][:100]}); nothing changed")
        raise Refused("Kommo's consent was not given: nothing changed")
    code = params.get("code", "")
    if not CODE_SHAPE.fullmatch(code):
        raise Refused("Kommo's redirect carried no authorization code")
    moved = KommoConnection.objects.filter(id=waiting.id, status=S.AWAITING).update(
        status=S.EXCHANGING, code=code, account_domain=params.get("referer", "")[:200], state=None
    )
    if not moved:  # the same redirect twice (a reload): the first one is being exchanged
        raise Refused("this sign-in was already received")
    waiting.refresh_from_db()
    _enqueue(waiting)
    return waiting


def _enqueue(connection: KommoConnection) -> None:
    from sync.records import hand_to_workers

    transaction.on_commit(
        lambda: hand_to_workers(
            "sync.kommo_connect.exchange", connection.id, recovery="connect again from the admin's Connections page"
        )
    )


def finish(connection: KommoConnection, status: str, message: str, **fields) -> None:
    KommoConnection.objects.filter(id=connection.id).update(
        status=status, message=message[:2000], code="", finished_at=timezone.now(), **fields
    )


def exchange(connection_id: int) -> str:
    """Worker: the code for a token pair; then who the account is and the web hook. Returns the outcome."""
    connection = KommoConnection.objects.filter(id=connection_id, status=S.EXCHANGING).first()
    if connection is None:
        return "nothing to exchange"
    if missing := missing_keys():
        finish(connection, S.FAILED, f"{', '.join(missing)} not set: the code was not used; nothing changed")
        return "failed"
    oauth = KommoClient.from_settings(connected=True)
    try:
        replace_token(oauth.provider, lambda row: oauth.exchange_code(connection.code))
    except ApiError as exc:
        kept = "the previous connection is kept" if current() else "nothing changed"
        finish(
            connection,
            S.FAILED,
            f"Kommo refused the authorization code: {exc.message}. A code is valid for 20 minutes and only once: "
            f"generate a new one in the integration's settings and paste it, or sign in with Kommo again ({kept})",
        )
        return "failed"
    notes, account = [], {}
    try:
        account = oauth.account()
    except ApiError as exc:
        notes.append(f"could not read the account's name ({exc.message})")
    try:
        oauth.subscribe_webhook(kommo_webhook_url(), WEBHOOK_EVENTS)
        notes.append("web hook subscribed")
    except ApiError as exc:
        notes.append(f"the web hook could not be subscribed ({exc.message}): run `manage.py kommo_webhook --register`")
    name = str(account.get("name") or "")[:200]
    domain = f"{account['subdomain']}.kommo.com" if account.get("subdomain") else connection.account_domain
    KommoConnection.objects.filter(status=S.CONNECTED).exclude(id=connection.id).update(status=S.REPLACED)
    finish(
        connection,
        S.CONNECTED,
        "; ".join(notes),
        account_id=account.get("id") if isinstance(account.get("id"), int) else None,
        account_name=name,
        account_domain=domain[:200],
    )
    log.info("kommo connected as %s (%s) by %s", name or "?", domain or "?", connection.requested_by or "?")
    return "connected"


def disconnect(requested_by: str) -> bool:
    """Forget the admin's connection and its tokens: zkbridge goes back to what the environment configures
    (a long-lived token, or KOMMO_REFRESH_TOKEN). True when there was one."""
    with transaction.atomic():
        ended = KommoConnection.objects.filter(status=S.CONNECTED).update(
            status=S.DISCONNECTED, message=f"disconnected by {requested_by}"[:2000], finished_at=timezone.now()
        )
        if ended:
            ProviderToken.objects.filter(provider=KommoClient.provider).delete()
    return bool(ended)


def callback(request):
    """GET /kommo/oauth/callback: where Kommo's consent page sends the operator's browser (KOMMO_REDIRECT_URI).
    Never calls Kommo: the code is recorded and exchanged by a worker; the admin's Connections page shows how
    it went. A request that does not bring back a state zkbridge handed out is refused and changes nothing."""
    from django.http import HttpResponse, HttpResponseNotAllowed
    from django.shortcuts import redirect
    from django.utils.html import format_html

    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    params = {key: request.GET.get(key, "")[:4000] for key in ("code", "state", "client_id", "referer", "error")}
    try:
        accept_callback(params)
    except Refused as exc:
        page = format_html(
            "<!doctype html><title>zkbridge: Kommo not connected</title><h1>Kommo was not connected</h1>"
            '<p>{}.</p><p><a href="/admin/connections/">Back to Connections</a></p>',
            str(exc),
        )
        return HttpResponse(page, status=400)
    return redirect("admin:connections")
