"""Times are stored in UTC and shown in the display zone as DD.MM.YYYY HH:MM.

The one place that knows the display zone: `Settings.display_timezone` (DISPLAY_TIMEZONE, default
Europe/Berlin). Everything that shows a time, or turns a calendar day someone picked into a UTC
range, goes through here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.platform.config import get_settings

DISPLAY_FORMAT = "%d.%m.%Y %H:%M"
DATE_FORMAT = "%d.%m.%Y"


@functools.cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def display_zone() -> ZoneInfo:
    """The configured display zone (one ZoneInfo per zone name)."""
    return _zone(get_settings().display_timezone)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:  # never stored like this; refuse to guess
        raise ValueError("naive datetime: store and pass timezone-aware UTC values")
    return moment


def format_local(moment: datetime | None, empty: str = "–") -> str:
    """`moment` in the display zone as DD.MM.YYYY HH:MM; `empty` for None."""
    if moment is None:
        return empty
    return _aware(moment).astimezone(display_zone()).strftime(DISPLAY_FORMAT)


def format_date(value: datetime | date | None, empty: str = "–") -> str:
    """A moment's day in the display zone, or a calendar day as it is, as DD.MM.YYYY; `empty` for None."""
    if value is None:
        return empty
    day = local_day(value) if isinstance(value, datetime) else value
    return day.strftime(DATE_FORMAT)


def local_day(moment: datetime) -> date:
    """The calendar day `moment` falls on in the display zone."""
    return _aware(moment).astimezone(display_zone()).date()


def day_start_utc(day: date) -> datetime:
    """Midnight at the start of `day` in the display zone, as UTC.

    The day runs from `day_start_utc(day)` up to (not including) `day_start_utc(day + 1 day)`: 23
    hours on the day clocks go forward, 25 on the day they go back.
    """
    return datetime.combine(day, time(0, 0), tzinfo=display_zone()).astimezone(UTC)


def period_bounds(days: Sequence[date]) -> tuple[datetime | None, datetime | None]:
    """A date range as a filter picks it ((), (start,) or (start, end)) as UTC bounds [since, until) of
    whole days in the display zone; (None, None) for no range."""
    if not days:
        return None, None
    return day_start_utc(days[0]), day_start_utc(days[-1] + timedelta(days=1))
