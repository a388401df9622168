"""Fixtures the security tests share with the page tests (seeded database, an AppTest per identity) and
the core tests (the `world`: users, companies and the emulator) and the browser tests (a seeded demo database)."""

from tests.app.conftest import app, app_db, desk  # noqa: F401
from tests.core.conftest import world  # noqa: F401
from tests.e2e.conftest import demo_db_url  # noqa: F401
