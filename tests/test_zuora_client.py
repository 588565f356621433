"""ZuoraClient against the emulator over real HTTP: tokens, errors, retries, idempotency, redaction."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.utils import timezone

from sandbox.demo import zuora_id
from sandbox.models import ZIdempotency, ZSubscription, ZToken
from sync.clients.errors import AuthError, BusinessError, NotFoundError, TransientError
from sync.clients.zuora import ZuoraClient
from sync.models import ApiCall, ProviderToken
from tests.conftest import requires_postgres, run_together

DEMO_CLIENT = "2b7e1a90-5c3d-4f8e-9a6b-0d4c7e1f3a25"  # the emulated tenant's OAuth client


def client(emulators, **kw) -> ZuoraClient:
    return ZuoraClient(emulators.zuora, DEMO_CLIENT, kw.pop("secret", "zkbridge-demo-secret"), **kw)


def new_order(plan="Growth") -> dict:
    day = timezone.localdate().isoformat()
    return {
        "orderDate": day,
        "newAccount": {
            "name": "ACME",
            "currency": "USD",
            "billCycleDay": 0,
            "billToContact": {"firstName": "Jane", "lastName": "Doe", "workEmail": "jane@acme.example"},
        },
        "subscriptions": [
            {
                "orderActions": [
                    {
                        "type": "CreateSubscription",
                        "createSubscription": {"subscribeToRatePlans": [{"productRatePlanId": zuora_id(plan)}]},
                    }
                ]
            }
        ],
    }


def test_one_token_serves_every_client_until_it_nearly_expires(emulators):
    for _ in range(3):
        list(client(emulators).catalog_pages())
    assert emulators.calls("zuora", "POST", "/oauth/token") == 1
    ProviderToken.objects.filter(provider="zuora").update(expires_at=timezone.now() + dt.timedelta(seconds=30))
    list(client(emulators).catalog_pages())
    assert emulators.calls("zuora", "POST", "/oauth/token") == 2


def test_a_401_gets_one_new_token_and_the_call_succeeds(emulators):
    list(client(emulators).catalog_pages())
    ZToken.objects.all().delete()  # Zuora forgot the token (revoked, or expired early)
    pages = list(client(emulators).catalog_pages())
    assert pages and emulators.calls("zuora", "POST", "/oauth/token") == 2


def test_wrong_credentials_are_an_auth_error_not_retried(emulators):
    with pytest.raises(AuthError):
        list(client(emulators, secret="wrong").catalog_pages())
    assert emulators.calls("zuora", "POST", "/oauth/token") == 1


@requires_postgres
def test_concurrent_workers_share_one_token_fetch(emulators):
    errors = run_together(5, lambda: client(emulators).access_token())
    assert not errors and emulators.calls("zuora", "POST", "/oauth/token") == 1


def test_success_false_on_http_200_is_a_business_error_with_its_code(emulators):
    with pytest.raises(BusinessError) as caught:
        client(emulators).create_order(new_order("Growth (2024)"), idempotency_key="k1")
    assert caught.value.code == 53100330 and "not effective" in str(caught.value)


def test_unknown_plan_is_not_found(emulators):
    with pytest.raises(NotFoundError):
        client(emulators).create_order(new_order("Nope"), idempotency_key="k2")


def test_lock_contention_is_retried_with_the_same_key(emulators):
    emulators.fault("zuora", "success_false", "/v1/orders", reason_code=53100050, reason_message="lock", remaining=1)
    result = client(emulators).create_order(new_order(), idempotency_key="k3")
    assert result.subscription_numbers and ZSubscription.objects.count() == 1


def test_429_waits_for_retry_after_then_succeeds(emulators):
    emulators.fault("zuora", "http429", "/v1/catalog", retry_after=1, remaining=1)
    started = time.monotonic()
    assert list(client(emulators).catalog_pages())
    assert time.monotonic() - started >= 1.0


def test_a_long_retry_after_goes_back_to_the_caller(emulators):
    emulators.fault("zuora", "http429", "/v1/catalog", retry_after=120)
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        list(client(emulators).catalog_pages())
    assert caught.value.retry_after == 120 and time.monotonic() - started < 5


def test_non_json_502_is_transient_with_an_excerpt(emulators):
    emulators.fault("zuora", "http502", "/v1/catalog")
    with pytest.raises(TransientError) as caught:
        list(client(emulators).catalog_pages())
    assert "502" in str(caught.value) and "Bad Gateway" in caught.value.excerpt
    assert emulators.calls("zuora", "GET", "/v1/catalog") == 3  # bounded: three tries


def test_timeouts_are_transient(emulators):
    emulators.fault("zuora", "timeout", "/v1/catalog", sleep_seconds=1.5)
    with pytest.raises(TransientError, match="no answer"):
        list(client(emulators, timeout=0.3).catalog_pages())
    time.sleep(1.5)


def test_dropped_connection_after_commit_makes_one_subscription(emulators):
    emulators.fault("zuora", "drop_after_commit", "/v1/orders", remaining=1)
    result = client(emulators).create_order(new_order(), idempotency_key="k4")
    assert result.subscription_numbers and ZSubscription.objects.count() == 1


def send_in_background(emulators, key: str) -> tuple[threading.Thread, list]:
    """The first request, sent from another worker; returns once Zuora has reserved its key."""
    from django.db import connection

    results: list = []

    def first() -> None:
        try:
            results.append(client(emulators).create_order(new_order(), idempotency_key=key))
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    deadline = time.monotonic() + 10
    while not ZIdempotency.objects.filter(key=key).exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return thread, results


def test_a_duplicate_sent_while_the_first_is_processed_gets_409_then_the_first_answer(emulators):
    """Zuora reserves an Idempotency-Key before it works: a duplicate that arrives meanwhile is answered 409
    at once; the client waits, sends it again, and gets the first request's answer replayed."""
    client(emulators).access_token()
    emulators.fault("zuora", "slow", "/v1/orders$", sleep_seconds=1.5, remaining=1)
    thread, first = send_in_background(emulators, "k-dup")
    duplicate = client(emulators).create_order(new_order(), idempotency_key="k-dup")
    thread.join()
    assert duplicate.order_number == first[0].order_number and ZSubscription.objects.count() == 1
    assert ApiCall.objects.filter(path="/v1/orders", status=409).exists()


