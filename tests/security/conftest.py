"""Fixtures the security tests share with the page tests (seeded database, an AppTest per identity) and
the core tests (the `world`: users, companies and the emulator)."""

from tests.app.conftest import app, app_db, desk  # noqa: F401
from tests.core.conftest import world  # noqa: F401
