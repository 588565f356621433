"""import_plan_map: all or nothing, every bad line named, exit non-zero."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from catalog.models import MappedRatePlan, PlanMapping, ProductRatePlan
from sandbox.demo import zuora_id

GROWTH, STARTER, RETIRED, SCALE = (zuora_id(n) for n in ("Growth", "Starter", "Growth (2024)", "Scale (retiring)"))
TIERED = zuora_id("API calls (tiered)")


@pytest.fixture
def mirrored(emulators):
    call_command("sync_catalog", verbosity=0)
    return emulators


def run(tmp_path, text: str | bytes, capsys) -> tuple[str, str]:
    path = tmp_path / "map.csv"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    call_command("import_plan_map", str(path))
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_a_good_file_upserts(mirrored, tmp_path, capsys):
    out, _ = run(
        tmp_path,
        f"kommo_value,product_rate_plan_id,currency,label\nGrowth,{GROWTH},USD,Growth\n starter ,{STARTER},,Starter\n",
        capsys,
    )
    assert "2 mapping(s) created" in out
    out, _ = run(tmp_path, f"kommo_value,product_rate_plan_id\nGROWTH,{STARTER}\n", capsys)
    assert "0 mapping(s) created, 1 updated" in out
    assert PlanMapping.objects.get(normalized_value="growth").mapped_plans.get().product_rate_plan.zuora_id == STARTER


def test_negotiated_tiers_import_export_and_clear(mirrored, tmp_path, capsys):
    from catalog.planmap import export_csv

    run(
        tmp_path,
        f"kommo_value,product_rate_plan_id,tier_policy,tiers\nAPI Pro,{TIERED},raise_lower,0-185:0.10;185+:0.08\n",
        capsys,
    )
    mapped = MappedRatePlan.objects.get()
    assert mapped.tiers == "0-185:0.10;185+:0.08" and mapped.mapping.tier_policy == "raise_lower"
    assert "raise_lower,0-185:0.10;185+:0.08" in export_csv()  # exported as imported: edit and import back
    run(tmp_path, f"kommo_value,product_rate_plan_id,label\nAPI Pro,{TIERED},Pro\n", capsys)
    assert MappedRatePlan.objects.get().tiers == "0-185:0.10;185+:0.08"  # an empty cell keeps them
    run(tmp_path, f"kommo_value,product_rate_plan_id,tiers\nAPI Pro,{TIERED},none\n", capsys)
    assert MappedRatePlan.objects.get().tiers == ""


def test_a_plan_retiring_soon_imports_with_a_warning(mirrored, tmp_path, capsys):
    _, err = run(tmp_path, f"kommo_value,product_rate_plan_id\nScale,{SCALE}\n", capsys)
    assert "warning" in err and "retires on" in err and PlanMapping.objects.count() == 1


@pytest.mark.parametrize(
    "body, words",
    [
        (
            f"kommo_value,product_rate_plan_id\nGrowth,{GROWTH}\nPlatinum,nope\n",
            ["line 3: unknown product_rate_plan_id"],
        ),
        (f"kommo_value,product_rate_plan_id\nOld,{RETIRED}\n", ["line 2:", "retired on 2026-06-30"]),
        (f"kommo_value,product_rate_plan_id\nGrowth,{GROWTH}\n growth ,{STARTER}\n", ["line 3: duplicate kommo_value"]),
        (f"kommo_value,product_rate_plan_id,currency\nGrowth,{GROWTH},dollars\n", ["line 2: currency"]),
        (f"kommo_value,product_rate_plan_id,currency\nScale,{SCALE},EUR\n", ["line 2:", "no price in EUR"]),
        (f"kommo_value,plan\nGrowth,{GROWTH}\n", ["missing column(s) product_rate_plan_id", "unknown column(s) plan"]),
        (f"kommo_value,product_rate_plan_id,quantity\nGrowth,{GROWTH},lots\n", ["line 2: quantity 'lots'"]),
        (
            f"kommo_value,product_rate_plan_id,tiers\nAPI,{TIERED},0-10:1;20+:2\n",
            ["line 2: tiers: tier 2 (20+): a gap"],
        ),
        (f"kommo_value,product_rate_plan_id,tiers\nGrowth,{GROWTH},0-10:1;10+:2\n", ["line 2: tiers need exactly one"]),
        (f"kommo_value,product_rate_plan_id,tier_policy\nAPI,{TIERED},upward\n", ["line 2: tier_policy 'upward'"]),
        ("kommo_value,product_rate_plan_id\n", ["no mappings"]),
        ("kommo_value,product_rate_plan_id\nGrowth,,\n", ["line 2: more values than columns"]),
    ],
)
def test_any_bad_line_imports_nothing_and_names_each_line(mirrored, tmp_path, capsys, body, words):
    with pytest.raises(CommandError, match="nothing imported"):
        run(tmp_path, body, capsys)
    err = capsys.readouterr().err
    for word in words:
        assert word in err
    assert not PlanMapping.objects.exists() and not MappedRatePlan.objects.exists()


def test_wrong_encoding_and_junk_are_refused(mirrored, tmp_path, capsys):
    with pytest.raises(CommandError):
        run(tmp_path, "kommo_value,product_rate_plan_id\nGröwth,x\n".encode("utf-16"), capsys)
    assert "not UTF-8" in capsys.readouterr().err
    with pytest.raises(CommandError, match="the limit is"):
        run(tmp_path, b"x" * (10 * 1024 * 1024), capsys)
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_plan_map", str(tmp_path / "missing.csv"))
    assert not PlanMapping.objects.exists()


# --- the round trip: an export imports back unchanged ------------------------------------------------
def plan_map_state() -> list[tuple]:
    """Everything the admin edits on every mapping, comparable before and after."""
    return [
        (
            m.kind,
            m.normalized_value,
            m.currency,
            m.label,
            m.term_months,
            m.evergreen,
            m.auto_renew,
            m.renewal_term_months,
            m.payment_term,
            m.active,
            sorted((i.product_rate_plan.zuora_id, i.quantity, i.price) for i in m.mapped_plans.all()),
        )
        for m in PlanMapping.objects.prefetch_related("mapped_plans__product_rate_plan").order_by("id")
    ]


@pytest.fixture
def edited_plan_map(mirrored, tmp_path, capsys):
    """A plan map as RevOps leave it: imported, then edited in the admin, with a plan retired since."""
    run(tmp_path, f"kommo_value,product_rate_plan_id,currency\nGrowth,{GROWTH},USD\nStarter,{STARTER},EUR\n", capsys)
    legacy = PlanMapping.objects.create(kommo_value="Growth (2024)", label="Legacy growth", currency="USD")
    MappedRatePlan.objects.create(mapping=legacy, product_rate_plan=ProductRatePlan.objects.get(zuora_id=RETIRED))
    bundle = PlanMapping.objects.create(
        kommo_value='Bundle, "annual"',
        currency="USD",
        evergreen=True,
        auto_renew=False,
        renewal_term_months=24,
        payment_term="Net 30",
        active=False,
    )
    MappedRatePlan.objects.create(
        mapping=bundle, product_rate_plan=ProductRatePlan.objects.get(zuora_id=GROWTH), quantity=10, price=0
    )
    MappedRatePlan.objects.create(
        mapping=bundle, product_rate_plan=ProductRatePlan.objects.get(zuora_id=STARTER), price="99.5"
    )
    return plan_map_state()


def test_an_export_imports_back_unchanged(edited_plan_map, admin_client, tmp_path, capsys):
    exported = admin_client.get("/admin/catalog/planmapping/export/").content
    header = exported.decode().splitlines()[0].split(",")
    for column in ("evergreen", "renewal_term_months", "payment_term", "active", "auto_renew", "term_months"):
        assert column in header
    out, err = run(tmp_path, exported, capsys)
    assert "0 mapping(s) created, 4 updated" in out
    assert "retired on 2026-06-30; kept (the mapping already has it)" in err  # reported, not refused
    assert plan_map_state() == edited_plan_map
    assert admin_client.get("/admin/catalog/planmapping/export/").content == exported


def test_a_hand_edited_export_still_refuses_new_retired_assignments(edited_plan_map, admin_client, tmp_path, capsys):
    exported = admin_client.get("/admin/catalog/planmapping/export/").content.decode()
    edited = exported + f"Old growth,{RETIRED},USD,,plan,,,12,true,false,12,,true\n"
    with pytest.raises(CommandError, match="nothing imported"):
        run(tmp_path, edited, capsys)
    err = capsys.readouterr().err
    assert "line 6: rate plan" in err and "retired on 2026-06-30" in err and "kept" not in err.split("line 6")[1]
    assert plan_map_state() == edited_plan_map


@pytest.mark.parametrize(
    "line, words",
    [
        (f"X,{GROWTH};{STARTER},USD,,plan,1;2;3,,,,,,,", "quantity has 3 values for 2 rate plan(s)"),
        (f"X,{GROWTH};{GROWTH},USD,,plan,,,,,,,,", "product_rate_plan_id names the same rate plan twice"),
        (f"X,{GROWTH};,USD,,plan,,,,,,,,", "product_rate_plan_id has an empty entry between"),
        (f"X,{GROWTH},USD,,plan,,,,,sometimes,,,", "evergreen 'sometimes' must be true or false"),
        (f"X,{GROWTH},USD,,plan,,,,,,0,,", "renewal_term_months '0' must be a whole number"),
        (f"X,{GROWTH},USD,,plan,,,,,,,,maybe", "active 'maybe' must be true or false"),
        (f"X,{GROWTH},USD,,plan,1e20,,,,,,,", "quantity '1e20' has more than 14 digits"),
        (f"X,{GROWTH},USD,,plan,,,,,,,{'n' * 101},", "payment_term is longer than 100"),
    ],
)
def test_hand_edits_are_checked_line_by_line(edited_plan_map, admin_client, tmp_path, capsys, line, words):
    exported = admin_client.get("/admin/catalog/planmapping/export/").content.decode()
    with pytest.raises(CommandError, match="nothing imported"):
        run(tmp_path, exported + line + "\n", capsys)
    assert f"line 6: {words}" in capsys.readouterr().err
    assert plan_map_state() == edited_plan_map
