"""The OAuth access token every worker shares, one row per provider (or Zuora entity) in ProviderToken.

Reused until `margin` before it expires; when it must be replaced, one worker exchanges it under the row's
lock while the others wait and then use the new one. A forced refresh (the token was refused) replaces
only the token the caller was refused with: if another worker replaced it meanwhile, theirs is used. What
the exchange is (Zuora's client credentials, Kommo's single-use refresh token) is the client's business;
the new pair is saved before anything uses it (Kommo's old refresh token is already dead)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.utils import timezone

from sync.locks import locked_row
from sync.models import ProviderToken

# The exchange: given the locked row, the new access token, the new refresh token (None: none is issued)
# and its lifetime in seconds.
Exchange = Callable[[ProviderToken], tuple[str, "str | None", int]]


def fresh(row: ProviderToken | None, margin: dt.timedelta) -> bool:
    return bool(row and row.access_token and row.expires_at and row.expires_at - margin > timezone.now())


def shared_token(
    key: str, *, exchange: Exchange, margin: dt.timedelta, force_refresh: bool = False, used: str | None = None
) -> tuple[str, dt.datetime]:
    """The access token under `key` and when it expires; `used`: the token the caller holds (a forced refresh
    replaces that one)."""
    row = ProviderToken.objects.filter(provider=key).first()
    if not force_refresh and row is not None and fresh(row, margin):
        assert row.expires_at is not None
        return row.access_token, row.expires_at
    stale = used or (row.access_token if row else None)
    with locked_row(ProviderToken, provider=key) as locked:
        if fresh(locked, margin) and (not force_refresh or locked.access_token != stale):
            assert locked.expires_at is not None
            return locked.access_token, locked.expires_at  # another worker refreshed while we waited
        return _exchanged(locked, exchange)


def replace_token(key: str, exchange: Exchange) -> tuple[str, dt.datetime]:
    """A new pair under `key` whatever the stored one is (Kommo connected anew from the admin: an authorization
    code bought it), exchanged under the same lock as every refresh, so no refresh runs beside it."""
    with locked_row(ProviderToken, provider=key) as locked:
        return _exchanged(locked, exchange)


def _exchanged(locked: ProviderToken, exchange: Exchange) -> tuple[str, dt.datetime]:
    access, refresh, lifetime = exchange(locked)
    locked.access_token = access
    if refresh is not None:
        locked.refresh_token = refresh
    locked.expires_at = timezone.now() + dt.timedelta(seconds=lifetime)
    locked.refreshed_at = timezone.now()
    locked.refresh_count += 1
    locked.save()
    assert locked.expires_at is not None
    return access, locked.expires_at
