"""Helpers for the tests only: fixtures' worlds, worker processes started by the tests, the browser and
AppTest helpers, and the real SMTP and webhook sinks. (What the benchmarks share lives in testkit/.)"""

import os

# The PostgreSQL server the suite creates its throw-away databases on.
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

# A fixed key for tests only (never used outside the test suite).
TEST_KEY_ENTRY = "test-k1:" + "A" * 43
