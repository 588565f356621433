"""Connecting Kommo from the admin (issue 29, part 4): a pasted authorization code, or Kommo's consent page and
/kommo/oauth/callback, exchanged by a worker against the Kommo emulator over real HTTP."""

from __future__ import annotations

import datetime as dt
import secrets
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ

from sandbox.models import KAuthCode, KToken, KWebhook
from sync import kommo_connect
from sync.clients.kommo import KommoClient
from sync.models import KommoConnection, ProviderToken
from tests.guards import outbound_guard

URL = "/admin/connections/"


@pytest.fixture
def oauth(emulators, settings, monkeypatch):
    """zkbridge set up as a private integration of the emulated Kommo, a long-lived token in force meanwhile."""
    settings.KOMMO_CLIENT_ID, settings.KOMMO_CLIENT_SECRET = "kommo-demo-client", "kommo-demo-client-secret"
    settings.KOMMO_REDIRECT_URI = f"{emulators.url}/kommo/oauth/callback"
    settings.KOMMO_OAUTH_URL = f"{emulators.kommo}/oauth"
    with outbound_guard(settings, monkeypatch):  # the admin's requests queue the exchange, never make it
        yield emulators


def new_code(**fields) -> str:
    code = secrets.token_urlsafe(30)
    KAuthCode.objects.create(code=code, **fields)
    return code


def run_queued_exchange() -> str:
    """What a worker does with the queued task."""
    [task] = [t for t in OrmQ.objects.all() if t.task["func"] == "sync.kommo_connect.exchange"]
    task.delete()
    return kommo_connect.exchange(*task.task["args"])


def page(admin_client) -> str:
    return admin_client.get(URL).content.decode()


def test_an_operator_connects_kommo_with_a_pasted_code(oauth, admin_client):
    assert "long-lived token" in page(admin_client)
    answer = admin_client.post(URL, {"action": "connect_code", "code": new_code()})
    assert answer.status_code == 302
    attempt = KommoConnection.objects.get()
    assert attempt.status == "exchanging" and "this page refreshes itself" in page(admin_client)
    with connection.cursor() as cursor:  # the code waits encrypted, never as typed
        cursor.execute("SELECT code FROM sync_kommoconnection")
        assert cursor.fetchone()[0] != attempt.code

    assert run_queued_exchange() == "connected"
    attempt.refresh_from_db()
    assert attempt.status == "connected" and attempt.code == ""
    assert (attempt.account_name, attempt.account_domain) == ("Hooli (Kommo sandbox)", "sandbox.kommo.com")
    assert "connected as Hooli (Kommo sandbox)" in page(admin_client)
    # Kommo sends zkbridge's web hooks to it now, and zkbridge's calls go with the OAuth token it bought.
    hooks = KWebhook.objects.filter(destination=oauth.webhook_url)
    assert any("update_lead" in hook.settings for hook in hooks)
    kommo = KommoClient.from_settings()
    assert kommo.long_lived is None and kommo.get_lead(24312345)["id"] == 24312345
    stored = ProviderToken.objects.get(provider="kommo")
    assert KToken.objects.filter(access_token=stored.access_token, revoked=False).exists()


def test_a_code_kommo_refuses_says_why_and_keeps_the_previous_connection(oauth, admin_client):
    first = new_code()
    admin_client.post(URL, {"action": "connect_code", "code": first})
    assert run_queued_exchange() == "connected"
    tokens = ProviderToken.objects.get(provider="kommo").access_token

    admin_client.post(URL, {"action": "connect_code", "code": first})  # the same code twice
    assert run_queued_exchange() == "failed"
    stale = new_code(created_at=timezone.now() - dt.timedelta(minutes=21))  # older than Kommo's 20 minutes
    admin_client.post(URL, {"action": "connect_code", "code": stale})
    assert run_queued_exchange() == "failed"

    used, expired = KommoConnection.objects.filter(status="failed").order_by("id")
    assert "has been revoked" in used.message and "has expired" in expired.message
    assert "previous connection is kept" in expired.message and expired.code == ""
    assert "has expired" in page(admin_client) and "connected as Hooli" in page(admin_client)
    assert kommo_connect.current().id < used.id  # still the first connection
    assert ProviderToken.objects.get(provider="kommo").access_token == tokens


