"""Constants and small helpers for tests (no fixtures here)."""

# A fixed key for tests only (never used outside the test suite).
TEST_KEY_ENTRY = "test-k1:" + "A" * 43
