"""Kommo's plan field kept in step with what Zuora sells (issue 29, part 1): a plan appears on its effective date,
a retired one is marked and never removed (no deal loses its value), an option the plan map does not know is kept
and reported, a dry run changes nothing, a field Kommo refuses to change is reported and nothing else changes.

Over real HTTP against the Kommo emulator, which keeps the field's options as Kommo documents them (removing an
option clears it on every lead carrying it; renaming one renames it on them).
"""

from __future__ import annotations

import datetime as dt

import pytest
import requests
from django.utils.module_loading import import_string
from django_q.models import OrmQ

from sandbox.models import Fault, KField, KLead
from sync.models import SyncRecord
from sync.offering.models import PlanFieldRun
from sync.offering.run import run
from tests.conftest import map_plan
from tests.guards import outbound_guard

PLAN_FIELD = 881234
INITECH = 24312348  # sells "Growth (2024)", retired on 2026-06-30


@pytest.fixture(autouse=True)
def _plan_field_only(settings):
    """The plan field's tests look at the plan field alone (the `products` fixture turns the products list on)."""
    settings.KOMMO_PRODUCTS_CATALOG_ID = None


def options() -> list[str]:
    return [e["value"] for e in KField.objects.get(id=PLAN_FIELD).enums]


def plan_value(lead_id: int) -> tuple[str, int] | None:
    for field in KLead.objects.get(id=lead_id).custom_fields_values or []:
        if field["field_id"] == PLAN_FIELD:
            value = field["values"][0]
            return value["value"], value.get("enum_id")
    return None


def test_a_retired_plan_is_marked_never_removed_and_its_deals_keep_their_value(catalog):
    map_plan("Growth (2024)", "Growth (2024)")
    before = plan_value(INITECH)
    result = run()
    assert result.ok, result.error
    assert "Growth (2024) (retired)" in options() and "Growth (2024)" not in options()
    assert [(c["action"], c["value"]) for c in result.changes] == [("retire", "Growth (2024) (retired)")]
    # The deal keeps its option (same id), now shown with the mark.
    assert plan_value(INITECH) == ("Growth (2024) (retired)", before[1])
    # The plan map reads the mark off: a deal won on it is refused for the right reason, not as unmapped.
    catalog.win(INITECH)
    record = SyncRecord.objects.get(key=f"deal_won:{INITECH}")
    assert record.status == "needs_attention" and "retired on 2026-06-30" in record.reason, record.reason
    again = run()
    assert again.ok and again.changes == []  # in step: nothing more to do


def test_a_new_plan_appears_on_its_effective_date(catalog, settings):
    map_plan("Enterprise", "Enterprise (2027)")
    early = run(today=dt.date(2026, 12, 31))
    assert early.ok and "Enterprise" not in options()
    [row] = [r for r in early.rows if r["value"] == "Enterprise"]
    assert row["state"] == "not yet effective" and row["kommo"] == "not offered"
    assert "sellable from 2027-01-01" in row["zuora"][0]["verdict"]
    on_the_day = run(today=dt.date(2027, 1, 1))
    assert [(c["action"], c["value"]) for c in on_the_day.changes] == [("add", "Enterprise")]
    assert options()[-1] == "Enterprise"
    # A salesperson can now pick it (Kommo refuses a value that is not one of the options).
    headers = {"Authorization": f"Bearer {settings.SANDBOX_KOMMO_TOKEN}"}
    body = {"custom_fields_values": [{"field_id": PLAN_FIELD, "values": [{"value": "Enterprise"}]}]}
    assert requests.patch(f"{catalog.kommo}/api/v4/leads/{INITECH}", json=body, headers=headers, timeout=10).ok
    body["custom_fields_values"][0]["values"][0]["value"] = "Diamond"
    refused = requests.patch(f"{catalog.kommo}/api/v4/leads/{INITECH}", json=body, headers=headers, timeout=10)
    assert refused.status_code == 400


def test_a_marked_plan_sellable_again_is_offered_again(catalog, settings):
    field = KField.objects.get(id=PLAN_FIELD)
    field.enums = [{**e, "value": f"{e['value']} (retired)"} if e["value"] == "Starter" else e for e in field.enums]
    field.save()
    result = run()
    assert [(c["action"], c["value"]) for c in result.changes] == [("restore", "Starter")]
    assert "Starter" in options() and "Starter (retired)" not in options()


