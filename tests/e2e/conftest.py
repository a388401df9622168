"""Browser fixtures: the emulator over real HTTP, a migrated demo database, Debian chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from core.db import make_engine
from core.demo import seed_demo
from tests.e2e.harness import CHROMIUM_ARGS, require_chromium

expect.set_options(timeout=20_000)


@pytest.fixture
def demo_db_url(sqlite_url: str) -> str:
    engine = make_engine(sqlite_url)
    seed_demo(engine)
    engine.dispose()
    return sqlite_url


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = require_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, tmp_path: Path) -> Iterator[Page]:
    context = browser.new_context(locale="de-DE", timezone_id="Europe/Berlin")
    page = context.new_page()
    yield page
    context.close()


def wait_connected(page: Page) -> None:
    expect(page.locator("[data-testid='stApp'][data-test-connection-state='CONNECTED']")).to_be_attached()


DISPLAY_NAMES = {"admin": "Anna Admin", "operator": "Otto Operator", "viewer": "Vera Viewer"}


def sign_in(page: Page, base_url: str, who: str) -> None:
    """Sign in through the emulator's identity provider, as a person would (real st.login)."""
    page.goto(base_url)
    wait_connected(page)
    page.get_by_role("button", name="Anmelden").click()
    page.locator(f"[data-testid='login-{who}']").click()
    page.wait_for_url(f"{base_url}/**")
    wait_connected(page)
    expect(page.get_by_text(DISPLAY_NAMES[who])).to_be_visible()


def open_page(page: Page, title: str) -> None:
    """Open a page through the sidebar menu, as a person would."""
    page.get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
