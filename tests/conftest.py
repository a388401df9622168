"""Shared fixtures: settings for tests, and engines on SQLite and PostgreSQL.

Database tests take the `engine` fixture, which runs each test on every database named in
TEST_DATABASES (default "sqlite,postgresql"). PostgreSQL is required: when the server at
TEST_POSTGRES_URL cannot be reached the run fails (it never skips). Locally, without a server,
`TEST_DATABASES=sqlite make test` runs the SQLite half on purpose.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from tests.support import POSTGRES_ADMIN_URL, TEST_KEY_ENTRY

if TYPE_CHECKING:
    from playwright.sync_api import Browser

# Set while pytest loads this root conftest, before any test module is imported and before anything
# builds Settings: a developer's DATABASE_URL, ADMIN_EMAILS or .streamlit/secrets.toml (checked in
# production) never reaches a test. No project module reads the environment at import time today; the
# block stays above the imports so that this holds even if one ever does. (Ruff's E402 accepts `os.environ` statements before imports: no `noqa`.)
os.environ["APP_ENV"] = "test"
os.environ["ENCRYPTION_KEYS"] = TEST_KEY_ENTRY
os.environ.pop("DATABASE_URL", None)
os.environ.pop("ADMIN_EMAILS", None)
os.environ["STREAMLIT_SECRETS_FILE"] = os.devnull  # no [auth] block; tests that check one name their own file

from sqlalchemy import Engine, create_engine, text

from core.platform.config import Settings, get_settings
from core.platform.crypto import Keyring
from core.platform.db import dispose_engines, make_engine
from core.platform.migrate import upgrade_to_head
from core.platform.secret_store import get_keyring
from core.providers.datev_oidc import clear_discovery_cache
from emulator.server import EmulatorServer

DATABASES = [d.strip() for d in os.environ.get("TEST_DATABASES", "sqlite,postgresql").split(",") if d.strip()]


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> Iterator[None]:
    """Settings, keyring and engines are cached per process; tests must not leak them."""
    get_settings.cache_clear()
    get_keyring.cache_clear()
    yield
    dispose_engines()
    get_settings.cache_clear()
    get_keyring.cache_clear()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (much faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_to_head(engine)
    engine.dispose()
    return path


def _postgres_server_url() -> str:
    probe = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001  (any failure to connect fails the run with one message)
        pytest.fail(
            f"PostgreSQL is required for the test suite but {POSTGRES_ADMIN_URL} is unreachable "
            f"({type(exc).__name__}). Start it, set TEST_POSTGRES_URL, or run only SQLite on purpose "
            "with TEST_DATABASES=sqlite.",
            pytrace=False,
        )
    finally:
        probe.dispose()
    return POSTGRES_ADMIN_URL


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A migrated throw-away PostgreSQL database for this test session."""
    admin_url = _postgres_server_url()
    name = f"tokendesk_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_all(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        tables = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        ))]
        if tables:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database URL (one per test, on each database in TEST_DATABASES)."""
    if request.param == "sqlite":
        path = tmp_path / "tokendesk.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_database")
        _truncate_all(url)
        return url
    raise ValueError(f"unknown test database {request.param!r}")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated SQLite database only (for tests about SQLite itself, and AppTest pages)."""
    path = tmp_path / "tokendesk.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.parse(TEST_KEY_ENTRY)


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    """One emulator over real HTTP for the whole run (reset before each test that uses it)."""
    with EmulatorServer() as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> EmulatorServer:
    """The emulator, back to its demo data, with no faults and the real clock."""
    requests.post(emulator_server.base_url + "/_admin/reset", timeout=5).raise_for_status()
    requests.post(emulator_server.base_url + "/_admin/clock", json={"offset_seconds": 0}, timeout=5).raise_for_status()
    clear_discovery_cache()
    return emulator_server


@pytest.fixture
def settings_for(emulator: EmulatorServer) -> Callable[..., Settings]:
    """Settings pointing at the test emulator (and optionally at a database)."""

    def make(database_url: str = "sqlite://", **overrides: Any) -> Settings:
        return Settings(_env_file=None, app_env="test", database_url=database_url, emulator_url=emulator.base_url,
                        **overrides)

    return make


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's chromium through Playwright, one per test session (tests/e2e, tests/security): Playwright's
    sync API runs one instance per thread, so every browser test shares this one."""
    from playwright.sync_api import sync_playwright

    from tests.support.harness import CHROMIUM_ARGS, require_chromium

    executable = require_chromium()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
