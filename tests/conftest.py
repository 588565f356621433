"""Shared fixtures: the emulators on a live server, zkbridge pointed at them, and helpers to look in.

Tests talk to the emulators over real HTTP (the live server); django-q2 runs in sync mode, so a web
hook's flow has finished when the web hook's answer arrives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.db import connection

from catalog.models import MappedRatePlan, PlanMapping, ProductRatePlan
from sandbox import demo
from sandbox.common import IN_FLIGHT, set_setting
from sandbox.models import Fault, KLead, KNote, KTask, RequestLog, ZAccount, ZSubscription
from sync.catalog_sync import sync_catalog
from sync.installation import kommo_webhook_token

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"

requires_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")


def run_together(count: int, work) -> list[Exception]:
    """Run `work()` in `count` threads released at the same instant; return what they raised."""
    import threading

    barrier = threading.Barrier(count)
    errors: list[Exception] = []

    def worker():
        try:
            barrier.wait()
            work()
        except Exception as exc:  # collected for the test to assert on
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


@dataclass
class Emulators:
    """The running emulators, and zkbridge configured to use them."""

    url: str

    @property
    def zuora(self) -> str:
        return f"{self.url}/sandbox/zuora"

    @property
    def kommo(self) -> str:
        return f"{self.url}/sandbox/kommo"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/webhooks/kommo/{kommo_webhook_token()}/"

    def fault(self, service: str, kind: str, path_prefix: str = "/", **fields) -> Fault:
        return Fault.objects.create(service=service, kind=kind, path_prefix=path_prefix, **fields)

    def win(self, lead_id: int, status_id: int = 142) -> requests.Response:
        """A salesperson moves the lead to Won; the emulator posts the web hook (synchronously in tests)."""
        return requests.post(
            f"{self.url}/sandbox/control/kommo/leads/{lead_id}/status",
            data=json.dumps({"status_id": status_id}),
            timeout=30,
        )

    def subscriptions(self, lead_id: int | None = None) -> list[ZSubscription]:
        subs = ZSubscription.objects.select_related("account").order_by("id")
        return [s for s in subs if lead_id is None or s.custom_fields.get("KommoLeadId__c") == str(lead_id)]

    def accounts(self) -> list[ZAccount]:
        return list(ZAccount.objects.order_by("id"))

    def notes(self, lead_id: int) -> list[str]:
        return [n.params.get("text") for n in KNote.objects.filter(entity_id=lead_id).order_by("id")]

    def tasks(self, lead_id: int) -> list[KTask]:
        return list(KTask.objects.filter(entity_id=lead_id).order_by("id"))

    def lead(self, lead_id: int) -> KLead:
        return KLead.objects.get(id=lead_id)

    def calls(self, service: str, method: str | None = None, path_prefix: str = "") -> int:
        """Requests the emulator answered; a path ending in "$" counts that exact path only."""
        if path_prefix.endswith("$"):
            queryset = RequestLog.objects.filter(service=service, path=path_prefix[:-1])
        else:
            queryset = RequestLog.objects.filter(service=service, path__startswith=path_prefix)
        return queryset.filter(method=method).count() if method else queryset.count()


@pytest.fixture
def emulators(live_server, settings, transactional_db) -> Emulators:
    """Fresh emulators with the demo data, zkbridge pointed at them, the web hook registered."""
    settings.ZKBRIDGE_URL = live_server.url
    settings.ZUORA_BASE_URL = f"{live_server.url}/sandbox/zuora"
    settings.KOMMO_BASE_URL = f"{live_server.url}/sandbox/kommo"
    settings.ZUORA_CLIENT_ID = settings.SANDBOX_ZUORA_CLIENT_ID
    settings.ZUORA_CLIENT_SECRET = settings.SANDBOX_ZUORA_CLIENT_SECRET
    settings.KOMMO_ACCESS_TOKEN = settings.SANDBOX_KOMMO_TOKEN
    settings.KOMMO_PLAN_FIELD_ID = 881234
    settings.KOMMO_ACCOUNT_FIELD_ID = 881250
    settings.KOMMO_SUBSCRIPTION_FIELD_ID = 881251
    # The live server outlives a test: a request of the previous test still sleeping in a timeout fault
    # would log its call (and write its work) into this test's emulators once it wakes.
    assert IN_FLIGHT.wait_idle(timeout=30), "an emulator request of an earlier test is still running"
    demo.reset()
    demo.seed()
    set_setting("kommo_webhook_delivery", "sync")
    # The tests make many calls a second; the emulator's Kommo limit is tested on its own.
    set_setting("kommo_requests_per_second", 1000)
    settings.KOMMO_REQUESTS_PER_SECOND = 1000
    env = Emulators(live_server.url)
    requests.post(
        f"{env.kommo}/api/v4/webhooks",
        json={"destination": env.webhook_url, "settings": ["status_lead"]},
        headers={"Authorization": f"Bearer {settings.SANDBOX_KOMMO_TOKEN}"},
        timeout=10,
    ).raise_for_status()
    return env


@pytest.fixture
def catalog(emulators) -> Emulators:
    """The emulators plus zkbridge's catalog mirror and the demo plan map."""
    run = sync_catalog()
    assert run.ok, run.error
    from django.core.management import call_command

    call_command(
        "import_plan_map", str(Path(__file__).resolve().parents[1] / "sandbox/fixtures/demo-plan-map.csv"), verbosity=0
    )
    return emulators


def map_plan(value: str, plan_name: str, currency: str = "USD", **item) -> PlanMapping:
    """Map a Kommo value straight to a plan (bypassing the sellable check, like a legacy mapping)."""
    mapping, _ = PlanMapping.objects.get_or_create(kind="plan", kommo_value=value, currency=currency)
    MappedRatePlan.objects.create(
        mapping=mapping, product_rate_plan=ProductRatePlan.objects.get(name=plan_name), **item
    )
    return mapping


@pytest.fixture(autouse=True)
def _tokens_read_afresh():
    """Each test reads the accepted web hook tokens from its own database (the process keeps them 10 s)."""
    from sync.installation import forget_accepted_tokens

    forget_accepted_tokens()
    yield
    forget_accepted_tokens()


@pytest.fixture(scope="session", autouse=True)
def _no_stray_database_sessions(django_db_setup, django_db_blocker):
    """At the end of the run, end database sessions still held by live-server threads (a browser's
    keep-alive connection keeps its handler thread alive), so the test database can be dropped."""
    yield
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
