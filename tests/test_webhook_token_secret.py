"""The Kommo web hook token is the endpoint's only secret: kept out of access logs, API call rows and the
admin (to everyone), stored encrypted, and rotated with a grace period during which both tokens work."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from sync import installation
from sync.groups import READ_ONLY
from sync.models import ApiCall, InstallationSecret
from sync.ops.logs import MaskWebhookTokens
from tests.test_config import manage

ROOT = Path(__file__).resolve().parents[1]
FORM = "application/x-www-form-urlencoded"
BODY = "leads[status][0][id]=1&leads[status][0][status_id]=5&leads[status][0][pipeline_id]=1"


def test_an_access_log_line_shows_no_token():
    record = logging.LogRecord(
        "django.server",
        logging.INFO,
        "",
        0,
        '"%s" %s %s',
        ("POST /webhooks/kommo/s3cr3t-t0k3n/ HTTP/1.1", 200, 40),
        None,
    )
    MaskWebhookTokens().filter(record)
    assert record.getMessage() == '"POST /webhooks/kommo/***/ HTTP/1.1" 200 40'


def test_gunicorns_access_log_shows_no_token(tmp_path, db):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "access.log"
    env = {"ZKBRIDGE_SECRET_KEY": "g" * 50, "DATABASE_URL": f"sqlite:///{tmp_path / 'g.sqlite3'}"}
    manage("migrate", "-v", "0", **env)
    import os

    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "zkbridge.wsgi", "-b", f"127.0.0.1:{port}", "--access-logfile", str(log)],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ZKBRIDGE_"))}, **env},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.post(f"http://127.0.0.1:{port}/webhooks/kommo/s3cr3t-t0k3n-guess/", data=BODY, timeout=(2, 60))
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=10)
    text = log.read_text()
    assert "/webhooks/kommo/***/" in text and "s3cr3t" not in text


@pytest.fixture
def generated(db, settings):
    settings.KOMMO_WEBHOOK_TOKEN = None
    return installation.kommo_webhook_token()


def test_registering_the_web_hook_keeps_the_token_out_of_the_call_log(emulators, settings):
    settings.KOMMO_WEBHOOK_TOKEN = None
    token = installation.kommo_webhook_token()
    call_command("kommo_webhook", register=True, stdout=open("/dev/null", "w"))  # noqa: SIM115
    calls = ApiCall.objects.filter(path="/api/v4/webhooks")
    assert calls.exists() and all(token not in c.request_body + c.response_body for c in calls)


def test_the_connections_page_masks_the_token_for_everyone_superusers_included(generated, admin_client):
    user = User.objects.create_user("reader", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=READ_ONLY))
    reader = Client()
    reader.force_login(user)
    assert generated not in reader.get("/admin/connections/").content.decode()
    assert installation.mask(generated) in reader.get("/admin/connections/").content.decode()
    assert generated not in admin_client.get("/admin/connections/").content.decode()
    assert installation.mask(generated) in admin_client.get("/admin/connections/").content.decode()


def test_the_generated_token_is_stored_encrypted(generated):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM sync_installationsecret WHERE name = %s", [installation.CURRENT])
        [(stored,)] = cursor.fetchall()
    assert stored.startswith("fernet:") and generated not in stored
    assert InstallationSecret.objects.get(name=installation.CURRENT).value == generated


def test_rotation_keeps_the_old_token_working_for_a_grace_period(generated, client, monkeypatch):
    monkeypatch.setattr("sync.records.enqueue_record", lambda record_id: None)
    call_command("kommo_webhook", rotate=True, stdout=open("/dev/null", "w"), stderr=open("/dev/null", "w"))  # noqa: SIM115
    new = installation.kommo_webhook_token()
    assert new != generated
    for lead, token in ((1, new), (2, generated)):
        body = BODY.replace("[id]=1", f"[id]={lead}")
        assert client.generic("POST", f"/webhooks/kommo/{token}/", body, content_type=FORM).status_code == 200
    past = (timezone.now() - dt.timedelta(seconds=1)).isoformat()
    InstallationSecret.objects.filter(name=installation.PREVIOUS).update(value=f"{past}|{generated}")
    installation.forget_accepted_tokens()  # the edit above stands for a day passing (the process keeps its read 10 s)
    assert client.generic("POST", f"/webhooks/kommo/{generated}/", BODY, content_type=FORM).status_code == 404


def test_a_token_from_the_environment_is_rotated_there(db, settings):
    settings.KOMMO_WEBHOOK_TOKEN = "a-token-the-operator-chose"
    with pytest.raises(CommandError, match="change it there"):
        call_command("kommo_webhook", rotate=True)
