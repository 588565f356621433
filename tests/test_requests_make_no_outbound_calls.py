"""Web requests validate, record and enqueue; the workers make every Zuora and Kommo call. Every admin page
and action, and every machine endpoint, is exercised here with the outbound guard on (tests/guards.py):
the work they ask for is queued, and none of them calls Zuora or Kommo while the browser waits."""

from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.auth.models import User
from django.urls import reverse
from django_q.models import OrmQ

from sandbox.models import KLead
from sync.models import ApiToken, SyncRecord
from sync.reconcile import run_reconciliation
from sync.reconcile.models import Discrepancy
from tests.conftest import map_plan
from tests.guards import outbound_guard

UMBRELLA, ACME_EXPANSION, SOLO = 24312350, 24312346, 24312349


def test_no_admin_page_or_endpoint_calls_zuora_or_kommo(catalog, admin_client, client, settings, monkeypatch):
    # Arrange, with the workers inline: a billed deal, one that needs attention, and a report to fix.
    catalog.win(ACME_EXPANSION)
    catalog.win(SOLO)
    catalog.win(UMBRELLA)
    lead = KLead.objects.get(id=ACME_EXPANSION)
    lead.custom_fields_values = [f for f in lead.custom_fields_values if f["field_id"] != 881251]
    lead.save()
    run_reconciliation()
    stuck = SyncRecord.objects.get(key=f"deal_won:{UMBRELLA}")
    map_plan("Platinum", "Starter")
    _, key = ApiToken.issue(User.objects.create(username="feed"))

    with outbound_guard(settings, monkeypatch):
        queued_before = OrmQ.objects.count()
        # Every list, change and add page the admin registers.
        for model in admin.site._registry:
            meta = model._meta
            assert admin_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")).status_code == 200
            first = model._default_manager.first()
            if first is not None:
                url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[first.pk])
                assert admin_client.get(url).status_code == 200, url
        for url in (
            "/admin/",
            "/admin/connections/",
            "/admin/catalog/productrateplan/legacy/",
            "/admin/catalog/planmapping/import/",
            "/admin/catalog/planmapping/export/",
            "/api/schema/",
            "/healthz",
        ):
            assert admin_client.get(url).status_code == 200, url
        # Every action that asks for outside work: queued, not done.
        assert admin_client.post("/admin/connections/").status_code == 302
        assert admin_client.post(reverse("admin:catalog_sync_now")).status_code == 302
        assert admin_client.post(reverse("admin:sync_reconcile_now")).status_code == 302
        assert admin_client.post(f"/admin/sync/syncrecord/{stuck.id}/repair/retry/").status_code == 302
        rows = list(Discrepancy.objects.values_list("id", flat=True))
        answer = admin_client.post(
            "/admin/sync/discrepancy/", {"action": "apply_fix", "_selected_action": rows, "index": 0}
        )
        assert answer.status_code == 302
        # The machine endpoints.
        body = f"leads[status][0][id]={SOLO}&leads[status][0][status_id]=142&leads[status][0][pipeline_id]=4520110"
        assert (
            client.post(
                catalog.webhook_url.split(catalog.url)[1], body, content_type="application/x-www-form-urlencoded"
            ).status_code
            == 200
        )
        callout = {"eventType": "PaymentProcessed", "accountNumber": "A00000001", "amount": "10", "currency": "USD"}
        assert client.post("/webhooks/zuora/", json.dumps(callout), content_type="application/json").status_code == 200
        usage = [
            {
                "subscription_number": "A-S00000001",
                "uom": "Seat",
                "quantity": "1",
                "start_date": "2026-11-01",
                "unique_key": "guard-1",
            }
        ]
        assert (
            client.post(
                "/api/usage/",
                json.dumps(usage),
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Token {key}",
            ).status_code
            == 202
        )
        assert OrmQ.objects.count() >= queued_before + 5  # the work waits for the workers
    stuck.refresh_from_db()
    assert stuck.status == "pending"  # queued by the retry button, not run inside the request
