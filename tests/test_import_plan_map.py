"""import_plan_map: all or nothing, every bad line named, exit non-zero."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from catalog.models import MappedRatePlan, PlanMapping
from sandbox.demo import zuora_id

GROWTH, STARTER, RETIRED, SCALE = (zuora_id(n) for n in ("Growth", "Starter", "Growth (2024)", "Scale (retiring)"))


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
    assert PlanMapping.objects.get(normalized_value="growth").rate_plans.get().product_rate_plan.zuora_id == STARTER


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
