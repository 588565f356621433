"""The outside security review's findings, each replayed as the probe sent it (issue 26): secrets nobody can read,
paths nobody can steer, exports nobody can weaponise, a lockout nobody can aim at someone else, callouts nobody
can replay, actions the read-only group cannot start."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import json
import logging

import pytest
import requests
from cryptography.fernet import Fernet
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import NoReverseMatch, reverse

from catalog.models import PlanMapping, ZuoraEntity
from sync.billing.rules import template_problems
from sync.clients.errors import BusinessError
from sync.clients.zuora import ZuoraClient
from sync.groups import READ_ONLY, REVOPS
from sync.lifecycle.models import Subscription
from sync.migration.models import MigrationRule, MigrationRun
from sync.models import ApiCall, ApiToken, ProviderToken, SyncRecord
from sync.reconcile.models import Discrepancy, ReconciliationRun
from tests.conftest import map_plan
from zkbridge import spreadsheet

ACME_EXPANSION = 24312346
ENTITY_SECRET = "entity-secret-Zq81kLmW"
ZUORA_TOKEN = "zuora-access-6f1d2c8e9b"
KOMMO_REFRESH = "kommo-refresh-0a9b8c7d6e"


def stored(table: str, column: str, where: str, value) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE {where} = %s", [value])  # noqa: S608
        return cursor.fetchone()[0]


def staff(name: str, group: str | None) -> Client:
    user = User.objects.create_user(name, password="a long staff password 1", is_staff=True, is_superuser=group is None)
    if group:
        user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


# --- secrets ---------------------------------------------------------------------------------------------------
@pytest.fixture
def secrets_stored(db):
    return store_secrets()


def store_secrets() -> dict:
    entity = ZuoraEntity.objects.create(  # inactive: the demo tenant stays a tenant without entities
        name="EU",
        entity_id="ent-eu",
        default_currency="EUR",
        client_id="c" * 36,
        client_secret=ENTITY_SECRET,
        active=False,
    )
    ProviderToken.objects.create(provider="zuora:999", access_token=ZUORA_TOKEN)
    ProviderToken.objects.create(
        provider="kommo-oauth", access_token="kommo-access-1x2y3z", refresh_token=KOMMO_REFRESH
    )
    from sync.installation import kommo_webhook_token

    webhook = kommo_webhook_token()
    _, api_key = ApiToken.issue(User.objects.create_user("meter"))
    return {"entity": entity, "values": [ENTITY_SECRET, ZUORA_TOKEN, KOMMO_REFRESH, webhook, api_key]}


def test_secrets_are_stored_encrypted_and_read_back(secrets_stored):
    raw = [
        stored("catalog_zuoraentity", "client_secret", "entity_id", "ent-eu"),
        stored("sync_providertoken", "access_token", "provider", "zuora:999"),
        stored("sync_providertoken", "refresh_token", "provider", "kommo-oauth"),
        stored("sync_installationsecret", "value", "name", "kommo_webhook_token"),
    ]
    assert all(value.startswith("fernet:") for value in raw)
    assert not any(secret in value for value in raw for secret in secrets_stored["values"])
    assert ZuoraEntity.objects.get(entity_id="ent-eu").client_secret == ENTITY_SECRET
    [api] = ApiToken.objects.all()
    assert api.digest == hashlib.sha256(secrets_stored["values"][-1].encode()).hexdigest()


def test_rotation_re_encrypts_every_secret_under_the_new_key(secrets_stored, settings):
    new = Fernet.generate_key().decode()
    settings.ZKBRIDGE_ENCRYPTION_KEYS = [new, *settings.ZKBRIDGE_ENCRYPTION_KEYS]
    out = io.StringIO()
    call_command("rotate_encryption_key", stdout=out)
    assert "5 stored secret(s) re-encrypted" in out.getvalue()  # (an empty token is left empty)
    settings.ZKBRIDGE_ENCRYPTION_KEYS = [new]  # the old key dropped: everything still reads
    assert ZuoraEntity.objects.get(entity_id="ent-eu").client_secret == ENTITY_SECRET
    assert ProviderToken.objects.get(provider="kommo-oauth").refresh_token == KOMMO_REFRESH


def test_a_real_setup_without_an_encryption_key_refuses_to_start_with_one_line():
    from tests.test_config import manage

    started = manage(
        "check",
        ZUORA_BASE_URL="https://rest.zuora.example.com",
        ZUORA_CLIENT_ID="id",
        ZUORA_CLIENT_SECRET="s",
        KOMMO_BASE_URL="https://acme.kommo.example.com",
        KOMMO_ACCESS_TOKEN="t",
        ZKBRIDGE_ENCRYPTION_KEYS="",
    )
    assert started.returncode != 0
    assert "ZKBRIDGE_ENCRYPTION_KEYS is required" in started.stderr and "Traceback" not in started.stderr
    bad = manage("check", ZKBRIDGE_ENCRYPTION_KEYS="not-a-key")
    assert "ZKBRIDGE_ENCRYPTION_KEYS: key 1 is not a Fernet key" in bad.stderr


def admin_urls() -> list[str]:
    """Every list, add and change page the admin registers, and the pages zkbridge adds."""
    urls = ["/admin/", "/admin/connections/", "/admin/no-such-page/", "/healthz"]
    for model in admin.site._registry:
        if model._meta.app_label == "django_q":
            continue  # django-q2's own pages (superusers only; its add pages do not render without an object)
        info = (model._meta.app_label, model._meta.model_name)
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        try:
            urls.append(reverse("admin:{}_{}_add".format(*info)))
        except NoReverseMatch:
            pass
        first = model.objects.order_by("pk").first()
        if first is not None:
            urls.append(reverse("admin:{}_{}_change".format(*info), args=[first.pk]))
    return urls


def test_no_secret_appears_on_any_admin_page_export_or_log_as_any_group(caplog, catalog):
    catalog.win(ACME_EXPANSION)  # a real sync: its API calls, steps and tokens are on the pages too
    call_command("reconcile", verbosity=0)
    secrets = store_secrets()["values"] + [t.access_token for t in ProviderToken.objects.all() if t.access_token]
    caplog.set_level(logging.DEBUG)
    for client in (staff("root", None), staff("rita", REVOPS), staff("rory", READ_ONLY)):
        for url in admin_urls() + ["/admin/catalog/planmapping/export/"]:
            page = client.get(url).content.decode("utf-8", "replace")
            leaked = [s for s in secrets if s and s in page]
            assert leaked == [], (url, leaked)
    out = io.StringIO()
    call_command("dumpdata", "catalog.zuoraentity", "sync.providertoken", "sync.installationsecret", stdout=out)
    assert not any(s in out.getvalue() for s in secrets)
    assert not any(s in caplog.text for s in secrets)


def test_the_entity_page_says_set_and_keeps_the_secret_unless_replaced(secrets_stored, admin_client):
    url = reverse("admin:catalog_zuoraentity_change", args=[secrets_stored["entity"].pk])
    assert "set — leave empty to keep it" in admin_client.get(url).content.decode()
    reader = staff("rory", READ_ONLY)
    page = reader.get(url).content.decode()
    assert ">set<" in page and ENTITY_SECRET not in page
    form = {
        "name": "EU",
        "entity_id": "ent-eu",
        "default_currency": "EUR",
        "client_id": "c" * 36,
        "client_secret": "",
        "active": "on",
    }
    assert admin_client.post(url, form).status_code == 302
    assert ZuoraEntity.objects.get(pk=secrets_stored["entity"].pk).client_secret == ENTITY_SECRET
    admin_client.post(url, {**form, "client_secret": "replaced-secret-99"})
    assert ZuoraEntity.objects.get(pk=secrets_stored["entity"].pk).client_secret == "replaced-secret-99"


# --- paths built from outside data --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "number", ["../catalog/products?pageSize=1&x=", "../../../kommo/api/v4/leads", "A-S1/../../x", "%2e%2e", "A S1"]
)
def test_a_callout_naming_a_strange_subscription_calls_nothing(catalog, settings, number):
    settings.ZUORA_CALLOUT_USERNAME, settings.ZUORA_CALLOUT_PASSWORD = "zuora", "callout-password"
    catalog.win(ACME_EXPANSION)
    before = ApiCall.objects.filter(provider="zuora").count()
    body = {"eventType": "SubscriptionRenewed", "accountNumber": "A00000001", "subscriptionNumber": number}
    answer = requests.post(f"{catalog.url}/webhooks/zuora/", json=body, auth=("zuora", "callout-password"), timeout=10)
    assert answer.status_code in (200, 400)
    assert ApiCall.objects.filter(provider="zuora").count() == before  # not one call to Zuora
    record = SyncRecord.objects.filter(kind="billing_event").last()
    assert record is None or record.status == "ignored", record and record.reason


@pytest.mark.parametrize(
    "path",
    ["httpfoo", "/v1/../oauth/token", "/v1/%2e%2e/x", "https://evil.example.com/v1/orders", "//evil.example.com/x"],
)
def test_the_client_never_follows_a_path_out_of_its_base_url(emulators, path):
    with pytest.raises(BusinessError):
        ZuoraClient.from_settings().request("GET", path)
    with pytest.raises(BusinessError):
        ZuoraClient.from_settings().get_subscription("../catalog/products")


# --- exports -----------------------------------------------------------------------------------------------------
FORMULAS = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1", "|calc"]


def live_formula(cell: str) -> bool:
    return cell.lstrip(" \t\r\n")[:1] in ("=", "+", "-", "@", "|") and not cell.startswith("'")


def test_the_reconciliation_csv_carries_no_live_formula(emulators, admin_client, tmp_path):
    run = ReconciliationRun.objects.create(ok=True)
    for n, formula in enumerate(FORMULAS):
        Discrepancy.objects.create(
            run=run,
            kind="orphan_subscription",
            action="review",
            zuora_subscription_number=formula,
            detail=formula,
            kommo_lead_id=n + 1,
        )
    download = admin_client.get(reverse("admin:sync_reconcile_csv", args=[run.id])).content.decode()
    import csv

    cells = [c for row in csv.reader(io.StringIO(download)) for c in row]
    assert not any(live_formula(c) for c in cells), [c for c in cells if live_formula(c)]
    from sync.reconcile.run import report_csv

    assert not any(live_formula(c) for row in csv.reader(io.StringIO(report_csv(run))) for c in row)


def test_the_plan_map_export_neutralises_formulas_and_imports_back_exactly(catalog, admin_client, tmp_path):
    mapping = map_plan('=HYPERLINK("http://x","y")', "Growth")
    mapping.label = "\t=cmd|' /C calc'!A0"
    mapping.save()
    exported = admin_client.get("/admin/catalog/planmapping/export/").content.decode()
    import csv

    cells = [c for row in csv.reader(io.StringIO(exported)) for c in row]
    assert not any(live_formula(c) for c in cells)
    path = tmp_path / "map.csv"
    path.write_text(exported)
    PlanMapping.objects.all().delete()
    call_command("import_plan_map", str(path), verbosity=0)
    back = PlanMapping.objects.get(kommo_value='=HYPERLINK("http://x","y")')
    assert back.label == "\t=cmd|' /C calc'!A0".strip()  # cells are read stripped, as before
    assert spreadsheet.unescape(spreadsheet_cell("|x")) == "|x"


def spreadsheet_cell(value: str) -> str:
    out = io.StringIO()
    spreadsheet.writer(out).writerow([value])
    import csv

    return next(csv.reader(io.StringIO(out.getvalue())))[0]


# --- the lockout behind the proxy ------------------------------------------------------------------------------
def test_behind_the_proxy_a_stranger_cannot_lock_the_real_user_out(db, settings):
    settings.ZKBRIDGE_TRUSTED_PROXIES = 1
    User.objects.create_user("rita", password="the right one, long", is_staff=True, is_superuser=True)

    def login(password: str, client_address: str):
        return Client().post(
            "/admin/login/?next=/admin/",
            {"username": "rita", "password": password},
            REMOTE_ADDR="10.0.0.2",  # the proxy, for every client
            HTTP_X_FORWARDED_FOR=f"6.6.6.6, {client_address}",  # a forged entry, then what the proxy saw
        )

    for _ in range(settings.AXES_FAILURE_LIMIT):
        login("guess", "203.0.113.7")
    assert login("the right one, long", "203.0.113.7").status_code == 429  # the guesser's address is locked
    assert login("the right one, long", "198.51.100.9").status_code == 302  # Rita, elsewhere, gets in


def test_the_endpoints_count_failures_per_client_behind_the_proxy(client, db, settings):
    settings.ZKBRIDGE_TRUSTED_PROXIES = 1
    settings.ZKBRIDGE_AUTH_FAILURES_PER_MINUTE = 3
    settings.ZUORA_CALLOUT_USERNAME, settings.ZUORA_CALLOUT_PASSWORD = "zuora", "pw"

    def post(address: str):
        return client.post(
            "/webhooks/zuora/", "{}", content_type="application/json", HTTP_AUTHORIZATION="Basic eDp5",
            REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=address,
        )  # fmt: skip

    statuses = [post("203.0.113.7").status_code for _ in range(5)]
    assert statuses[-1] == 429 and post("198.51.100.9").status_code == 401  # another client is not throttled


# --- callout replay --------------------------------------------------------------------------------------------------
def test_a_signed_callout_replayed_under_new_notification_ids_is_one_event(catalog, settings):
    settings.ZUORA_CALLOUT_USERNAME, settings.ZUORA_CALLOUT_PASSWORD = "zuora", "callout-password"
    settings.ZUORA_CALLOUT_HMAC_KEY = "hmac-key"
    catalog.win(ACME_EXPANSION)
    deal = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    body = json.dumps(
        {
            "eventType": "PaymentProcessingError",
            "accountNumber": deal.zuora_account_number,
            "amount": "10",
            "paymentNumber": "P-1",
        }
    ).encode()
    signature = hmac.new(b"hmac-key", body, hashlib.sha256).hexdigest()
    notes_before = len(catalog.notes(ACME_EXPANSION))
    for notification in ("n1", "n2", "n3", "n4"):
        answer = requests.post(
            f"{catalog.url}/webhooks/zuora/",
            data=body,
            auth=("zuora", "callout-password"),
            headers={
                "Content-Type": "application/json",
                "X-Zuora-Signature": signature,
                "Zuora-Notification-Id": notification,
            },
            timeout=10,
        )
        assert answer.status_code == 200
    assert SyncRecord.objects.filter(kind="billing_event").count() == 1
    assert len(catalog.notes(ACME_EXPANSION)) == notes_before + 1 and len(catalog.tasks(ACME_EXPANSION)) <= 1


# --- who may do what --------------------------------------------------------------------------------------------------
def test_the_read_only_group_cannot_start_a_migration_run_or_a_refresh(catalog):
    from catalog.models import ProductRatePlan

    rule = MigrationRule.objects.create(
        source_plan=ProductRatePlan.objects.get(name="Scale (retiring)"),
        target_plan=ProductRatePlan.objects.get(name="Starter"),
        starts_on=dt.date(2026, 11, 1),
    )
    Subscription.objects.create(number="A-S00000077", account_number="A1")
    reader = staff("rory", READ_ONLY)
    for action in ("dry_run", "run_now"):
        answer = reader.post(
            reverse("admin:sync_migrationrule_changelist"), {"action": action, "_selected_action": [rule.pk]}
        )
        assert MigrationRun.objects.count() == 0, action
        assert answer.status_code in (200, 302, 403)
    reader.post(
        reverse("admin:sync_subscription_changelist"),
        {"action": "refresh_from_zuora", "_selected_action": ["A-S00000077"]},
    )
    assert not LogEntry.objects.exists()
    rita = staff("rita", REVOPS)
    rita.post(reverse("admin:sync_migrationrule_changelist"), {"action": "dry_run", "_selected_action": [rule.pk]})
    [run] = MigrationRun.objects.all()
    assert run.dry_run and run.requested_by == "rita"
    assert LogEntry.objects.filter(object_id=str(rule.pk), change_message__contains="dry run").exists()


def test_healthz_says_error_and_logs_the_detail(client, db, monkeypatch, caplog):
    from sync.ops import health

    class Unreachable:
        def cursor(self):
            raise OSError('connection to server at "db.internal" (10.1.2.3), user "zkbridge_prod" failed')

    monkeypatch.setattr(health, "connection", Unreachable())
    answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.json() == {"database": "error"}
    assert "zkbridge_prod" in caplog.text


@pytest.mark.parametrize("password", ["password", "12345678", "123456789012", "rita-rita-rita"])
def test_weak_staff_passwords_are_refused(db, password):
    with pytest.raises(ValidationError):
        validate_password(password, User(username="rita-rita-rita", email="rita@example.com"))
    validate_password("correct horse battery staple", User(username="rita"))


@pytest.mark.parametrize("template", ["{amount:>999999999}", "{amount!r}", "{account:.99999f}", "{event!s:^100}"])
def test_billing_templates_refuse_format_specs_and_conversions(template):
    assert template_problems(template)
    from sync.billing.rules import render
    from sync.webhooks.zuora import BillingEvent

    event = BillingEvent("PaymentProcessed", "A1", "", "", "12.00", "USD")
    assert len(render(template, event)) < 100


def test_actions_that_queue_work_are_in_the_admins_history(emulators, monkeypatch):
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: None)  # queued, not run here
    rita = staff("rita", REVOPS)
    rita.post("/admin/connections/")
    rita.post(reverse("admin:catalog_sync_now"))
    rita.post(reverse("admin:sync_reconcile_now"))
    said = set(LogEntry.objects.filter(user__username="rita").values_list("change_message", flat=True))
    assert {
        "asked for a connection check",
        "asked for a catalog sync now",
        "asked for a reconciliation run now",
    } <= said


def test_the_migration_csv_carries_no_live_formula(db, admin_client):
    from sync.migration.admin import COLUMNS

    rows = [{column: formula for column in COLUMNS} for formula in FORMULAS]
    run = MigrationRun.objects.create(day=dt.date(2026, 12, 19), dry_run=True, ok=True, rows=rows)
    download = admin_client.get(reverse("admin:sync_migrationrun_csv", args=[run.id])).content.decode()
    import csv

    cells = [c for row in list(csv.reader(io.StringIO(download)))[1:] for c in row]
    assert cells and not any(live_formula(c) for c in cells), [c for c in cells if live_formula(c)]
