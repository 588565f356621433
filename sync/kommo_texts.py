"""What zkbridge writes on a Kommo deal, in one voice and one format — the salesperson reads these where they
work, mixed with their own notes, so every one must be recognisable and self-explaining:

- a **note** states a fact about the customer's billing: ``Zuora: <fact>.``
  ("Zuora: subscription A-S00000042 on account A00000017 is active (Growth, $300.00 MRR).")
- a **task** says what stops billing and what the salesperson does about it:
  ``Zuora: <problem>. <What to do>.`` ("Zuora: the deal has no billing e-mail. Add one to the main contact or
  to the company.") The action is an imperative to the salesperson; RevOps' part is "ask RevOps to …",
  never a promise that someone "will".
- a task's **result**, when zkbridge completes it, says how it ended: ``Zuora: <outcome>.``

Dates are ISO (2026-12-31), money is formatted with its currency (zkbridge.money), plans by their Zuora
names. `problems` is the house style as a rule: the referee applies it to every text the test suite makes
zkbridge send to Kommo, and the billing-rule form to the templates RevOps write.
"""

from __future__ import annotations

import re

PREFIX = "Zuora: "
LIMIT = 1000  # Kommo's notes and tasks take longer texts; nobody reads more on a deal card


def sentence(text: str) -> str:
    """One or more sentences, trimmed, ending with a full stop."""
    text = " ".join(str(text).split())
    return text if text.endswith((".", "!", "?")) else f"{text}."


def note(fact: str) -> str:
    return (PREFIX + sentence(fact))[:LIMIT]


def task(problem: str, action: str) -> str:
    action = sentence(action)
    return (PREFIX + sentence(problem) + " " + action[:1].upper() + action[1:])[:LIMIT]


def result(outcome: str) -> str:
    return (PREFIX + sentence(outcome))[:LIMIT]


def amend(text: str, more: str) -> str:
    """A text with a clause added to its last sentence ("…; the task was already deleted in Kommo.")."""
    return sentence(text.rstrip(".") + "; " + more)[:LIMIT]


# What a text in the house style never holds: a Python value's repr, a template's unfilled field, a promise
# in someone else's name, machine keys.
FORBIDDEN = (
    (re.compile(r"\bNone\b"), "a missing value printed as None"),
    (re.compile(r"[{}]|\[\]|\{'"), "a template field or a Python value left in the text"),
    (re.compile(r"\b(RevOps|zkbridge|we) will\b", re.I), "a promise in someone's name (say what to do instead)"),
    (re.compile(r"\bRevOps (fixes|decides|adds)\b"), "RevOps in the third person (write 'ask RevOps to …')"),
    (
        re.compile(r"\b(deal_won|plan_change|cancellation|usage_batch|billing_event|quote_preview):\d"),
        "a sync record key",
    ),
    (re.compile(r"  "), "a double space"),
    (re.compile(r"\.\."), "a doubled full stop"),
)


def problems(text: str) -> list[str]:
    """How `text` breaks the house style (empty when it follows it)."""
    found = []
    if not text.startswith(PREFIX):
        found.append(f"does not start with {PREFIX.strip()!r}")
    if not text.rstrip().endswith((".", "!", "?")):
        found.append("does not end with a full stop")
    if len(text) > LIMIT:
        found.append(f"longer than {LIMIT} characters")
    found += [why for pattern, why in FORBIDDEN if pattern.search(text)]
    return found
