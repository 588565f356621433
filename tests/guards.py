"""A guard for the rule "web requests validate, record and enqueue; the workers make every Zuora and Kommo
call": while a zkbridge request is being served, any outbound HTTP call fails the test.

django-q2 runs tasks inline in the test settings (sync mode), which would put the workers' calls inside
the request that enqueued them; the guard switches that off, so queued work stays queued, as in
production, and only what the request itself does is judged. The emulators under /sandbox/ stand for the
outside world and are not judged (the Kommo emulator posts its web hooks from inside its own requests).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import pytest
import requests

serving = contextvars.ContextVar("serving_a_zkbridge_request", default="")


class MarkServing:
    """Test-only middleware: remembers which zkbridge request is being served."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/sandbox/"):
            return self.get_response(request)
        token = serving.set(f"{request.method} {request.path}")
        try:
            return self.get_response(request)
        finally:
            serving.reset(token)


@contextlib.contextmanager
def outbound_guard(settings, monkeypatch) -> Iterator[list[str]]:
    """Within the block: tasks are queued (not run inline) and an outbound call made while a zkbridge
    request is served fails; yields the list of such calls (empty when the rule held)."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)
    settings.MIDDLEWARE = ["tests.guards.MarkServing", *settings.MIDDLEWARE]
    real_send = requests.Session.send
    made: list[str] = []

    def guarded_send(self, request, **kwargs):
        if serving.get():
            made.append(f"{request.method} {request.url} while serving {serving.get()}")
            raise AssertionError(f"outbound call {request.method} {request.url} while serving {serving.get()}")
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", guarded_send)
    try:
        yield made
    finally:
        monkeypatch.undo()
    assert made == [], made


@pytest.fixture
def no_outbound_calls_in_requests(settings, monkeypatch) -> Iterator[list[str]]:
    with outbound_guard(settings, monkeypatch) as made:
        yield made