def test_options_the_plan_map_does_not_know_are_kept_and_reported(catalog):
    result = run()
    assert result.ok
    assert {"Platinum", "Scale"} <= set(options())  # never removed: deals may carry them
    unknown = {r["value"]: r for r in result.rows if r["state"] == "not in the plan map"}
    assert {"Platinum", "Scale"} <= set(unknown)
    assert unknown["Platinum"]["change"].startswith("kept")
    sold = {r["value"]: r for r in result.rows if r["state"] == "sellable"}
    assert {(w["currency"], w["verdict"]) for w in sold["Starter"]["zuora"]} == {
        ("EUR", "sellable"),
        ("USD", "sellable"),
    }


def test_a_dry_run_compares_and_changes_nothing(catalog):
    map_plan("Growth (2024)", "Growth (2024)")
    before = options()
    result = run(dry_run=True)
    assert result.ok and result.dry_run and [c["action"] for c in result.changes] == ["retire"]
    assert options() == before
    assert catalog.calls("kommo", "PATCH", "/api/v4/leads/custom_fields") == 0


def test_a_plan_field_without_options_is_reported_and_nothing_changes(catalog, settings):
    settings.KOMMO_PLAN_FIELD_ID = 881250  # a text field
    result = run()
    assert not result.ok and "is a text field, which has no options" in result.error
    assert catalog.calls("kommo", "PATCH", "/api/v4/leads/custom_fields") == 0


def test_kommo_refusing_the_change_is_reported_and_nothing_else_changes(catalog):
    map_plan("Growth (2024)", "Growth (2024)")
    Fault.objects.create(
        service="kommo",
        kind="refuse_entity",
        path_prefix="/api/v4/leads/custom_fields",
        reason_code=PLAN_FIELD,
        reason_message="Access denied: only administrators can change fields",
    )
    before = options()
    result = run()
    assert not result.ok and "Kommo refused to change the plan field's options" in result.error
    assert "only administrators" in result.error
    assert options() == before and plan_value(INITECH)[0] == "Growth (2024)"


def test_removing_an_option_in_kommo_clears_it_on_the_leads_that_carry_it(catalog, settings):
    """Why zkbridge never removes one: the emulator does what Kommo documents."""
    field = KField.objects.get(id=PLAN_FIELD)
    kept = [e for e in field.enums if e["value"] != "Growth (2024)"]
    answer = requests.patch(
        f"{catalog.kommo}/api/v4/leads/custom_fields/{PLAN_FIELD}",
        json={"enums": kept},
        headers={"Authorization": f"Bearer {settings.SANDBOX_KOMMO_TOKEN}"},
        timeout=10,
    )
    assert answer.ok, answer.text
    assert plan_value(INITECH) is None


def test_the_catalog_sync_brings_the_plan_field_in_step(catalog):
    from sync.catalog_sync import scheduled_sync

    map_plan("Growth (2024)", "Growth (2024)")
    assert scheduled_sync() == "ok"
    assert "Growth (2024) (retired)" in options()
    assert PlanFieldRun.objects.filter(requested_by="after the catalog sync", ok=True).exists()


def run_queued(func: str) -> str:
    """What a worker does with the queued task."""
    [task] = [t for t in OrmQ.objects.all() if t.task["func"] == func]
    task.delete()
    return import_string(func)(*task.task["args"])


@pytest.mark.parametrize("dry_run", ["1", ""])
def test_the_admin_runs_it_through_a_worker_and_shows_the_comparison(
    catalog, admin_client, settings, monkeypatch, dry_run
):
    map_plan("Growth (2024)", "Growth (2024)")
    with outbound_guard(settings, monkeypatch):  # the admin's request queues the run, never makes it
        answer = admin_client.post("/admin/sync/planfieldrun/run/", {"dry_run": dry_run})
    assert answer.status_code == 302 and not PlanFieldRun.objects.exists()
    run_queued("sync.offering.run.scheduled")
    result = PlanFieldRun.objects.get()
    assert result.dry_run == bool(dry_run)
    assert ("Growth (2024) (retired)" in options()) != bool(dry_run)
    page = admin_client.get(f"/admin/sync/planfieldrun/{result.id}/change/").content.decode()
    assert "What Kommo offers next to what Zuora sells" in page
    assert "Growth (2024)" in page and "retired on 2026-06-30" in page
    listing = admin_client.get("/admin/sync/planfieldrun/").content.decode()
    assert "Compare now (dry run)" in listing and "retire &#x27;Growth (2024) (retired)&#x27;" in listing


