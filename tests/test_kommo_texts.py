"""Everything zkbridge writes on a Kommo deal speaks with one voice (sync/kommo_texts.py). The referee judges
every note, task and task result the suite makes zkbridge send against the same rule (tests/referee,
"house style"); here, the rule itself, and a walk over the code that no task text bypasses it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sync import kommo_texts
from tests.referee import house_style

ROOT = Path(__file__).resolve().parents[1]


def test_notes_tasks_and_results_have_one_format():
    assert kommo_texts.note("subscription A-S1 is active (Starter)") == "Zuora: subscription A-S1 is active (Starter)."
    assert kommo_texts.task("the deal has no billing e-mail", "add one to the main contact") == (
        "Zuora: the deal has no billing e-mail. Add one to the main contact."
    )
    done = "Zuora: done: subscription A-S1 on account A1."
    assert kommo_texts.result("done: subscription A-S1 on account A1.") == done
    assert kommo_texts.amend("Zuora: done.", "the task was already deleted in Kommo") == (
        "Zuora: done; the task was already deleted in Kommo."
    )
    assert len(kommo_texts.note("x" * 5000)) == kommo_texts.LIMIT


@pytest.mark.parametrize(
    "text, why",
    [
        ("Contact the client — payment failed.", "does not start with 'Zuora:'"),
        ("Zuora: subscription A-S1 active", "does not end with a full stop"),
        ("Zuora: account None is billed.", "None"),
        ("Zuora: payment of {amount} received.", "template field"),
        ("Zuora: the order failed. RevOps will fix it and retry.", "promise"),
        ("Zuora: no mapping. RevOps fixes the plan map, or choose another plan.", "third person"),
        ("Zuora: superseded by cancellation:24312346:5.", "sync record key"),
    ],
)
def test_the_house_style_names_what_a_text_breaks(text, why):
    assert any(why in problem for problem in kommo_texts.problems(text)), kommo_texts.problems(text)


def test_the_referee_applies_the_house_style_to_notes_tasks_and_results():
    bad_note = '[{"entity_id": 1, "note_type": "common", "params": {"text": "billed: A-S1 active"}}]'
    assert house_style("add_notes", bad_note)
    assert house_style("add_tasks", '[{"text": "Fix it.", "complete_till": 1}]')
    assert house_style("update_task", '{"is_completed": true, "result": {"text": "billed: A-S1"}}')
    good = '[{"entity_id": 1, "note_type": "common", "params": {"text": "Zuora: subscription A-S1 is active."}}]'
    assert house_style("add_notes", good) == []


def task_arguments() -> list[tuple[str, ast.expr]]:
    found = []
    for path in (ROOT / "sync").rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "NeedsAttention":
                found += [(f"{path.relative_to(ROOT)}:{k.lineno}", k.value) for k in node.keywords if k.arg == "task"]
    return found


def test_every_task_zkbridge_opens_is_written_by_the_house_helper():
    """Each `NeedsAttention(task=…)` in the code — the tasks a salesperson gets — is `kommo_texts.task(…)`."""
    tasks = task_arguments()
    assert len(tasks) >= 20  # the walk found the flows' tasks
    loose = [
        where
        for where, value in tasks
        if not (isinstance(value, ast.Call) and ast.unparse(value.func) == "kommo_texts.task")
    ]
    assert loose == []


def test_the_default_billing_event_texts_follow_the_house_style():
    from sync.billing.rules import DEFAULT_RULES

    sample = {"amount": "$10.00", "currency": "USD", "account": "A1", "subscription": "A-S1", "date": "2026-12-05"}
    for rule in DEFAULT_RULES:
        for field in ("note_template", "task_template"):
            if rule.get(field):
                text = rule[field].format(event=rule["event_type"], **sample)
                assert kommo_texts.problems(text) == [], (rule["event_type"], field, text)
