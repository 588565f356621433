"""Bad configuration stops zkbridge with one clear line naming the variable (not a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("ZKBRIDGE_", "ZUORA_", "KOMMO_"))}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    environment.update(env)
    environment.setdefault("ZKBRIDGE_SECRET_KEY", "x" * 50)
    environment.setdefault("DATABASE_URL", "sqlite:///:memory:")
    # a real Zuora or Kommo needs encryption keys (tests of other variables are not about them)
    environment.setdefault("ZKBRIDGE_ENCRYPTION_KEYS", "y1Cxc9cHgBQm8RkJZf0aR3k0mwl3sjL4rTn8t3M0n9Q=")
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("ZKBRIDGE_DEBUG", "maybe", "expected on/off"),
        ("DATABASE_URL", "mysql://x", "expected postgres"),
        ("ZUORA_BASE_URL", "rest.zuora.com", "expected an http(s) URL"),
        ("KOMMO_WON_STATUS_ID", "won", "expected a whole number"),
        ("ZKBRIDGE_DEFAULT_CURRENCY", "dollars", "three-letter"),
        ("ZKBRIDGE_TIME_ZONE", "Mars/Olympus", "unknown time zone"),
        ("KOMMO_WEBHOOK_TOKEN", "short", "at least 16"),
        ("ZUORA_ACCOUNT_CRM_FIELD", "KommoId", "ends in __c"),
        ("ZKBRIDGE_REDIS_URL", "localhost:6379", "redis://"),
        ("ZKBRIDGE_CSRF_TRUSTED_ORIGINS", "zkbridge.example.com", "must start with https://"),
        ("ZKBRIDGE_HSTS_SECONDS", "-1", "at least 0"),
        ("ZKBRIDGE_LOGIN_FAILURE_LIMIT", "0", "at least 1"),
        ("ZKBRIDGE_CHURN_STATUS_IDS", "143,142", "names the Won status"),
        ("ZKBRIDGE_CHURN_STATUS_IDS", "143,lost", "comma-separated whole numbers"),
        ("ZKBRIDGE_CANCEL_POLICY", "Never", "expected one of EndOfCurrentTerm"),
        ("ZKBRIDGE_UPGRADE_TIMING", "tomorrow", "expected one of immediately"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name, value, words):
    result = manage("check", **{name: value})
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"zkbridge: configuration error: {name}") and words in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "env, named",
    [
        (
            {"ZUORA_BASE_URL": "https://rest.apisandbox.zuora.com", "ZUORA_CLIENT_ID": "i", "ZUORA_CLIENT_SECRET": "s"},
            "KOMMO_BASE_URL",
        ),
        (
            {
                "ZUORA_BASE_URL": "https://rest.apisandbox.zuora.com",
                "KOMMO_BASE_URL": "https://acme.kommo.com",
                "KOMMO_ACCESS_TOKEN": "t",
            },
            "ZUORA_CLIENT_ID, ZUORA_CLIENT_SECRET",
        ),
        (
            {
                "ZUORA_BASE_URL": "https://rest.apisandbox.zuora.com",
                "ZUORA_CLIENT_ID": "i",
                "ZUORA_CLIENT_SECRET": "s",
                "KOMMO_BASE_URL": "https://acme.kommo.com",
            },
            "KOMMO_ACCESS_TOKEN",
        ),
    ],
)
def test_real_apis_need_their_address_and_credentials_at_start_up(env, named):
    result = manage("check", **env)
    assert result.returncode == 2 and f"configuration error: {named}: required" in result.stderr


def test_sandbox_on_mixes_a_real_zuora_with_the_kommo_emulator():
    result = manage(
        "check",
        ZKBRIDGE_SANDBOX="on",
        ZUORA_BASE_URL="https://rest.apisandbox.zuora.com",
        ZUORA_CLIENT_ID="i",
        ZUORA_CLIENT_SECRET="s",
    )
    assert result.returncode == 0, result.stderr


def test_half_an_oauth_configuration_names_what_is_missing():
    result = manage("check", KOMMO_BASE_URL="https://acme.kommo.com", KOMMO_CLIENT_ID="id")
    assert result.returncode == 2 and "KOMMO_CLIENT_SECRET, KOMMO_REDIRECT_URI: Kommo OAuth needs" in result.stderr


def test_oauth_without_a_refresh_token_starts_so_kommo_can_be_connected_from_the_admin():
    result = manage(
        "check",
        KOMMO_BASE_URL="https://acme.kommo.com",
        KOMMO_CLIENT_ID="id",
        KOMMO_CLIENT_SECRET="secret",
        KOMMO_REDIRECT_URI="https://zk.example.com/kommo/oauth/callback",
        ZKBRIDGE_SANDBOX="on",
    )
    assert result.returncode == 0, result.stderr


def test_no_variables_at_all_is_a_working_sandbox():
    result = manage("check")
    assert result.returncode == 0, result.stderr


def test_real_urls_switch_the_sandbox_off():
    result = manage(
        "shell",
        "-v",
        "0",
        "-c",
        "from django.conf import settings; print(settings.ZKBRIDGE_SANDBOX)",
        ZUORA_BASE_URL="https://rest.apisandbox.zuora.com",
        KOMMO_BASE_URL="https://acme.kommo.com",
        KOMMO_ACCESS_TOKEN="t",
        ZUORA_CLIENT_ID="i",
        ZUORA_CLIENT_SECRET="s",
    )
    assert result.returncode == 0 and result.stdout.strip() == "False"


def test_the_env_file_is_read_and_the_environment_wins(tmp_path):
    env_file = ROOT / ".env"
    assert not env_file.exists(), "a developer's .env would change this test"
    env_file.write_text("KOMMO_WON_STATUS_ID=555\nKOMMO_LOST_STATUS_ID=777\n")
    try:
        code = "from django.conf import settings; print(settings.KOMMO_WON_STATUS_ID, settings.KOMMO_LOST_STATUS_ID)"
        result = manage("shell", "-v", "0", "-c", code, KOMMO_LOST_STATUS_ID="888")
    finally:
        env_file.unlink()
    assert result.stdout.split() == ["555", "888"]


def test_first_migrate_generates_and_prints_the_webhook_url(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "ZKBRIDGE_URL": "https://zk.example.com"}
    first = manage("migrate", "--noinput", **env)
    assert first.returncode == 0, first.stderr
    [line] = [x for x in first.stdout.splitlines() if "Kommo web hook URL" in x]
    assert "https://zk.example.com/webhooks/kommo/" in line
    again = manage("migrate", "--noinput", **env)
    assert "Kommo web hook URL" not in again.stdout  # printed once, at first start
    shown = manage("kommo_webhook", **env)
    assert shown.stdout.strip() == line.split(": ", 1)[1]
