"""Values zkbridge generates for itself when the environment names none: the Kommo web hook token.

The token is the only secret guarding the Kommo endpoint (Kommo does not sign its web hooks), so it is
kept out of sight: masked in the admin (for everyone), stored encrypted, scrubbed from API call rows and from
access logs. `kommo_webhook --rotate` replaces a generated token; the previous one keeps working for
ROTATION_GRACE while Kommo is told the new URL.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
import time

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from sync.models import InstallationSecret

CURRENT, PREVIOUS = "kommo_webhook_token", "kommo_webhook_token_previous"
ROTATION_GRACE = dt.timedelta(hours=24)


def kommo_webhook_token() -> str:
    """KOMMO_WEBHOOK_TOKEN, or one generated at first start and kept in the database."""
    if settings.KOMMO_WEBHOOK_TOKEN:
        return settings.KOMMO_WEBHOOK_TOKEN
    row = InstallationSecret.objects.filter(name=CURRENT).first()
    if row is None:
        try:
            row = InstallationSecret.objects.create(name=CURRENT, value=secrets.token_urlsafe(24))
        except IntegrityError:  # another process generated it first
            row = InstallationSecret.objects.get(name=CURRENT)
    return row.value


def _replaced() -> tuple[dt.datetime, str] | None:
    """The token a rotation replaced and until when it stays valid (stored as "<until>|<token>")."""
    row = InstallationSecret.objects.filter(name=PREVIOUS).first()
    if row is None:
        return None
    until, _, token = row.value.partition("|")
    return dt.datetime.fromisoformat(until), token


# The accepted tokens as this process last read them (each with the end of its grace, if any), and when:
# every web hook would otherwise read them from the database twice. A token that does not match is checked
# against a fresh read before it is refused, so a rotation is seen at once, and a grace ends on time; only a
# token edited by hand in the database goes on working for up to TOKEN_CACHE_SECONDS.
TOKEN_CACHE_SECONDS = 10.0
_accepted: tuple[float, list[tuple[str, dt.datetime | None]]] = (0.0, [])


def token_accepted(given: str) -> bool:
    """The current token, or the previous one during its grace period (compared in constant time)."""
    global _accepted
    read_at, candidates = _accepted
    if time.monotonic() - read_at < TOKEN_CACHE_SECONDS and _matches(given, candidates):
        return True
    candidates = [(kommo_webhook_token(), None)]
    replaced = None if settings.KOMMO_WEBHOOK_TOKEN else _replaced()  # a token from the environment has no grace
    if replaced and replaced[1]:
        candidates.append((replaced[1], replaced[0]))
    _accepted = (time.monotonic(), candidates)
    return _matches(given, candidates)


def _matches(given: str, candidates: list[tuple[str, dt.datetime | None]]) -> bool:
    now = timezone.now()
    matches = [
        hmac.compare_digest(given.encode(), token.encode()) and (until is None or until > now)
        for token, until in candidates
        if token
    ]
    return any(matches)


def forget_accepted_tokens() -> None:
    """After a rotation in this process (and in tests): the next check reads the tokens again."""
    global _accepted
    _accepted = (0.0, [])


def rotate_webhook_token() -> str:
    """A new generated token; the old one stays valid for ROTATION_GRACE. Returns the new token."""
    if settings.KOMMO_WEBHOOK_TOKEN:
        raise ValueError(
            "KOMMO_WEBHOOK_TOKEN is set in the environment: change it there (zkbridge cannot rotate it for you)"
        )
    old = kommo_webhook_token()
    until = (timezone.now() + ROTATION_GRACE).isoformat()
    InstallationSecret.objects.update_or_create(name=PREVIOUS, defaults={"value": f"{until}|{old}"})
    new = secrets.token_urlsafe(24)
    InstallationSecret.objects.filter(name=CURRENT).update(value=new)
    forget_accepted_tokens()
    return new


def webhook_secrets() -> list[str]:
    """Every token that must never appear in a log line, an API call row or a page (current and previous)."""
    replaced = _replaced()
    return [token for token in (kommo_webhook_token(), replaced[1] if replaced else "") if token]


def mask(token: str) -> str:
    return f"{token[:4]}…{token[-2:]}" if len(token) > 8 else "…"


def announce_webhook_token(verbosity: int = 1, **kwargs) -> None:
    """After migrate: generate the webhook token at first start and print the URL to paste into Kommo
    (printed once, to whoever installs zkbridge)."""
    if settings.KOMMO_WEBHOOK_TOKEN or InstallationSecret.objects.filter(name=CURRENT).exists():
        return
    kommo_webhook_token()
    if verbosity:
        print(f"Kommo web hook URL (generated; set KOMMO_WEBHOOK_TOKEN to choose it): {kommo_webhook_url()}")


# The lead events zkbridge's web hook subscribes to (plan changes need the edits).
WEBHOOK_EVENTS = ["status_lead", "add_lead", "update_lead"]


def kommo_webhook_url(masked: bool = False) -> str:
    token = kommo_webhook_token()
    return f"{settings.ZKBRIDGE_URL}/webhooks/kommo/{mask(token) if masked else token}/"
