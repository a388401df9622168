"""Helpers for the tests only: fixtures' worlds, worker processes started by the tests, the browser and
AppTest helpers, and the real SMTP and webhook sinks. (What the benchmarks share lives in testkit/.)"""

# A fixed key for tests only (never used outside the test suite).
TEST_KEY_ENTRY = "test-k1:" + "A" * 43
