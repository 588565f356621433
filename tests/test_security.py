"""Production security: settings from the environment pass `check --deploy`, the admin login resists
guessing, /metrics and the emulators' control API answer only whom they should."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.test_config import manage

PRODUCTION = {
    "ZKBRIDGE_SECRET_KEY": "".join(chr(48 + (i * 7) % 75) for i in range(64)),
    "ZKBRIDGE_ALLOWED_HOSTS": "zkbridge.example.com",
    "ZKBRIDGE_URL": "https://zkbridge.example.com",
    "ZKBRIDGE_BEHIND_TLS_PROXY": "on",
    "ZKBRIDGE_SSL_REDIRECT": "on",
    "ZKBRIDGE_SECURE_COOKIES": "on",
    "ZKBRIDGE_HSTS_SECONDS": "31536000",
    "ZKBRIDGE_HSTS_PRELOAD": "on",
    "ZUORA_BASE_URL": "https://rest.zuora.example.com",
    "ZUORA_CLIENT_ID": "id",
    "ZUORA_CLIENT_SECRET": "secret",
    "KOMMO_BASE_URL": "https://acme.kommo.example.com",
    "KOMMO_ACCESS_TOKEN": "token",
    "ZKBRIDGE_ENCRYPTION_KEYS": "y1Cxc9cHgBQm8RkJZf0aR3k0mwl3sjL4rTn8t3M0n9Q=",
}


def test_production_settings_from_the_environment_pass_the_deploy_check():
    checked = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert checked.returncode == 0, checked.stderr + checked.stdout
    assert "no issues" in checked.stdout


def test_without_them_the_deploy_check_names_what_is_missing():
    checked = manage("check", "--deploy", **{k: v for k, v in PRODUCTION.items() if "HSTS" not in k})
    assert "security.W004" in checked.stderr + checked.stdout


def test_the_admin_form_trusts_the_origin_zkbridge_is_reached_at():
    shown = manage(
        "shell", "-c", "from django.conf import settings; print(settings.CSRF_TRUSTED_ORIGINS)", **PRODUCTION
    )
    assert "['https://zkbridge.example.com']" in shown.stdout, shown.stderr


def login(client: Client, username: str, password: str, address: str = "203.0.113.7"):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_guessing_an_admin_password_locks_that_username_out_from_that_address(db, settings):
    User.objects.create_user("rita", password="the-right-one", is_staff=True, is_superuser=True)
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "rita", "guess").status_code == 200  # the form again, with its error
    assert login(client, "rita", "guess").status_code == 429  # the last failure allowed locks it
    locked = login(client, "rita", "the-right-one")
    assert locked.status_code == 429 and "_auth_user_id" not in client.session
    # Rita, from her own address, still gets in: a stranger cannot lock the real admin out.
    assert login(Client(), "rita", "the-right-one", address="198.51.100.9").status_code == 302


def test_metrics_through_a_proxy_on_the_same_host_need_the_token(client, db, settings):
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 403
    settings.ZKBRIDGE_METRICS_TOKEN = "m" * 32
    answer = client.get(
        "/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7", HTTP_AUTHORIZATION="Bearer " + "m" * 32
    )
    assert answer.status_code == 200


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"REMOTE_ADDR": "127.0.0.1"}, 200),
        ({"REMOTE_ADDR": "203.0.113.7"}, 403),
        ({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.7"}, 403),
        ({"REMOTE_ADDR": "203.0.113.7", "HTTP_AUTHORIZATION": "Bearer wrong"}, 403),
        ({"REMOTE_ADDR": "203.0.113.7", "HTTP_AUTHORIZATION": "Bearer " + "s" * 32}, 200),
    ],
)
def test_the_emulators_control_api_answers_this_machine_or_its_token(client, db, settings, headers, status):
    settings.ZKBRIDGE_SANDBOX_TOKEN = "s" * 32
    assert client.get("/sandbox/control/state", **headers).status_code == status


def test_the_control_api_is_off_while_a_real_zuora_is_configured(client, db, settings):
    settings.ZUORA_USES_EMULATOR = False
    assert client.get("/sandbox/control/state", REMOTE_ADDR="127.0.0.1").status_code == 404
