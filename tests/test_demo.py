"""The README's first command, as a new user meets it: `python3 dev.py demo` in its own processes (web server,
workers, emulators), its admin styled by the app itself, a restart that keeps what the user did, `--reset`
that starts over and refuses next to a real setup, and manage.py beside the demo using its settings."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.browser import ARTIFACTS, browser_page, login, pick_rate_plan, requires_chromium

ROOT = Path(__file__).resolve().parents[1]
UMBRELLA, ACME_EXPANSION = 24312350, 24312346


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Demo:
    """One checkout's demo: its own state folder, database file and port, as the user's would be."""

    state: Path
    port: int
    process: subprocess.Popen | None = None
    password: str = ""

    @property
    def log(self) -> Path:
        return self.state.parent / "demo.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> Path:
        return self.state / "demo.sqlite3"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ZUORA_", "KOMMO_"))}
        env.pop("DATABASE_URL", None)  # CI's PostgreSQL is the test suite's, not the demo's
        env.pop("ZKBRIDGE_SECRET_KEY", None)
        env["ZKBRIDGE_STATE_DIR"] = str(self.state)
        return {**env, **extra}

    def start(self, *args: str) -> None:
        first = {"DATABASE_URL": f"sqlite:///{self.database}", "ZKBRIDGE_URL": self.url}
        # After the first run the demo remembers its URL and database itself (.zkbridge/demo.env).
        env = self.env(**({} if (self.state / "demo.env").exists() else first))
        self.log.parent.mkdir(parents=True, exist_ok=True)
        start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("a") as out:  # a file, not a pipe: the demo logs far more than a pipe holds
            self.process = subprocess.Popen(
                [sys.executable, "dev.py", "demo", *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            output = self.log.read_text(errors="replace")[start:]
            if "Ctrl-C stops everything" in output:
                self.password = output.split("password: ", 1)[1].split()[0]
                return
            if self.process.poll() is not None:
                raise AssertionError(f"the demo stopped:\n{output[-5000:]}")
            time.sleep(0.3)
        raise AssertionError(f"the demo did not start within 180 s:\n{self.log.read_text()[-5000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # dev.py stops the web server and the workers
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def manage(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        """manage.py in a second terminal: nothing exported but where the checkout keeps its state."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def query(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.database) as db:
            return db.execute(sql).fetchall()

    def wait_until(self, sql: str, expected, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.query(sql) == expected:
                return
            time.sleep(0.5)
        raise AssertionError(f"{sql} gave {self.query(sql)}, not {expected}")


@pytest.fixture
def demo(tmp_path) -> Iterator[Demo]:
    running = Demo(tmp_path / "state", free_port())
    try:
        running.start()
        yield running
    finally:
        running.stop()


def record_status(lead_id: int) -> str:
    return f"SELECT status FROM sync_syncrecord WHERE key = 'deal_won:{lead_id}'"


@requires_chromium
def test_a_new_user_adds_a_mapping_with_the_picker_and_repairs_a_deal_in_the_demo(demo):
    assert requests.get(f"{demo.url}/static/admin/css/base.css", timeout=10).status_code == 200
    with browser_page() as page:
        page.set_viewport_size({"width": 1280, "height": 900})
        login(page, demo.url, "admin", demo.password)
        # Styled by the app itself: Django's header colour, not the browser's default white.
        header = page.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor")
        assert header not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")
        page.screenshot(path=str(ARTIFACTS / "demo-1-admin-styled.png"), full_page=True)

        # A salesperson wins Umbrella, whose plan "Platinum" nobody mapped yet.
        page.goto(f"{demo.url}/sandbox/kommo/")
        page.locator(f"#lead-{UMBRELLA} button", has_text="Move to Won").click()
        demo.wait_until(record_status(UMBRELLA), [("needs_attention",)])

        # Map it with the rate-plan picker (an autocomplete: it needs the admin's JavaScript).
        page.goto(f"{demo.url}/admin/catalog/planmapping/add/")
        page.fill("#id_kommo_value", "Platinum")
        pick_rate_plan(page, "Starter", "Starter")
        page.click("input[name=_save]")
        page.wait_for_url(f"{demo.url}/admin/catalog/planmapping/")
        assert "Platinum" in page.locator("#result_list").inner_text()

        # Repair the deal from its record page.
        [(record_id,)] = demo.query(f"SELECT id FROM sync_syncrecord WHERE key = 'deal_won:{UMBRELLA}'")
        page.goto(f"{demo.url}/admin/sync/syncrecord/{record_id}/change/")
        assert "no plan mapping for plan 'Platinum'" in page.locator("#content").inner_text()
        assert page.locator("input[name=_save]").count() == 0
        page.click("#zk-repairs button:has-text('Retry')")
        assert "Retry queued" in page.locator(".messagelist").inner_text()
        demo.wait_until(record_status(UMBRELLA), [("succeeded",)])
        page.reload()
        assert "Succeeded" in page.locator("#content").inner_text()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280, f"the record page is {width}px wide at 1280px"
        page.screenshot(path=str(ARTIFACTS / "demo-2-repaired.png"), full_page=True)

        # The salesperson's task is completed with the result, beside the success note.
        page.goto(f"{demo.url}/sandbox/kommo/")
        lead = page.locator(f"#lead-{UMBRELLA}").inner_text()
        assert "✔ completed" in lead and "Result: Zuora: done: subscription A-S" in lead
        page.goto(f"{demo.url}/admin/sync/syncrecord/?status__exact=succeeded")
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        page.screenshot(path=str(ARTIFACTS / "demo-3-task-completed.png"), full_page=True)


def test_a_restart_keeps_what_the_user_did_and_reset_starts_over(demo, tmp_path):
    # What a user does: wins a deal (billed by the demo's own workers) and edits the plan map.
    requests.post(
        f"{demo.url}/sandbox/control/kommo/leads/{ACME_EXPANSION}/status", json={"status_id": 142}, timeout=30
    ).raise_for_status()
    demo.wait_until(record_status(ACME_EXPANSION), [("succeeded",)])
    plan_map = tmp_path / "platinum.csv"
    [(starter,)] = demo.query("SELECT zuora_id FROM catalog_productrateplan WHERE name = 'Starter'")
    plan_map.write_text(f"kommo_value,product_rate_plan_id,label\nPlatinum,{starter},Platinum (as Starter)\n")
    imported = demo.manage("import_plan_map", str(plan_map))
    assert imported.returncode == 0 and "1 mapping(s) created" in imported.stdout, imported.stderr
    mappings = demo.query("SELECT kommo_value, label FROM catalog_planmapping ORDER BY kommo_value")
    assert ("Growth (2024)", "Growth (2024)") in mappings  # the demo's legacy mapping, on a retired plan
    leads = demo.query("SELECT id, status_id, custom_fields_values FROM sandbox_klead ORDER BY id")
    password = demo.password

    demo.stop()
    demo.start()
    assert demo.query("SELECT kommo_value, label FROM catalog_planmapping ORDER BY kommo_value") == mappings
    assert demo.query("SELECT id, status_id, custom_fields_values FROM sandbox_klead ORDER BY id") == leads
    assert demo.password == password
    assert ("Platinum", "Platinum (as Starter)") in mappings

    # manage.py beside the demo: its settings (URL, database, secret key), no exports, no warning.
    report = demo.manage("reconcile")
    assert report.returncode == 0, report.stderr
    # The deal the user won, and Hooli (billed since 2025 on the retired plan, before zkbridge): Hooli's two
    # findings are the demo's story (README, steps 9 and 10); the user's deal has none.
    assert "2 won deals" in report.stdout and "2 discrepancies" in report.stdout
    found = [line for line in report.stdout.splitlines()[1:] if line.strip()]
    assert sorted(line.split()[0] for line in found) == ["retired_plan", "unrecorded_subscription"]
    assert all("24312351" in line for line in found) and str(ACME_EXPANSION) not in report.stdout
    assert "ZKBRIDGE_SECRET_KEY is not set" not in report.stderr

    demo.stop()
    demo.start("--reset")
    assert ("Platinum",) not in demo.query("SELECT kommo_value FROM catalog_planmapping")
    assert demo.query(record_status(ACME_EXPANSION)) == []
    assert demo.query(f"SELECT status_id FROM sandbox_klead WHERE id = {ACME_EXPANSION}") == [(39402112,)]
    assert demo.password == password


def test_reset_and_the_demo_refuse_next_to_a_real_setup(demo):
    demo.stop()
    real = {
        "ZUORA_BASE_URL": "https://rest.zuora.example.com",
        "ZUORA_CLIENT_ID": "id",
        "ZUORA_CLIENT_SECRET": "secret",
        "KOMMO_BASE_URL": "https://acme.kommo.example.com",
        "KOMMO_ACCESS_TOKEN": "token",
        "ZKBRIDGE_ENCRYPTION_KEYS": "y1Cxc9cHgBQm8RkJZf0aR3k0mwl3sjL4rTn8t3M0n9Q=",
        "DATABASE_URL": f"sqlite:///{demo.database}",
    }
    before = demo.query("SELECT COUNT(*) FROM catalog_planmapping")
    refused = demo.manage("demo_setup", "--reset", **real)
    assert refused.returncode != 0 and "a real setup is never reset" in refused.stderr
    dev = subprocess.run(
        [sys.executable, "dev.py", "demo", "--reset"], cwd=ROOT, env=demo.env(**real), capture_output=True, text=True
    )
    assert dev.returncode != 0 and "ZUORA_BASE_URL and KOMMO_BASE_URL are set" in dev.stderr
    assert demo.query("SELECT COUNT(*) FROM catalog_planmapping") == before != [(0,)]


def test_manage_py_names_a_demo_that_is_not_running_in_one_line(demo):
    demo.stop()
    answer = demo.manage("reconcile")
    assert answer.returncode != 0
    lines = [line for line in answer.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"ZKBRIDGE_URL={demo.url}, which does not answer" in lines[0]
    assert demo.query("SELECT COUNT(*) FROM sync_reconciliationrun WHERE ok = 0 AND error != ''") == [(0,)]


def test_a_port_already_taken_stops_the_demo_in_one_line_with_no_call_to_the_other_server(tmp_path):
    """Another server answers on the demo's port: the demo says how to pick another port (ZKBRIDGE_URL) and
    exits, having asked that server nothing — no health check, no token, no catalog, no web hook."""
    import http.server
    import threading

    asked: list[str] = []

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            asked.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"database": "ok"}')

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    port = other.server_address[1]
    demo = Demo(tmp_path / "state", port)
    try:
        started = time.monotonic()
        dev = subprocess.run(
            [sys.executable, "dev.py", "demo"],
            cwd=ROOT,
            env=demo.env(ZKBRIDGE_URL=demo.url, DATABASE_URL=f"sqlite:///{demo.database}"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        other.shutdown()
    lines = [line for line in (dev.stdout + dev.stderr).splitlines() if line.strip()]
    assert dev.returncode != 0 and len(lines) == 1, lines
    assert f"127.0.0.1:{port} is already in use" in lines[0] and f"ZKBRIDGE_URL=http://127.0.0.1:{port + 1}" in lines[0]
    assert asked == [] and not demo.database.exists() and time.monotonic() - started < 30


def test_healthz_names_the_instance_it_was_started_as(client, db, settings):
    """What lets `dev.py demo` tell its own web server from another on the same port."""
    assert "instance" not in client.get("/healthz").json()
    settings.ZKBRIDGE_INSTANCE = "3f9a1c"
    assert client.get("/healthz").json()["instance"] == "3f9a1c"
