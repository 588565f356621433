"""Who is calling: the client's address, the same way for the admin's lockout (django-axes) and the endpoints'
failure counters.

Behind the reverse proxy docs/operations.md describes, REMOTE_ADDR is the proxy: every client would share one
address (one stranger's five wrong passwords would lock a user out for everyone). With
ZKBRIDGE_TRUSTED_PROXIES = N (1 when ZKBRIDGE_BEHIND_TLS_PROXY is on), the address is the N-th entry from the right
of X-Forwarded-For — the one our own proxy appended; entries left of it come from the client and are never
trusted. Without the header (a request that did not pass the proxy) it is REMOTE_ADDR."""

from __future__ import annotations

import ipaddress

from django.conf import settings


def client_address(request) -> str:
    remote = request.META.get("REMOTE_ADDR", "") or ""
    hops = settings.ZKBRIDGE_TRUSTED_PROXIES
    if not hops:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < hops:
        return remote
    candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
