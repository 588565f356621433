"""RevOps edits the plan map in the admin: validated against the catalog, CSV with a preview, history,
and only the right people can do it."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from catalog.models import MappedRatePlan, PlanMapping, ProductRatePlan
from sandbox.demo import zuora_id
from sync.groups import READ_ONLY, REVOPS
from sync.models import SyncRecord

GROWTH, STARTER, RETIRED, SCALE = (zuora_id(n) for n in ("Growth", "Starter", "Growth (2024)", "Scale (retiring)"))


@pytest.fixture
def mirrored(emulators):
    call_command("sync_catalog", verbosity=0)
    return emulators


def staff(name: str, group: str | None) -> User:
    user = User.objects.create_user(name, password="pw", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def revops(client, mirrored):
    client.force_login(staff("rita", REVOPS))
    return client


def mapping_form(value: str, plan_id: str, currency: str = "USD") -> dict:
    plan = ProductRatePlan.objects.get(zuora_id=plan_id)
    return {
        "kind": "plan",
        "kommo_value": value,
        "currency": currency,
        "label": value,
        "term_months": 12,
        "renewal_term_months": 12,
        "auto_renew": "on",
        "active": "on",
        "payment_term": "",
        "tier_policy": "lower_upper",
        "mapped_plans-TOTAL_FORMS": 1,
        "mapped_plans-INITIAL_FORMS": 0,
        "mapped_plans-MIN_NUM_FORMS": 0,
        "mapped_plans-MAX_NUM_FORMS": 1000,
        "mapped_plans-0-product_rate_plan": plan.id,
        "mapped_plans-0-quantity": "",
        "mapped_plans-0-price": "",
        "mapped_plans-0-tiers": "",
    }


def test_a_sellable_plan_is_saved(revops):
    answer = revops.post("/admin/catalog/planmapping/add/", mapping_form("Growth", GROWTH), follow=True)
    assert answer.status_code == 200 and PlanMapping.objects.get().mapped_plans.get().product_rate_plan.name == "Growth"


@pytest.mark.parametrize(
    "plan_id, currency, words",
    [
        (RETIRED, "USD", "retired on 2026-06-30"),
        (SCALE, "EUR", "no price in EUR"),
    ],
)
def test_a_plan_zuora_would_refuse_cannot_be_mapped(revops, plan_id, currency, words):
    answer = revops.post("/admin/catalog/planmapping/add/", mapping_form("X", plan_id, currency))
    assert answer.status_code == 200 and words in answer.content.decode()
    assert not PlanMapping.objects.exists()


def test_a_plan_retiring_soon_is_saved_with_a_warning(revops):
    answer = revops.post("/admin/catalog/planmapping/add/", mapping_form("Scale", SCALE), follow=True)
    assert "retires on" in answer.content.decode() and PlanMapping.objects.count() == 1


def test_every_change_is_kept_with_who_and_when(revops):
    revops.post("/admin/catalog/planmapping/add/", mapping_form("Growth", GROWTH))
    mapping = PlanMapping.objects.get()
    form = mapping_form("Growth", GROWTH)
    item = mapping.mapped_plans.get()
    form.update(
        {
            "label": "Growth (annual)",
            "mapped_plans-INITIAL_FORMS": 1,
            "mapped_plans-0-id": item.id,
            "mapped_plans-0-mapping": mapping.id,
        }
    )
    revops.post(f"/admin/catalog/planmapping/{mapping.id}/change/", form)
    history = list(mapping.history.order_by("history_date"))
    assert [h.label for h in history] == ["Growth", "Growth (annual)"]
    assert {h.history_user.username for h in history} == {"rita"}
    page = revops.get(f"/admin/catalog/planmapping/{mapping.id}/history/").content.decode()
    assert "Growth (annual)" in page and "rita" in page


def test_csv_import_previews_then_imports_and_export_round_trips(revops):
    body = (
        f"kommo_value,product_rate_plan_id,currency,label,quantity\nGrowth,{GROWTH},USD,Growth,5\n"
        f"Starter,{STARTER},EUR,Starter,\n"
    )
    preview = revops.post(
        "/admin/catalog/planmapping/import/", {"file": SimpleUploadedFile("map.csv", body.encode(), "text/csv")}
    )
    page = preview.content.decode()
    assert "Preview: 2 to create, 0 to update" in page and not PlanMapping.objects.exists()
    revops.post("/admin/catalog/planmapping/import/", {"confirm": "1"})
    assert PlanMapping.objects.count() == 2
    exported = revops.get("/admin/catalog/planmapping/export/")
    rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert {(r["kommo_value"], r["currency"], r["quantity"]) for r in rows} == {
        ("Growth", "USD", "5"),
        ("Starter", "EUR", ""),
    }
    # Export → import is a no-op update.
    again = revops.post(
        "/admin/catalog/planmapping/import/", {"file": SimpleUploadedFile("map.csv", exported.content, "text/csv")}
    )
    assert "Preview: 0 to create, 2 to update" in again.content.decode()


def test_a_bad_csv_in_the_admin_names_each_line_and_imports_nothing(revops):
    body = f"kommo_value,product_rate_plan_id\nGrowth,{GROWTH}\nOld,{RETIRED}\nNope,nope\n"
    page = revops.post(
        "/admin/catalog/planmapping/import/", {"file": SimpleUploadedFile("map.csv", body.encode(), "text/csv")}
    ).content.decode()
    assert "line 3:" in page and "line 4:" in page and "Nothing can be imported" in page
    revops.post("/admin/catalog/planmapping/import/", {"confirm": "1"})
    assert not PlanMapping.objects.exists()


def test_read_only_revops_sees_but_cannot_change(client, mirrored):
    client.force_login(staff("olga", READ_ONLY))
    assert client.get("/admin/catalog/planmapping/").status_code == 200
    assert client.get("/admin/catalog/productrateplan/").status_code == 200
    assert client.get("/admin/sync/syncrecord/").status_code == 200
    assert client.post("/admin/catalog/planmapping/add/", mapping_form("Growth", GROWTH)).status_code == 403
    assert client.get("/admin/catalog/planmapping/import/").status_code == 403
    record = SyncRecord.objects.create(kind="deal_won", key="deal_won:9", status="failed")
    client.post("/admin/sync/syncrecord/", {"action": "retry", "_selected_action": [record.id]})
    assert SyncRecord.objects.get().status == "failed"


def test_plain_staff_see_nothing(client, mirrored):
    client.force_login(staff("sam", None))
    assert client.get("/admin/catalog/planmapping/").status_code == 403
    assert client.get("/admin/sync/syncrecord/").status_code == 403


def test_catalog_pages_show_badges_and_search(revops):
    page = revops.get("/admin/catalog/productrateplan/", {"q": "growth"}).content.decode()
    assert "Growth (2024)" in page and "retired" in page and "sellable" in page and "Starter" not in page
    product = revops.get("/admin/catalog/product/").content.decode()
    assert "Last catalog sync" in product and "Sync now" in product


def test_sync_now_button_runs_the_catalog_sync(revops, mirrored):
    from catalog.models import CatalogSyncRun

    before = CatalogSyncRun.objects.count()
    revops.post("/admin/catalog/product/sync-now/")
    assert CatalogSyncRun.objects.count() == before + 1 and CatalogSyncRun.objects.first().ok


def test_legacy_report_counts_subscriptions_on_retiring_plans(revops):
    retired = ProductRatePlan.objects.get(zuora_id=RETIRED)
    for n in range(3):
        SyncRecord.objects.create(kind="deal_won", key=f"deal_won:{n}", status="succeeded").rate_plans.add(retired)
    mapping = PlanMapping.objects.create(kommo_value="Old", currency="USD")
    MappedRatePlan.objects.create(mapping=mapping, product_rate_plan=retired)
    page = revops.get("/admin/catalog/productrateplan/legacy/").content.decode()
    assert "Growth (2024)" in page and ">3</a>" in page and "Scale (retiring)" in page
    assert "Starter" not in page


def test_a_change_timing_on_a_one_time_product_is_refused_with_the_reason(revops):
    form = {**mapping_form("Onboarding", zuora_id("Onboarding")), "upgrade_timing": "immediately"}
    answer = revops.post("/admin/catalog/planmapping/add/", form)
    assert answer.status_code == 200 and "sells one-time products only" in answer.content.decode()
    assert not PlanMapping.objects.exists()
    form = {**mapping_form("Growth", GROWTH), "downgrade_timing": "end_of_billing_period"}
    revops.post("/admin/catalog/planmapping/add/", form)
    assert PlanMapping.objects.get().downgrade_timing == "end_of_billing_period"


TIERED = zuora_id("API calls (tiered)")
NEGOTIATED = "0-185:0.10;185-999:0.08;999+:0.05"


def tiered_form(tiers: str, policy: str = "lower_upper") -> dict:
    return {**mapping_form("API Pro", TIERED), "mapped_plans-0-tiers": tiers, "tier_policy": policy}


def test_preview_shows_the_negotiated_tiers_beside_zuoras_and_saves_nothing(revops):
    answer = revops.post("/admin/catalog/planmapping/add/", {**tiered_form(NEGOTIATED), "_preview_tiers": "1"})
    page = answer.content.decode()
    assert answer.status_code == 200 and "Preview only — nothing was saved" in page
    assert "as negotiated 0-185: 0.10; 185-999: 0.08; 999+: 0.05 → in Zuora 0–184: 0.10; 185–998: 0.08; 999+: 0.05" in (
        page
    )
    assert not PlanMapping.objects.exists()
    answer = revops.post(
        "/admin/catalog/planmapping/add/", {**tiered_form(NEGOTIATED, "raise_lower"), "_preview_tiers": "1"}
    )
    assert "in Zuora 0–185: 0.10; 186–999: 0.08; 1000+: 0.05" in answer.content.decode()


def test_saved_tiers_are_kept_as_negotiated_and_shown_in_zuoras_form(revops):
    answer = revops.post("/admin/catalog/planmapping/add/", tiered_form(NEGOTIATED), follow=True)
    assert answer.status_code == 200 and "Tiers saved:" in answer.content.decode()
    mapped = MappedRatePlan.objects.get()
    assert mapped.tiers == NEGOTIATED and mapped.mapping.tier_policy == "lower_upper"
    page = revops.get(f"/admin/catalog/planmapping/{mapped.mapping_id}/change/").content.decode()
    assert "0–184: 0.10; 185–998: 0.08; 999+: 0.05" in page


@pytest.mark.parametrize(
    "plan_id, tiers, words",
    [
        (TIERED, "0-185:0.10;190+:0.08", "a gap after tier 1 — units from 185 up to 190 have no price"),
        (TIERED, "0-185:0.10;100-999:0.08;999+:0.05", "it overlaps tier 1 (0-185)"),
        (TIERED, "0-18.5:0.10;18.5+:0.08", "the bound 18.5 is finer than the unit &#x27;API call&#x27; allows"),
        (TIERED, "0-185:-1;185+:0.08", "the price -1 is negative"),
        (TIERED, "lots", "no price"),
        (STARTER, NEGOTIATED, "must have exactly one Tiered or Volume charge for tiers (it has none)"),
    ],
)
def test_tiers_that_cannot_be_billed_are_refused_on_save_with_the_exact_problem(revops, plan_id, tiers, words):
    form = {**mapping_form("API Pro", plan_id), "mapped_plans-0-tiers": tiers}
    answer = revops.post("/admin/catalog/planmapping/add/", form)
    assert answer.status_code == 200 and words in answer.content.decode()
    assert not PlanMapping.objects.exists()


def test_the_units_of_measure_are_mirrored_read_only(revops):
    page = revops.get("/admin/catalog/unitofmeasure/").content.decode()
    assert "API call" in page and "GB" in page
    assert revops.get("/admin/catalog/unitofmeasure/add/").status_code == 403


def test_the_rate_plan_picker_says_which_plans_cannot_be_sold(revops):
    """The mapping's picker offers every mirrored plan (a mapping may be prepared ahead), naming those that
    are retired or not yet effective — and the chosen plan keeps its label on the mapping's page."""
    query = "app_label=catalog&model_name=mappedrateplan&field_name=product_rate_plan&term=Growth"
    answer = revops.get(f"/admin/autocomplete/?{query}")
    assert answer.status_code == 200
    texts = {row["text"] for row in answer.json()["results"]}
    assert "zkbridge Platform / Growth (2024) — retired" in texts and "zkbridge Platform / Growth" in texts
    retired = ProductRatePlan.objects.get(zuora_id=RETIRED)
    mapping = PlanMapping.objects.create(kommo_value="Old growth", label="Old growth")
    MappedRatePlan.objects.create(mapping=mapping, product_rate_plan=retired)
    page = revops.get(f"/admin/catalog/planmapping/{mapping.pk}/change/").content.decode()
    assert "Growth (2024) — retired</option>" in page
    assert revops.get("/admin/autocomplete/?app_label=catalog&model_name=nope&field_name=x").status_code == 403


