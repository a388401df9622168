"""Browser fixtures: the emulator over real HTTP, a migrated demo database, Debian chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from core.demo import seed_demo
from core.platform.db import make_engine
from tests.support.harness import CHROMIUM_ARGS, require_chromium

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


