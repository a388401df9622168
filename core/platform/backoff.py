"""Retry timing: exponential backoff with full jitter, floored by the server's Retry-After."""

from __future__ import annotations

import math
import random
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# RFC 9110 allows a non-negative integer; we also take a sign and a fraction (negative → 0).
_DELTA_SECONDS = re.compile(r"^[+-]?\d+(?:\.\d+)?$", re.ASCII)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or garbage.

    A date in the past, or a negative number, means "now": 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.match(text):
        seconds = float(text)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000" per RFC 5322: UTC without a source zone
        moment = moment.replace(tzinfo=UTC)
    if now.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware `now`")
    return max(0.0, (moment - now).total_seconds())


def next_delay(
    attempt: int,
    *,
    base: float = 30.0,
    cap: float = 3600.0,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds before retry number `attempt` (1 = first retry): uniform(0, min(cap, base·2^(attempt-1))).

    Never less than `retry_after` when given; that may exceed `cap` (the server decides).
    """
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    exponent = min(attempt - 1, 64)  # base·2^64 is beyond any cap; avoids float overflow
    ceiling = min(cap, base * 2.0**exponent)
    delay = (rng or random).uniform(0.0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