def test_the_admin_and_the_csv_import_judge_a_mapping_by_the_same_rule(revops, tmp_path):
    """A mapping already carrying a plan retired since is edited in the admin as the CSV re-imports it: kept,
    with a warning; a change timing on a mapping that sells one-time products only is refused by both."""
    from catalog.planmap import import_csv

    mapping = PlanMapping.objects.create(kind="plan", kommo_value="Old deal", currency="USD", label="Old deal")
    MappedRatePlan.objects.create(mapping=mapping, product_rate_plan=ProductRatePlan.objects.get(zuora_id=RETIRED))
    retired = ProductRatePlan.objects.get(zuora_id=RETIRED)
    form = {
        **mapping_form("Old deal", RETIRED),
        "label": "Old deal, relabelled",
        "mapped_plans-INITIAL_FORMS": 1,
        "mapped_plans-0-id": mapping.mapped_plans.get().pk,
        "mapped_plans-0-mapping": mapping.pk,
        "mapped_plans-0-product_rate_plan": retired.pk,
    }
    answer = revops.post(f"/admin/catalog/planmapping/{mapping.pk}/change/", form, follow=True)
    page = answer.content.decode()
    assert "kept (the mapping already has it)" in page
    mapping.refresh_from_db()
    assert mapping.label == "Old deal, relabelled"
    imported = import_csv(f"kommo_value,product_rate_plan_id\nOld deal,{RETIRED}\n".encode(), "USD")
    assert imported.errors == [] and any("kept (the mapping already has it)" in w for w in imported.warnings)

    onboarding = PlanMapping.objects.create(
        kind="plan", kommo_value="Onboarding", currency="USD", label="Onboarding", upgrade_timing="immediately"
    )
    MappedRatePlan.objects.create(
        mapping=onboarding, product_rate_plan=ProductRatePlan.objects.get(zuora_id=zuora_id("Onboarding"))
    )
    refused = import_csv(f"kommo_value,product_rate_plan_id\nOnboarding,{zuora_id('Onboarding')}\n".encode(), "USD")
    assert refused.errors and "sells one-time products only" in refused.errors[0]
