"""What gets installed is what was chosen: the lock files (every package, transitive ones too, pinned with their
hashes) agree with the hand-kept requirements files, and nothing is installed without a hash."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#\\]+)", re.M)


def pins(path: Path) -> dict[str, str]:
    found = {}
    for name, version in PIN.findall(path.read_text()):
        found[re.sub(r"\[.*\]", "", name).lower().replace("_", "-")] = version
    return found


@pytest.mark.parametrize(
    "chosen, lock", [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")]
)
def test_every_chosen_pin_is_locked_at_the_same_version(chosen, lock):
    wanted = pins(ROOT / chosen)
    if chosen == "requirements-dev.txt":
        wanted |= pins(ROOT / "requirements.txt")
    locked = pins(ROOT / lock)
    assert {name: (version, locked.get(name)) for name, version in wanted.items() if locked.get(name) != version} == {}


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock", "requirements-referee.txt"])
def test_every_locked_package_carries_its_hashes(lock):
    text = (ROOT / lock).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.strip())
    packages = [e for e in entries if PIN.match(e)]
    assert packages and all("--hash=sha256:" in e for e in packages), [
        e.split()[0] for e in packages if "--hash" not in e
    ]
    assert "file://" not in text and "--extra-index-url" not in text  # nothing of one machine's setup


def test_the_production_lock_holds_no_test_tool():
    locked = pins(ROOT / "requirements.lock")
    assert not {"pytest", "zuora-sdk", "pydantic", "pip-audit", "ruff"} & set(locked)
