"""Headless Debian chromium driven by Playwright, for tests that look at pages as a person does.

Screenshots go to test-artifacts/ (kept by CI as artefacts of the run)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

requires_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (python3 dev.py test installs it when run as root)",
)


@contextlib.contextmanager
def browser_page() -> Iterator:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still
    # synchronous and safe here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(15_000)
            try:
                yield page
            finally:
                browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def login(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def pick_rate_plan(page, search: str, option: str) -> None:
    """Choose a rate plan in the plan mapping's picker (an autocomplete that needs the admin's JavaScript)."""
    page.locator(".select2-selection").first.click()
    page.fill(".select2-search__field", search)
    page.locator(".select2-results__option", has_text=option).first.click()