def test_what_the_page_refuses_changes_nothing(oauth, admin_client, client, django_user_model, settings):
    for garbage in ("", "not a code", "x" * 19, "é" * 40, "a" * 5000):
        answer = admin_client.post(URL, {"action": "connect_code", "code": garbage}, follow=True)
        assert "that is not an authorization code" in answer.content.decode()
    settings.KOMMO_CLIENT_SECRET = None
    answer = admin_client.post(URL, {"action": "connect_code", "code": new_code()}, follow=True)
    assert "set KOMMO_CLIENT_SECRET first" in answer.content.decode()
    # Staff who may run checks may not change whose Kommo zkbridge writes to.
    staff = django_user_model.objects.create_user("rita", password="x", is_staff=True)
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_syncrecord", "change_syncrecord"]))
    client.force_login(staff)
    assert client.post(URL, {"action": "connect_code", "code": new_code()}).status_code == 403
    assert client.post(URL, {"action": "disconnect_kommo"}).status_code == 403
    assert not KommoConnection.objects.exists() and not OrmQ.objects.exists()


def consent(location: str, answer: str) -> dict[str, list[str]]:
    """The operator at Kommo's consent page: Allow or Deny; where Kommo sends the browser back to."""
    back = requests.post(location, data={"answer": answer}, allow_redirects=False, timeout=10)
    assert back.status_code == 302
    target = urlparse(back.headers["Location"])
    assert target.path == "/kommo/oauth/callback"
    return parse_qs(target.query)


def test_kommos_consent_page_brings_the_operator_back_connected(oauth, admin_client, client):
    start = admin_client.post(URL, {"action": "connect_kommo"})
    assert start.status_code == 302 and start["Location"].startswith(f"{oauth.kommo}/oauth?client_id=kommo-demo")
    query = consent(start["Location"], "allow")
    assert query["referer"] == ["sandbox.kommo.com"]

    back = client.get("/kommo/oauth/callback", {k: v[0] for k, v in query.items()})  # no admin session needed
    assert back.status_code == 302 and back["Location"] == URL
    assert client.get("/kommo/oauth/callback", {k: v[0] for k, v in query.items()}).status_code == 400  # a reload
    assert run_queued_exchange() == "connected"
    assert kommo_connect.current().via == "callback"


def test_a_callback_zkbridge_did_not_ask_for_is_refused(oauth, admin_client, client):
    code = new_code()
    for params in ({"code": code}, {"code": code, "state": "guessed"}, {}):
        answer = client.get("/kommo/oauth/callback", params)
        assert answer.status_code == 400 and "unknown or older than 20 minutes" in answer.content.decode()
    assert client.post("/kommo/oauth/callback", {"code": code}).status_code == 405

    start = admin_client.post(URL, {"action": "connect_kommo"})
    state = parse_qs(urlparse(start["Location"]).query)["state"][0]
    foreign = client.get("/kommo/oauth/callback", {"code": code, "state": state, "client_id": "someone-else"})
    assert foreign.status_code == 400 and "another integration" in foreign.content.decode()
    KommoConnection.objects.filter(state=state).update(started_at=timezone.now() - dt.timedelta(minutes=21))
    assert client.get("/kommo/oauth/callback", {"code": code, "state": state}).status_code == 400
    assert not OrmQ.objects.exists() and not KommoConnection.objects.exclude(status="awaiting").exists()

    start = admin_client.post(URL, {"action": "connect_kommo"})
    denied = consent(start["Location"], "deny")
    assert client.get("/kommo/oauth/callback", {k: v[0] for k, v in denied.items()}).status_code == 400
    assert "consent was not given" in KommoConnection.objects.get(status="failed").message


def test_disconnecting_returns_to_the_environments_token(oauth, admin_client):
    admin_client.post(URL, {"action": "connect_code", "code": new_code()})
    run_queued_exchange()
    admin_client.post(URL, {"action": "disconnect_kommo"})
    assert kommo_connect.current() is None and not ProviderToken.objects.filter(provider="kommo").exists()
    kommo = KommoClient.from_settings()
    assert kommo.long_lived and kommo.get_lead(24312345)["id"] == 24312345
    assert "long-lived token" in page(admin_client)
