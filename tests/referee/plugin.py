"""pytest wiring of the referee (loaded with `-p tests.referee.plugin`, see pytest.ini).

- Every test is judged: the exchanges it caused (in this process, or in a zkbridge it started in processes
  of its own) must all be valid, or the test fails naming the operation, the field and the model.
- At the end, the run says how many requests and answers were checked per operation, and lists every
  operation seen that the referee has no definition for (test-artifacts/referee-summary.json too).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

import tests.referee as referee

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "referee"
SUBPROCESS_DIR = ROOT / ".zkbridge" / "referee"
MAX_SHOWN = 15


def _worker(config) -> str:
    return getattr(config, "workerinput", {}).get("workerid", "main")


def pytest_configure(config) -> None:
    worker = _worker(config)
    if worker == "main":  # the controller (or a run without xdist): a fresh summary
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
    folder = SUBPROCESS_DIR / worker
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    # zkbridge processes a test starts inherit these: they write their verdicts to files here.
    os.environ["ZKBRIDGE_REFEREE_DIR"] = str(folder)
    os.environ["ZKBRIDGE_REFEREE_SUBPROCESS"] = ""
    config._referee_counts = defaultdict(lambda: {"service": "", "known": True, "requests": 0, "answers": 0})
    if worker != "main" or not getattr(config.option, "numprocesses", None):  # a process that runs tests
        from tests.referee import kommo, sdk  # noqa: F401 (kommo's definitions load with it)

        sdk.warm()


class _Files:
    """Where each subprocess verdict file was read up to."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.offsets: dict[Path, int] = {}

    def mark(self) -> None:
        for path in self.folder.glob("exchanges-*.jsonl"):
            self.offsets[path] = path.stat().st_size

    def read_new(self) -> list[referee.Verdict]:
        found = []
        for path in sorted(self.folder.glob("exchanges-*.jsonl")):
            with path.open() as handle:
                handle.seek(self.offsets.get(path, 0))
                data = handle.read()
            complete = data[: data.rfind("\n") + 1]
            self.offsets[path] = self.offsets.get(path, 0) + len(complete.encode())
            found += [referee.Verdict(**json.loads(line)) for line in complete.splitlines() if line.strip()]
        return found


@pytest.fixture(autouse=True)
def _referee(request):
    """Judges what this test made zkbridge send and the emulators answer."""
    files = _Files(Path(os.environ["ZKBRIDGE_REFEREE_DIR"]))
    files.mark()
    with referee._lock:
        start = len(referee.verdicts)
    yield
    with referee._lock:
        mine = referee.verdicts[start:]
        del referee.verdicts[start:]
    mine += files.read_new()
    counts = request.config._referee_counts
    problems = []
    for verdict in mine:
        entry = counts[verdict.operation]
        entry["service"], entry["known"] = verdict.service, verdict.known
        entry["requests"] += verdict.request_checked
        entry["answers"] += verdict.answer_checked
        problems += [f"{verdict.service} {verdict.operation}: {p}" for p in verdict.problems]
    if problems:
        unique = list(dict.fromkeys(problems))
        shown = "\n  ".join(unique[:MAX_SHOWN])
        more = f"\n  … and {len(unique) - MAX_SHOWN} more" if len(unique) > MAX_SHOWN else ""
        pytest.fail(
            f"the referee (Zuora's SDK models, Kommo's documented shapes) refused {len(unique)} thing(s) this "
            f"test made cross the wire:\n  {shown}{more}",
            pytrace=False,
        )


@pytest.hookimpl(tryfirst=True)  # before xdist tells the controller this worker is done
def pytest_sessionfinish(session) -> None:
    counts = getattr(session.config, "_referee_counts", None)
    if counts is None:
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{_worker(session.config)}.json").write_text(json.dumps(dict(counts), indent=1))


def summary() -> dict[str, dict]:
    merged: dict[str, dict] = {}
    for path in ARTIFACTS.glob("*.json"):
        for operation, entry in json.loads(path.read_text()).items():
            into = merged.setdefault(operation, {**entry, "requests": 0, "answers": 0})
            into["requests"] += entry["requests"]
            into["answers"] += entry["answers"]
    return merged


def pytest_terminal_summary(terminalreporter, config) -> None:
    if _worker(config) != "main":
        return
    merged = summary()
    if not merged:
        return
    (ARTIFACTS.parent / "referee-summary.json").write_text(json.dumps(merged, indent=1, sort_keys=True))
    write = terminalreporter.write_line
    terminalreporter.section("referee: checked against Zuora's SDK models and Kommo's documented shapes")
    write(f"{'operation':58} {'requests':>9} {'answers':>9}")
    for operation, entry in sorted(merged.items(), key=lambda item: (item[1]["service"], item[0])):
        if entry["known"]:
            write(f"{entry['service'] + ' ' + operation:58} {entry['requests']:>9} {entry['answers']:>9}")
    unknown = sorted(f"{e['service']} {op}" for op, e in merged.items() if not e["known"])
    if unknown:
        write("operations seen that nothing checks: " + ", ".join(unknown))
    else:
        write("operations seen that nothing checks: none")
