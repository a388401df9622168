"""AppTest fixtures: a seeded SQLite database and identities for each role."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from core.demo import seed_demo
from core.platform.db import get_engine
from tests.support.desk import IDENTITIES, ROOT, Desk, make_desk


@pytest.fixture
def app_db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The dashboard's DATABASE_URL for this test, seeded with the demo users and companies."""
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    seed_demo(get_engine(sqlite_url))
    return sqlite_url


@pytest.fixture
def app(app_db: str) -> Callable[..., AppTest]:
    def make(who: str, script: str = "streamlit_app.py") -> AppTest:
        at = AppTest.from_file(str(ROOT / script), default_timeout=30)
        at.user = dict(IDENTITIES[who])
        return at

    return make


@pytest.fixture
def desk(app_db: str, emulator, monkeypatch: pytest.MonkeyPatch) -> Desk:
    """The page tests' world: seeded database, settings pointing at the test emulator (support_documents)."""
    return make_desk(app_db, emulator, monkeypatch)