def test_the_admin_run_refuses_a_get_and_a_user_without_the_right(
    catalog, client, django_user_model, settings, monkeypatch
):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_planfieldrun"))
    client.force_login(user)
    assert client.get("/admin/sync/planfieldrun/run/").status_code == 302
    with outbound_guard(settings, monkeypatch):
        assert client.post("/admin/sync/planfieldrun/run/", {"dry_run": "1"}).status_code == 403
    assert not PlanFieldRun.objects.exists() and not OrmQ.objects.exists()


def test_the_command_lists_the_changes_and_refuses_a_field_without_options(catalog, settings):
    from io import StringIO

    from django.core.management import CommandError, call_command

    map_plan("Growth (2024)", "Growth (2024)")
    out = StringIO()
    call_command("kommo_plan_field", "--dry-run", stdout=out)
    text = out.getvalue()
    assert "Growth (2024): Kommo offers 'Growth (2024)'; retired" in text and "would make 1 change(s)" in text
    assert "Growth (2024)" in options()
    settings.KOMMO_PLAN_FIELD_ID = 881250
    with pytest.raises(CommandError, match="nothing was changed: the plan field 881250"):
        call_command("kommo_plan_field", stdout=StringIO())


def test_connections_lists_the_fields_and_creates_the_missing_ones(catalog, admin_client, settings, monkeypatch):
    """Issue 29, part 4: the fields zkbridge needs, what Kommo has, and "Create missing fields"."""
    from sync import kommo_fields
    from sync.ops.connections import check_connections

    settings.KOMMO_CLOSE_DATE_FIELD_ID = None
    settings.KOMMO_PREVIEW_FIELD_IDS = {"mrr": 881290}
    settings.KOMMO_TIERS_FIELD_ID = 881250  # a text field: right type
    settings.KOMMO_CURRENCY_FIELD_ID = 123  # no such field
    settings.KOMMO_COMPANY_HEALTH_FIELD_IDS = {"status": 882001}
    rows = {r["setting"]: r for r in kommo_fields.report(KommoClientForTest())}
    assert rows["KOMMO_PLAN_FIELD_ID"]["state"] == "ok" and rows["KOMMO_PLAN_FIELD_ID"]["type"] == "select"
    assert rows["KOMMO_CURRENCY_FIELD_ID"]["state"] == "missing"
    assert rows["KOMMO_PREVIEW_FIELD_IDS:mrr"]["state"] == "ok"
    # Not configured, but Kommo has a field of that name: the variable to set.
    assert (
        rows["KOMMO_CLOSE_DATE_FIELD_ID"]["todo"]
        == "Kommo has 'Expected close' (881242): set KOMMO_CLOSE_DATE_FIELD_ID=881242"
    )
    assert rows["KOMMO_PREVIEW_FIELD_IDS:tcv"]["todo"].endswith("add tcv=881291 to KOMMO_PREVIEW_FIELD_IDS")
    assert rows["KOMMO_COMPANY_HEALTH_FIELD_IDS:status"]["state"] == "ok"
    assert rows["KOMMO_COMPANY_HEALTH_FIELD_IDS:mrr"]["todo"].endswith(
        "add mrr=882002 to KOMMO_COMPANY_HEALTH_FIELD_IDS"
    )
    KField.objects.filter(id__in=[881242, 881291, 882006]).delete()
    with outbound_guard(settings, monkeypatch):  # the admin's request queues the work
        answer = admin_client.post("/admin/connections/", {"action": "create_fields"})
    assert answer.status_code == 302
    said = run_queued("sync.kommo_fields.create_missing")
    created = {f.name: f for f in KField.objects.filter(id__gte=900000)}
    assert created["Expected close"].type == "date" and created["Quote TCV"].type == "numeric"
    assert (created["Last payment"].entity_type, created["Last payment"].type) == ("companies", "text")
    assert f"set KOMMO_CLOSE_DATE_FIELD_ID={created['Expected close'].id}" in said
    from sync.models import ConnectionCheck

    assert ConnectionCheck.objects.get().finished_at is not None  # and the fields were checked again
    page = admin_client.get("/admin/connections/").content.decode()
    assert "Kommo fields" in page and "Create missing fields" in page
    assert f"set KOMMO_CLOSE_DATE_FIELD_ID={created['Expected close'].id}" in page
    assert check_connections()["kommo"]["field_list"]["ok"]


