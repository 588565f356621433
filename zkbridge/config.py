"""Reading configuration from the environment, once, at start-up.

Every helper raises ImproperlyConfigured with the variable's name and what was wrong, so that a bad
value stops zkbridge with one clear line (manage.py and wsgi.py print it) instead of a traceback deep
inside a request.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal, InvalidOperation
from typing import Any, overload
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return value.strip()


@overload
def string(name: str, default: str) -> str: ...
@overload
def string(name: str, default: None = None) -> str | None: ...
def string(name: str, default: str | None = None) -> str | None:
    value = raw(name)
    return default if value in (None, "") else value


def boolean(name: str, default: bool) -> bool:
    value = raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}: expected on/off (1/0, true/false, yes/no), got {value!r}")


@overload
def integer(name: str, default: int, minimum: int | None = None) -> int: ...
@overload
def integer(name: str, default: None = None, minimum: int | None = None) -> int | None: ...
def integer(name: str, default: int | None = None, minimum: int | None = None) -> int | None:
    value = raw(name)
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {number}")
    return number


def decimal(name: str, default: str) -> Decimal:
    value = string(name, default)
    try:
        return Decimal(value)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name}: expected a number, got {value!r}") from None


def listing(name: str, default: str) -> list[str]:
    value = string(name, default) or ""
    return [item.strip() for item in value.split(",") if item.strip()]


def places_by_unit(name: str) -> dict[str, int]:
    """`Seat=0, GB=2`: a unit of measure's decimal places (0–9), for units the catalog does not describe."""
    result: dict[str, int] = {}
    for item in listing(name, ""):
        unit, equals, places = item.rpartition("=")
        if not equals or not unit.strip() or not places.strip().isdigit() or int(places) > 9:
            raise ImproperlyConfigured(f"{name}: expected unit=places pairs such as Seat=0, GB=2 (0–9), got {item!r}")
        result[unit.strip()] = int(places)
    return result


def field_ids(name: str, names: tuple[str, ...]) -> dict[str, int]:
    """`mrr=881290, tcv=881291`: which Kommo field receives each named figure (only the names listed)."""
    result: dict[str, int] = {}
    for item in listing(name, ""):
        what, equals, number = item.partition("=")
        what = what.strip()
        if not equals or what not in names or not number.strip().isdigit() or int(number) <= 0:
            raise ImproperlyConfigured(
                f"{name}: expected name=field id pairs, the names among {', '.join(names)}, got {item!r}"
            )
        if what in result:
            raise ImproperlyConfigured(f"{name}: {what} is named twice")
        result[what] = int(number)
    return result


def choice(name: str, default: str, options: tuple[str, ...]) -> str:
    value = raw(name)
    if value is None:
        return default
    if value not in options:
        raise ImproperlyConfigured(f"{name}: expected one of {', '.join(options)}, got {value!r}")
    return value


def integers(name: str, default: str) -> list[int]:
    """A comma-separated list of whole numbers."""
    result = []
    for item in listing(name, default):
        try:
            result.append(int(item))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: expected comma-separated whole numbers, got {item!r}") from None
    return result


@overload
def url(name: str, default: str) -> str: ...
@overload
def url(name: str, default: None = None) -> str | None: ...
def url(name: str, default: str | None = None) -> str | None:
    value = string(name, default)
    if value is None:
        return None
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ImproperlyConfigured(f"{name}: expected an http(s) URL such as https://example.com, got {value!r}")
    return value.rstrip("/")


def currency(name: str, default: str) -> str:
    value = (string(name, default) or "").upper()
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise ImproperlyConfigured(f"{name}: expected a three-letter ISO currency code such as USD, got {value!r}")
    return value


def time_zone(name: str, default: str) -> str:
    value = string(name, default) or default
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(
            f"{name}: unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
        ) from None
    return value


def database_url(name: str, default: str) -> dict[str, Any]:
    import dj_database_url

    value = string(name, default) or default
    if not re.match(r"^(postgres|postgresql|pgsql|sqlite)://", value):
        raise ImproperlyConfigured(
            f"{name}: expected postgres://… or sqlite:///…, got {value.split('://')[0]!r} scheme"
        )
    try:
        return dict(dj_database_url.parse(value))
    except Exception as exc:  # the library raises several types for unparsable URLs
        raise ImproperlyConfigured(f"{name}: cannot parse ({exc})") from None


def fernet_keys(name: str) -> list[str]:
    """Comma-separated Fernet keys (zkbridge/vault.py), newest first; one that is not a Fernet key stops zkbridge
    with one line naming it."""
    from cryptography.fernet import Fernet

    keys = [k.strip() for k in (raw(name) or "").split(",") if k.strip()]
    for index, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"{name}: key {index} is not a Fernet key (32 url-safe base64 bytes; make one with "
                f'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")'
            ) from None
    return keys


def derived_fernet_key(secret_key: str) -> str:
    """A Fernet key for the demo and the tests, derived from SECRET_KEY (stable across restarts). Production names
    its own keys: a leaked SECRET_KEY must not also open every stored secret."""
    import base64
    import hashlib

    return base64.urlsafe_b64encode(hashlib.sha256(f"zkbridge-vault:{secret_key}".encode()).digest()).decode()
