"""Short-lived counters shared by every web process (Django's cache: Redis when ZKBRIDGE_REDIS_URL is set,
else this process's memory). They only ever limit: when the cache cannot be reached, they count nothing and
nothing is refused — an outage of the cache never fails a web hook."""

from __future__ import annotations

import logging

from django.core.cache import cache

log = logging.getLogger("zkbridge.webhooks")


def bump(key: str, seconds: int) -> int:
    """Add one to the counter `key` (created with a lifetime of `seconds`); returns its value (0: unknown)."""
    try:
        if cache.add(key, 1, timeout=seconds):
            return 1
        try:
            return int(cache.incr(key))
        except ValueError:  # expired between the two calls
            cache.set(key, 1, timeout=seconds)
            return 1
    except Exception as exc:  # the cache's own errors vary by backend (Redis, memcached…)
        log.warning("counter %s not counted: %s", key, exc)
        return 0


def value(key: str) -> int:
    try:
        return int(cache.get(key) or 0)
    except Exception as exc:
        log.warning("counter %s not read: %s", key, exc)
        return 0
