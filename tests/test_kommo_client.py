"""KommoClient against the emulator over real HTTP: 204s, throttling, 429s, rotating refresh tokens."""

from __future__ import annotations

import time

import pytest

from sandbox.common import set_setting
from sandbox.models import KAuthCode, KToken, RequestLog
from sync.clients.errors import AuthError, BusinessError, NotFoundError, TransientError
from sync.clients.kommo import KommoClient
from sync.models import ApiCall, ProviderToken
from tests.conftest import requires_postgres, run_together

OAUTH = {
    "client_id": "kommo-demo-client",
    "client_secret": "kommo-demo-client-secret",
    "redirect_uri": "https://zkbridge.example/oauth",
}


def client(emulators, **kw) -> KommoClient:
    kw.setdefault("access_token", "kommo-demo-long-lived-token")
    kw.setdefault("requests_per_second", 1000)
    return KommoClient(emulators.kommo, **kw)


def oauth_client(emulators, refresh_token: str) -> KommoClient:
    return KommoClient(emulators.kommo, refresh_token=refresh_token, requests_per_second=1000, **OAUTH)


def first_refresh_token(emulators) -> str:
    import requests

    KAuthCode.objects.create(code="c")
    return requests.post(
        f"{emulators.kommo}/oauth2/access_token",
        timeout=10,
        json={**OAUTH, "grant_type": "authorization_code", "code": "c"},
    ).json()["refresh_token"]


def test_an_unknown_lead_is_not_found(emulators):
    with pytest.raises(NotFoundError):
        client(emulators).get_lead(999)


def test_an_empty_list_is_204_and_reads_as_empty(emulators):
    assert list(client(emulators).won_leads([(4520110, 142)])) == []


def test_a_non_json_429_is_retried(emulators):
    emulators.fault("kommo", "http429", "/api/v4/leads", retry_after=1, remaining=1)
    assert client(emulators).get_lead(24312345)["id"] == 24312345


def test_the_throttle_stays_under_seven_requests_a_second(emulators):
    set_setting("kommo_requests_per_second", 7)
    time.sleep(1.1)  # the fixture's own calls count against the same window
    kommo = client(emulators, requests_per_second=7)
    started = time.monotonic()
    for _ in range(15):
        kommo.pipelines()
    assert time.monotonic() - started >= 2.0
    assert not RequestLog.objects.filter(service="kommo", status=429).exists()


def test_a_calls_place_in_the_window_dates_from_its_end(emulators):
    # A call can reach Kommo any time until its answer is back (held up by a busy machine or the network):
    # the next call that window allows waits a full window after the previous one ended, not after it left.
    emulators.fault("kommo", "latency", "/api/v4/leads/pipelines", latency_ms=400)
    set_setting("kommo_requests_per_second", 1)
    time.sleep(1.1)  # the fixture's own calls count against the same window
    kommo = client(emulators, requests_per_second=1)
    started = time.monotonic()
    kommo.pipelines()
    first_over = time.monotonic()
    kommo.pipelines()
    # dated from its start, the second call would have left 1.05 s after the first one did (0.65 s after it
    # ended); dated from its end, a full window after that
    assert time.monotonic() - first_over >= 1.05 + 0.4 - 0.05, time.monotonic() - started
    assert not RequestLog.objects.filter(service="kommo", status=429).exists()


def test_a_blocked_account_is_transient_with_a_long_wait(emulators):
    emulators.fault("kommo", "html403", "/api/v4/")
    with pytest.raises(TransientError) as caught:
        client(emulators).get_lead(24312345)
    assert caught.value.retry_after == 600 and "blocked" in str(caught.value)


def test_a_validation_error_names_the_field(emulators):
    with pytest.raises(BusinessError, match="custom_fields_values.0.field_id"):
        client(emulators).update_lead_fields(24312345, {12345: "x"})


def test_a_revoked_long_lived_token_is_an_auth_error(emulators):
    with pytest.raises(AuthError):
        client(emulators, access_token="revoked").get_lead(24312345)


def test_refresh_tokens_rotate_and_the_new_pair_is_kept(emulators):
    initial = first_refresh_token(emulators)
    assert oauth_client(emulators, initial).get_lead(24312345)["id"] == 24312345
    row = ProviderToken.objects.get(provider="kommo")
    assert row.refresh_token and row.refresh_token != initial
    # A later worker starts from the stored pair, not the (now dead) one in the environment.
    ProviderToken.objects.filter(provider="kommo").update(access_token="")
    assert oauth_client(emulators, initial).get_lead(24312345)["id"] == 24312345
    assert ProviderToken.objects.get(provider="kommo").refresh_count == 2
    assert not ApiCall.objects.filter(response_body__contains=row.refresh_token).exists()


def test_a_revoked_refresh_token_is_an_auth_error(emulators):
    with pytest.raises(AuthError, match="revoked"):
        oauth_client(emulators, "not-a-real-refresh-token").get_lead(24312345)


@requires_postgres
def test_concurrent_workers_never_race_a_refresh(emulators):
    oauth_client(emulators, first_refresh_token(emulators)).pipelines()
    ProviderToken.objects.filter(provider="kommo").update(access_token="expired-locally")
    errors = run_together(5, lambda: oauth_client(emulators, "unused").pipelines())
    assert not errors
    # One refresh for the first call, one for the five racing workers together.
    assert KToken.objects.filter(refresh_used=True).count() == 2


def test_the_weekly_refresh_keeps_an_oauth_integration_alive(emulators, settings):
    from sync.clients.kommo import keep_refresh_token_alive

    settings.KOMMO_ACCESS_TOKEN = None
    settings.KOMMO_CLIENT_ID, settings.KOMMO_CLIENT_SECRET = OAUTH["client_id"], OAUTH["client_secret"]
    settings.KOMMO_REDIRECT_URI, settings.KOMMO_REFRESH_TOKEN = OAUTH["redirect_uri"], first_refresh_token(emulators)
    assert keep_refresh_token_alive() == "refreshed"
    assert keep_refresh_token_alive() == "refreshed"
    assert ProviderToken.objects.get(provider="kommo").refresh_count == 2
    settings.KOMMO_ACCESS_TOKEN = "kommo-demo-long-lived-token"
    assert keep_refresh_token_alive().startswith("long-lived")