def test_only_a_superuser_creates_kommo_fields(catalog, client, django_user_model, settings, monkeypatch):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("ops", password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_syncrecord", "change_syncrecord"]))
    client.force_login(user)
    with outbound_guard(settings, monkeypatch):
        assert client.post("/admin/connections/", {"action": "create_fields"}).status_code == 403
    assert not OrmQ.objects.exists()


def KommoClientForTest():  # noqa: N802 - reads as the client it is
    from sync.clients.kommo import KommoClient

    return KommoClient.from_settings()


# --- the products list (KOMMO_PRODUCTS_CATALOG_ID) ------------------------------------------------------------
def element(element_id: int) -> tuple[str, dict[str, str]]:
    from sandbox.models import KCatalogElement

    found = KCatalogElement.objects.get(id=element_id)
    return found.name, {f["field_code"]: f["values"][0]["value"] for f in found.custom_fields_values or []}


@pytest.fixture
def products(catalog, settings):
    settings.KOMMO_PRODUCTS_CATALOG_ID = 12001
    return catalog


def test_the_products_list_gets_each_mapped_products_sku_and_price_and_unknown_ones_are_kept(products):
    from catalog.models import ProductRatePlan

    result = run()
    assert result.ok, result.error
    sku = ProductRatePlan.objects.get(name="Onboarding").product.sku
    assert element(770001) == ("Onboarding package", {"SKU": sku, "PRICE": "2000.00"})
    assert element(770002) == ("Extra seats", {})  # the plan map does not know it: kept, reported
    unknown = [r for r in result.rows if r["value"] == "Extra seats (product 770002)"]
    assert unknown and unknown[0]["state"] == "not in the plan map"
    assert run().changes == []  # in step


def test_a_retired_products_element_is_marked_and_its_leads_keep_it(products):
    import datetime as dt

    from catalog.models import ProductRatePlan

    ProductRatePlan.objects.filter(name="Onboarding").update(effective_end=dt.date(2026, 1, 31))
    result = run(dry_run=True)
    assert element(770001)[0] == "Onboarding package"  # a dry run changes nothing
    assert any(c["action"] == "product" for c in result.changes)
    run()
    assert element(770001)[0] == "Onboarding package (retired)"
    lead = KLead.objects.get(id=24312345)
    assert [e["id"] for e in lead.catalog_elements] == [770001]


def test_kommo_refusing_the_products_list_leaves_the_plan_field_done(products):
    map_plan("Growth (2024)", "Growth (2024)")
    Fault.objects.create(
        service="kommo",
        kind="refuse_entity",
        path_prefix="/api/v4/catalogs/12001/elements",
        reason_code=770001,
        reason_message="You cannot edit this list",
    )
    result = run()
    assert not result.ok and "Kommo refused to change the products list" in result.error
    assert "You cannot edit this list" in result.error
    assert "Growth (2024) (retired)" in options()  # the plan field's part stands
    assert element(770001) == ("Onboarding package", {})


def test_a_products_list_without_a_plan_field_is_kept_after_the_catalog_sync(products, settings):
    from sync.catalog_sync import scheduled_sync

    settings.KOMMO_PLAN_FIELD_ID = None
    assert scheduled_sync() == "ok"
    result = PlanFieldRun.objects.get(requested_by="after the catalog sync")
    assert result.ok and [c["action"] for c in result.changes] == ["product"]
    assert element(770001)[1]["PRICE"] == "2000.00"
