"""The endpoints fuzzed from their own OpenAPI document (schemathesis): whatever is generated, no server
error. Authenticated, so the bodies reach the readers: the web hook token is the real one, the usage feed
carries a valid token (Zuora callouts need none in the test settings' sandbox mode).

ZKBRIDGE_FUZZ_EXAMPLES sets how many requests each endpoint gets (CI's PostgreSQL run: 1,000)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from sync.installation import kommo_webhook_token
from sync.models import ApiToken
from tests.browser import ARTIFACTS
from zkbridge.wsgi import application

EXAMPLES = int(os.environ.get("ZKBRIDGE_FUZZ_EXAMPLES", "100"))
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
SENT: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_requests_sent():
    """How many generated requests each endpoint got, for BENCHMARKS.md (test-artifacts/fuzz-requests.json)."""
    yield
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fuzz-requests.json").write_text(json.dumps(dict(sorted(SENT.items())), indent=2))


@pytest.fixture
def secrets(db, monkeypatch) -> Iterator[dict[str, str]]:
    monkeypatch.setattr("sync.records.enqueue_record", lambda record_id: None)  # the endpoints, not the flows
    token = ApiToken.issue(User.objects.get_or_create(username="fuzz")[0])[1]
    # The real WSGI handler closes the database connection after each request; inside a test's transaction
    # it must not (Django's own test client does the same).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield {"usage": token, "kommo": kommo_webhook_token()}
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_generated_request_is_a_server_error(case, secrets):
    headers = {}
    if case.path == "/webhooks/kommo/{token}/":
        case.path_parameters = {"token": secrets["kommo"]}
    if case.path == "/api/usage/":
        headers["Authorization"] = f"Token {secrets['usage']}"
    response = case.call(headers=headers)
    SENT[f"{case.method} {case.path}"] += 1
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    )
