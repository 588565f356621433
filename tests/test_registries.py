"""The registries are filled at start-up from explicit module lists: every kind of work has its flow, every
kind of discrepancy its check, every automatic action its fix. A kind added without its code fails here,
not in production on the first record of that kind."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sync import registry
from sync.models import SyncRecord
from sync.reconcile import checks, fixes
from sync.reconcile.models import Discrepancy


def test_every_sync_record_kind_has_its_flow():
    assert set(registry.FLOWS) == set(SyncRecord.Kind.values)
    for kind, function in registry.FLOWS.items():
        assert callable(function), kind


def test_every_discrepancy_kind_has_exactly_one_check():
    assert set(checks.KINDS_CHECKED) == set(Discrepancy.Kind.values)
    assert all(function in checks.CHECKS for function in checks.KINDS_CHECKED.values())


def test_every_action_has_a_fix_or_is_a_persons_work():
    automatic = set(Discrepancy.Action.values) - registry.MANUAL_ACTIONS
    assert set(fixes.FIXES) == automatic


def test_a_kind_without_a_flow_stops_the_start(monkeypatch):
    monkeypatch.setattr(registry, "FLOW_MODULES", tuple(m for m in registry.FLOW_MODULES if "usage" not in m))
    monkeypatch.setattr(registry, "FLOWS", {})
    with pytest.raises(RuntimeError, match="no flow for sync record kind.*usage_batch"):
        registry.load_flows()


def test_a_second_flow_for_a_kind_is_refused(monkeypatch):
    monkeypatch.setattr(registry, "FLOWS", dict(registry.FLOWS))
    with pytest.raises(RuntimeError, match="two flows for deal_won"):
        registry.flow("deal_won")(lambda record: None)


def module_imports(root: Path) -> dict[str, set[str]]:
    """Each module of sync/ and catalog/ (migrations aside) → the modules of those packages it imports at
    its top level (imports inside functions run later and make no circle at import time)."""
    graph: dict[str, set[str]] = {}
    for package in ("sync", "catalog"):
        for path in (root / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            found: set[str] = set()
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.Import):
                    found |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module)
                    found |= {f"{node.module}.{alias.name}" for alias in node.names}
            graph[name] = {m for m in found if m.split(".")[0] in ("sync", "catalog")}
    return {name: {m for m in targets if m in graph and m != name} for name, targets in graph.items()}


def reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


ROOT = Path(__file__).resolve().parent.parent


def test_no_import_circle_in_sync_or_catalog():
    graph = module_imports(ROOT)
    circles = sorted(name for name in graph if name in reach(graph, name))
    assert circles == []


def test_outcomes_and_kommo_helpers_import_nothing_of_the_flows():
    graph = module_imports(ROOT)
    for name in ("sync.outcomes", "sync.kommo_tasks", "sync.registry"):
        flows = sorted(
            m
            for m in reach(graph, name)
            # (a package's tables are not its flows: sync.models registers them all)
            if m.startswith(("sync.flows", "sync.lifecycle", "sync.migration")) and not m.endswith(".models")
        )
        assert flows == [], name


def test_the_circle_finder_sees_a_circle(tmp_path):
    (tmp_path / "sync").mkdir()
    (tmp_path / "catalog").mkdir()
    (tmp_path / "sync" / "a.py").write_text("import sync.b\n")
    (tmp_path / "sync" / "b.py").write_text("def later():\n    import sync.c\n\nfrom sync import a\n")
    (tmp_path / "sync" / "c.py").write_text("import sync.a\n")
    graph = module_imports(tmp_path)
    assert sorted(name for name in graph if name in reach(graph, name)) == ["sync.a", "sync.b"]


def calls_in(package: str) -> dict[str, list[str]]:
    """Module path → the names called in it (`x.name(...)` and `name(...)`), read from the source."""
    called: dict[str, list[str]] = {}
    for path in sorted(Path(package).rglob("*.py")):
        names = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                names.append(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
                if names[-1] == "transition" and node.args and isinstance(node.args[0], ast.Constant):
                    names.append(f"transition:{node.args[0].value}")
        called[str(path)] = names
    return called


def test_one_claim_one_won_flow_one_kommo_write_back():
    """The claim (the state machine's `start`) is made in one function; the won deals' lead fields and notes
    are written by one write-back, which a burst reaches through its batching writer, and a burst runs the
    won flow's own steps."""
    called = calls_in("sync")
    starts = sorted(path for path, names in called.items() if "transition:start" in names)
    assert starts == ["sync/workers/leases.py"]
    burst = called["sync/flows/burst.py"]
    assert "order_steps" in burst and "write_back" in burst
    assert not {"place_order", "fetch_lead", "kommo_told", "tell_kommo", "mark_step"} & set(burst)
    batch_writers = sorted(path for path, names in called.items() if {"update_leads_fields", "add_notes"} & set(names))
    assert batch_writers == ["sync/flows/burst.py"]  # its BatchWrites, the write-back's batching writer


def test_each_package_registers_its_own_models_admin_pages():
    """A model lives in its package's models module and its admin page in the same package's admin module."""
    from django.apps import apps
    from django.contrib import admin

    def defined_by(page: admin.ModelAdmin) -> type:  # (superuser-only pages are wrapped by zkbridge/admin_site.py)
        return next(cls for cls in type(page).__mro__ if cls.__module__.startswith("sync."))

    pages = {model: defined_by(page) for model, page in admin.site._registry.items() if model._meta.app_label == "sync"}
    assert len(pages) >= 12
    elsewhere = {
        model.__name__: page.__module__
        for model, page in pages.items()
        if page.__module__.rsplit(".", 1)[0] != model.__module__.rsplit(".", 1)[0]
    }
    assert elsewhere == {}
    owners = {model.__module__ for model in apps.get_app_config("sync").get_models()}
    assert {"sync.usage.models", "sync.migration.models", "sync.reconcile.models", "sync.billing.models"} <= owners
