"""Regression tests of the security review (issue 9): each finding has a test here that fails on the
behaviour before the fix and passes now."""
