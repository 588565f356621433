"""What a web worker does once, at its start, instead of in the first request it serves."""

from __future__ import annotations


def warm() -> None:
    """Import the URLconf (DRF, drf-spectacular, every admin's views) and build its reverse map: ≈ 0.3 s that the
    first request of each worker would otherwise wait for (the dashboard's slowest load in BENCHMARKS.md was that
    first request)."""
    from django.urls import get_resolver, reverse

    resolver = get_resolver()
    resolver.url_patterns  # noqa: B018 - imports the URL modules
    reverse("admin:index")  # builds the reverse map the admin's pages use on every load
