"""Values zkbridge generates for itself when the environment names none."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import IntegrityError

from sync.models import InstallationSecret


def kommo_webhook_token() -> str:
    """KOMMO_WEBHOOK_TOKEN, or one generated at first start and kept in the database."""
    if settings.KOMMO_WEBHOOK_TOKEN:
        return settings.KOMMO_WEBHOOK_TOKEN
    row = InstallationSecret.objects.filter(name="kommo_webhook_token").first()
    if row is None:
        try:
            row = InstallationSecret.objects.create(name="kommo_webhook_token", value=secrets.token_urlsafe(24))
        except IntegrityError:  # another process generated it first
            row = InstallationSecret.objects.get(name="kommo_webhook_token")
    return row.value


def announce_webhook_token(verbosity: int = 1, **kwargs) -> None:
    """After migrate: generate the webhook token at first start and print the URL to paste into Kommo
    (CONTRACT.md: "generated and printed at first start")."""
    if settings.KOMMO_WEBHOOK_TOKEN or InstallationSecret.objects.filter(name="kommo_webhook_token").exists():
        return
    kommo_webhook_token()
    if verbosity:
        print(f"Kommo web hook URL (generated; set KOMMO_WEBHOOK_TOKEN to choose it): {kommo_webhook_url()}")


def kommo_webhook_url() -> str:
    return f"{settings.ZKBRIDGE_URL}/webhooks/kommo/{kommo_webhook_token()}/"
