"""Retry timing: Retry-After parsing, full-jitter bounds per attempt, the Retry-After floor."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.platform.backoff import next_delay, parse_retry_after

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        ("Sat, 28 Nov 2026 12:01:30 GMT", 90.0),
        ("Sat, 28 Nov 2026 11:00:00 GMT", 0.0),  # in the past
        ("Saturday, 28-Nov-26 12:00:10 GMT", 10.0),  # RFC 850, obsolete but allowed
        ("Sat Nov 28 12:00:05 2026", 5.0),  # asctime, no zone: UTC
        ("Sat, 28 Nov 2026 13:00:20 +0100", 20.0),
    ],
)
def test_parse_retry_after(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", [None, "", "   ", "soon", "12 s", "1_000", "inf", "nan", "1e3", "9" * 400, "Sat, 99 Foo"]
)
def test_parse_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_parse_retry_after_compares_across_time_zones() -> None:
    berlin_now = NOW.astimezone(timezone(timedelta(hours=1)))
    assert parse_retry_after("Sat, 28 Nov 2026 12:00:30 GMT", now=berlin_now) == pytest.approx(30.0)
    with pytest.raises(ValueError):
        parse_retry_after("Sat, 28 Nov 2026 12:00:30 GMT", now=datetime(2026, 11, 28, 12))


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 30.0), (2, 60.0), (3, 120.0), (4, 240.0), (7, 1920.0), (8, 3600.0), (50, 3600.0), (5000, 3600.0)],
)
def test_next_delay_stays_within_full_jitter_bounds(attempt: int, ceiling: float) -> None:
    rng = random.Random(1234)
    delays = [next_delay(attempt, rng=rng) for _ in range(500)]
    assert all(0.0 <= d <= ceiling for d in delays)
    # Full jitter spreads over the whole range, not just near the top.
    assert min(delays) < ceiling * 0.1 and max(delays) > ceiling * 0.9


def test_next_delay_is_reproducible_with_a_seed() -> None:
    first = [next_delay(n, rng=random.Random(7)) for n in range(1, 6)]
    again = [next_delay(n, rng=random.Random(7)) for n in range(1, 6)]
    assert first == again
    assert next_delay(1, rng=random.Random(7)) == pytest.approx(random.Random(7).uniform(0, 30))


def test_retry_after_is_a_floor_and_may_exceed_the_cap() -> None:
    rng = random.Random(99)
    assert all(next_delay(1, retry_after=45.0, rng=rng) >= 45.0 for _ in range(200))
    assert all(45.0 <= next_delay(3, retry_after=45.0, rng=rng) <= 120.0 for _ in range(200))
    assert next_delay(1, cap=60.0, retry_after=7200.0, rng=rng) == 7200.0
    assert 0.0 <= next_delay(2, retry_after=0.0, rng=rng) <= 60.0


def test_next_delay_custom_base_and_cap() -> None:
    rng = random.Random(3)
    assert all(0.0 <= next_delay(4, base=1.0, cap=5.0, rng=rng) <= 5.0 for _ in range(200))
    assert all(0.0 <= next_delay(2, base=1.0, cap=5.0, rng=rng) <= 2.0 for _ in range(200))
    with pytest.raises(ValueError):
        next_delay(0)
