"""The one time-zone path: display zone from the settings, formats, and days across DST changes."""

from datetime import UTC, date, datetime, timedelta

import pytest

from core.platform import timefmt
from core.platform.config import ConfigurationError, Settings, get_settings


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch):
    """Set DISPLAY_TIMEZONE for this test (the settings cache is cleared around every test)."""

    def use(name: str) -> None:
        monkeypatch.setenv("DISPLAY_TIMEZONE", name)
        get_settings.cache_clear()

    return use


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_default_display_zone_is_berlin() -> None:
    assert timefmt.display_zone().key == "Europe/Berlin"
    assert timefmt.format_local(utc(2026, 1, 15, 11, 5)) == "15.01.2026 12:05"  # CET, UTC+1
    assert timefmt.format_local(utc(2026, 7, 15, 11, 5)) == "15.07.2026 13:05"  # CEST, UTC+2


def test_format_local_across_the_spring_change() -> None:
    # 29.03.2026: at 01:00 UTC Berlin jumps from 02:00 CET to 03:00 CEST.
    assert timefmt.format_local(utc(2026, 3, 29, 0, 59)) == "29.03.2026 01:59"
    assert timefmt.format_local(utc(2026, 3, 29, 1, 0)) == "29.03.2026 03:00"


def test_format_local_across_the_autumn_change() -> None:
    # 25.10.2026: at 01:00 UTC Berlin goes back from 03:00 CEST to 02:00 CET; 02:xx happens twice.
    assert timefmt.format_local(utc(2026, 10, 25, 0, 30)) == "25.10.2026 02:30"
    assert timefmt.format_local(utc(2026, 10, 25, 1, 30)) == "25.10.2026 02:30"
    assert timefmt.format_local(utc(2026, 10, 25, 2, 0)) == "25.10.2026 03:00"


def test_format_local_empty_and_naive() -> None:
    assert timefmt.format_local(None) == "–"
    assert timefmt.format_local(None, empty="nie") == "nie"
    with pytest.raises(ValueError, match="naive"):
        timefmt.format_local(datetime(2026, 3, 29, 12, 0))


def test_day_start_utc_on_the_dst_change_days() -> None:
    spring = timefmt.day_start_utc(date(2026, 3, 29))
    assert spring == utc(2026, 3, 28, 23, 0)  # midnight CET
    assert timefmt.day_start_utc(date(2026, 3, 30)) == utc(2026, 3, 29, 22, 0)  # midnight CEST
    assert timefmt.day_start_utc(date(2026, 3, 30)) - spring == timedelta(hours=23)

    autumn = timefmt.day_start_utc(date(2026, 10, 25))
    assert autumn == utc(2026, 10, 24, 22, 0)  # midnight CEST
    assert timefmt.day_start_utc(date(2026, 10, 26)) == utc(2026, 10, 25, 23, 0)  # midnight CET
    assert timefmt.day_start_utc(date(2026, 10, 26)) - autumn == timedelta(hours=25)
    assert autumn.tzinfo is UTC


def test_local_day_at_the_edges_of_the_dst_change_days() -> None:
    assert timefmt.local_day(utc(2026, 3, 28, 22, 59)) == date(2026, 3, 28)
    assert timefmt.local_day(utc(2026, 3, 28, 23, 0)) == date(2026, 3, 29)
    assert timefmt.local_day(utc(2026, 3, 29, 21, 59)) == date(2026, 3, 29)
    assert timefmt.local_day(utc(2026, 3, 29, 22, 0)) == date(2026, 3, 30)
    assert timefmt.local_day(utc(2026, 10, 24, 21, 59)) == date(2026, 10, 24)
    assert timefmt.local_day(utc(2026, 10, 24, 22, 0)) == date(2026, 10, 25)
    assert timefmt.local_day(utc(2026, 10, 25, 22, 59)) == date(2026, 10, 25)
    assert timefmt.local_day(utc(2026, 10, 25, 23, 0)) == date(2026, 10, 26)
    with pytest.raises(ValueError, match="naive"):
        timefmt.local_day(datetime(2026, 3, 29, 12, 0))


def test_every_day_of_the_year_starts_where_local_day_begins() -> None:
    day = date(2026, 1, 1)
    while day.year == 2026:
        start = timefmt.day_start_utc(day)
        assert timefmt.local_day(start) == day
        assert timefmt.local_day(start - timedelta(microseconds=1)) == day - timedelta(days=1)
        assert timefmt.format_local(start).endswith(" 00:00")
        day += timedelta(days=1)


def test_format_date_of_moments_and_days() -> None:
    assert timefmt.format_date(date(2026, 3, 29)) == "29.03.2026"
    assert timefmt.format_date(utc(2026, 3, 28, 23, 30)) == "29.03.2026"  # already the 29th in Berlin
    assert timefmt.format_date(utc(2026, 10, 25, 22, 30)) == "25.10.2026"
    assert timefmt.format_date(utc(2026, 10, 25, 23, 0)) == "26.10.2026"
    assert timefmt.format_date(None) == "–"


def test_the_configured_zone_is_used(zone) -> None:
    zone("America/New_York")  # DST changes on other days: 08.03.2026 and 01.11.2026
    assert timefmt.display_zone().key == "America/New_York"
    assert timefmt.format_local(utc(2026, 3, 29, 1, 0)) == "28.03.2026 21:00"
    assert timefmt.day_start_utc(date(2026, 3, 29)) == utc(2026, 3, 29, 4, 0)
    assert timefmt.local_day(utc(2026, 3, 29, 3, 59)) == date(2026, 3, 28)
    assert timefmt.format_date(utc(2026, 3, 29, 3, 59)) == "28.03.2026"

    zone("UTC")
    assert timefmt.format_local(utc(2026, 3, 29, 1, 0)) == "29.03.2026 01:00"
    assert timefmt.day_start_utc(date(2026, 10, 25)) == utc(2026, 10, 25, 0, 0)


def test_an_unknown_zone_is_refused_at_start() -> None:
    with pytest.raises(ConfigurationError, match="DISPLAY_TIMEZONE"):
        Settings(_env_file=None, app_env="test", display_timezone="Europe/Atlantis")


def test_period_bounds_are_whole_berlin_days() -> None:
    assert timefmt.period_bounds(()) == (None, None)
    one = timefmt.period_bounds((date(2026, 3, 29),))  # the spring change: a 23-hour day
    assert one == (datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC))
    both = timefmt.period_bounds((date(2026, 11, 1), date(2026, 11, 30)))
    assert both == (datetime(2026, 10, 31, 23, tzinfo=UTC), datetime(2026, 11, 30, 23, tzinfo=UTC))
