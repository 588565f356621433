"""GET /healthz for load balancers and monitors; /sandbox/ is 404 once the sandbox is off."""

from __future__ import annotations

from unittest import mock

from django.db.utils import OperationalError


def test_healthz_reports_database_and_queue(client, db):
    body = client.get("/healthz").json()
    assert body["database"] == "ok" and body["queue"]["queued"] == 0 and body["last_successful_sync"] is None


def test_healthz_is_503_when_the_database_is_down(client, db):
    with mock.patch("django.db.backends.utils.CursorWrapper.execute", side_effect=OperationalError("gone")):
        answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.json()["database"] == "error"


def test_sandbox_pages_render(client, db):
    from sandbox import demo

    demo.seed()
    assert b"Move to Won" in client.get("/sandbox/kommo/").content
    assert client.get("/sandbox/zuora/").status_code == 200
