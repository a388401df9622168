"""Browser fixtures: the emulator over real HTTP, a migrated demo database, Debian chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from core.demo import seed_demo
from core.platform.db import make_engine

expect.set_options(timeout=20_000)


@pytest.fixture
def demo_db_url(sqlite_url: str) -> str:
    engine = make_engine(sqlite_url)
    seed_demo(engine)
    engine.dispose()
    return sqlite_url


# `browser` (one Chromium per test session, shared with tests/security) is in tests/conftest.py.


@pytest.fixture
def page(browser: Browser, tmp_path: Path) -> Iterator[Page]:
    context = browser.new_context(locale="de-DE", timezone_id="Europe/Berlin")
    page = context.new_page()
    yield page
    context.close()