def test_a_duplicate_of_a_long_request_goes_back_to_its_record_as_transient(emulators):
    client(emulators).access_token()
    emulators.fault("zuora", "slow", "/v1/orders$", sleep_seconds=6, remaining=1)
    thread, first = send_in_background(emulators, "k-long")
    with pytest.raises(TransientError, match="still being processed"):
        client(emulators).create_order(new_order(), idempotency_key="k-long")
    thread.join()
    # Later (the record's retry), the same key gets the first answer and nothing is created twice.
    replay = client(emulators).create_order(new_order(), idempotency_key="k-long")
    assert replay.order_number == first[0].order_number and ZSubscription.objects.count() == 1


def test_calls_are_logged_without_secrets(emulators):
    zuora = client(emulators)
    zuora.create_order(new_order(), idempotency_key="k5", track_id="zkbridge-1")
    token = ProviderToken.objects.get(provider="zuora").access_token
    calls = list(ApiCall.objects.filter(provider="zuora"))
    assert {c.path for c in calls} == {"/oauth/token", "/v1/orders"}
    for call in calls:
        stored = call.request_body + call.response_body + call.path + call.error
        assert "zkbridge-demo-secret" not in stored and token not in stored
    order = next(c for c in calls if c.path == "/v1/orders")
    assert order.status == 200 and order.request_id and order.idempotency_key == "k5"
    assert '"access_token": "***"' in next(c for c in calls if c.path == "/oauth/token").response_body
