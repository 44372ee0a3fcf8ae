"""A real Chromium (Debian's, driven by Playwright) for the end-to-end tests. The broker,
worker and shared media come from the stack plugin (tests.support.stack)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connections

from tests.support.factories import TEST_PASSWORD

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser(monkeypatch) -> Iterator:
    # Playwright's sync API runs an event loop in this thread; the ORM calls in the test
    # body are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()
        # The test body's ORM calls, made while Playwright's loop runs, leave a connection
        # that pytest-django does not close: PostgreSQL then refuses to drop the test database.
        connections.close_all()


@pytest.fixture
def login(browser) -> Iterator[Callable]:
    """`login(base_url, username, password)` -> a page signed in through the login form.
    Every journey is also a check that nothing is fetched from elsewhere (hospitals run
    air-gapped): a request of any of these pages off the app's origin fails the test."""
    offsite: list[str] = []

    def sign_in(base: str, username: str, password: str = TEST_PASSWORD):
        page = browser.new_page(viewport={"width": 1400, "height": 950})
        local = (base, "blob:", "data:")
        page.on(
            "request",
            lambda request: None if request.url.startswith(local) else offsite.append(request.url),
        )
        page.goto(f"{base}/accounts/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        with page.expect_navigation():
            page.click("button[type=submit]")
        return page

    yield sign_in
    assert offsite == [], f"requests left the site: {offsite}"
