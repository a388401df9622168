"""The page tests' fixtures (seeded database, an AppTest per identity) for the security tests' page paths."""

from tests.app.conftest import app, app_db, desk  # noqa: F401
