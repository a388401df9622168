"""Speed figures for Token Desk (never part of the test suite; timing is never asserted in tests)."""
