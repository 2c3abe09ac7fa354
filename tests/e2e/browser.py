"""Playwright driving Debian's Chromium (no browser download is possible or needed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

CHROMIUM = os.environ.get("PERFPILOT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@contextmanager
def browser_page(*, width: int = 1280, height: int = 800) -> Iterator[Page]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Django's live server runs in a thread of this process; Playwright's sync API needs to
    # run outside an asyncio loop, which pytest-django does not start.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


def sign_in(page: Page, base_url: str, username: str, password: str) -> None:
    """Sign in through the login form and land on the Overview."""
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


def wait_for_js(page: Page, expression: str, *, timeout: float = 20_000, interval: float = 100) -> None:
    """Wait until `expression` is truthy in the page, polling with page.evaluate.

    Playwright's wait_for_function compiles its predicate with eval inside the page, which our
    Content-Security-Policy (no 'unsafe-eval') refuses; page.evaluate runs through DevTools instead.
    """
    waited = 0.0
    while not page.evaluate(expression):
        if waited >= timeout:
            raise AssertionError(f"not true within {timeout / 1000:g} s: {expression}")
        page.wait_for_timeout(interval)
        waited += interval
