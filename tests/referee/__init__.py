"""The referee: what zkbridge sends to the emulators, and what they answer, judged against the vendors' own
definitions — Zuora's official SDK models (zuora.py, sdk.py) and Kommo's documented shapes (kommo.py).

The emulators hand every exchange to `observe` (settings.SANDBOX_OBSERVERS). A request is judged when
zkbridge's HTTP client sent it (its User-Agent), an answer whatever asked. Each verdict is kept for the
test that is running (tests/referee/plugin.py fails that test on any problem, naming the operation, the
field and the model) and counted per operation for the run's summary. In a process of its own (a web
server a test started), verdicts are appended to a file in $ZKBRIDGE_REFEREE_DIR for the test to collect.
"""

from __future__ import annotations

import json
import os
import threading
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

CLIENT_AGENT = "zkbridge/"


@dataclass
class Verdict:
    service: str
    operation: str  # "POST /v1/orders", or the request's own method and path when no operation matched
    known: bool  # an operation the referee has a definition for
    request_checked: bool = False
    answer_checked: bool = False
    problems: list[str] = field(default_factory=list)


_lock = threading.Lock()
verdicts: list[Verdict] = []


def judge(exchange) -> Verdict:
    from tests.referee import kommo, sdk, zuora

    from_zkbridge = exchange.headers.get("User-Agent", "").startswith(CLIENT_AGENT)
    if exchange.service == "zuora":
        operation = sdk.find(exchange.method, exchange.path)
        if operation is None and exchange.method == "GET" and zuora.USAGE_STATUS.pattern.match(exchange.path):
            verdict = Verdict("zuora", zuora.USAGE_STATUS.label + " (our definition)", known=True)
            request, answer = zuora.judge_usage_status(exchange)
            verdict.request_checked = from_zkbridge
            verdict.problems += [f"request: {p}" for p in request] if from_zkbridge else []
            answer_problems = answer
            if answer_problems is not None and not exchange.fault:
                verdict.answer_checked = True
                verdict.problems += [f"answer ({exchange.status}): {p}" for p in answer_problems]
            return verdict
        if operation is None:
            return Verdict("zuora", f"{exchange.method} {exchange.path}", known=False)
        verdict = Verdict("zuora", operation.label, known=True)
        if from_zkbridge:
            verdict.request_checked = True
            verdict.problems += [f"request: {p}" for p in zuora.judge_request(operation, exchange)]
        answer = zuora.judge_answer(operation, exchange)
    elif exchange.service == "kommo":
        found = kommo.find(exchange.method, exchange.path)
        if found is None:
            return Verdict("kommo", f"{exchange.method} {exchange.path}", known=False)
        verdict = Verdict("kommo", found.label, known=True)
        if from_zkbridge:
            verdict.request_checked = True
            verdict.problems += [f"request: {p}" for p in kommo.judge_request(found, exchange)]
            verdict.problems += [f"house style: {p}" for p in house_style(found.name, exchange.body)]
        answer = kommo.judge_answer(found, exchange)
    else:
        return Verdict(exchange.service, f"{exchange.method} {exchange.path}", known=False)
    if answer is not None and not exchange.fault:  # (an injected fault's answer is off-spec on purpose)
        verdict.answer_checked = True
        verdict.problems += [f"answer ({exchange.status}): {p}" for p in answer]
    return verdict


def house_style(operation: str, body: str) -> list[str]:
    """Our own rule beside the vendors': every note, task and task result zkbridge writes on a deal follows
    sync/kommo_texts.py (one voice, one format). Judged on every text the suite makes zkbridge send."""
    from sync import kommo_texts

    if operation not in ("add_notes", "add_tasks", "update_task"):
        return []
    try:
        items = json.loads(body)
    except ValueError:
        return []  # (the vendor's rules already say so)
    texts = []
    for item in items if isinstance(items, list) else [items]:
        if not isinstance(item, dict):
            continue
        texts += [(item.get("params") or {}).get("text"), item.get("text"), (item.get("result") or {}).get("text")]
    return [f"{text!r}: {why}" for text in texts if isinstance(text, str) for why in kommo_texts.problems(text)]


def observe(exchange) -> None:
    """settings.SANDBOX_OBSERVERS: judge one exchange. Never raises into the emulator: a referee that
    cannot judge records that as a problem, so the test fails loudly instead of skipping."""
    if exchange.service not in ("zuora", "kommo") or exchange.path == "/":
        return
    try:
        verdict = judge(exchange)
    except Exception:
        verdict = Verdict(
            exchange.service,
            f"{exchange.method} {exchange.path}",
            known=True,
            problems=[f"the referee could not judge this exchange: {traceback.format_exc(limit=3)}"],
        )
    out = os.environ.get("ZKBRIDGE_REFEREE_DIR")
    if out and os.environ.get("ZKBRIDGE_REFEREE_SUBPROCESS"):
        path = Path(out) / f"exchanges-{os.getpid()}.jsonl"
        with _lock, path.open("a") as handle:
            handle.write(json.dumps(asdict(verdict)) + "\n")
        return
    with _lock:
        verdicts.append(verdict)
