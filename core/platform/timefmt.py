"""Times are stored in UTC and shown in Europe/Berlin as DD.MM.YYYY HH:MM."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

DISPLAY_FORMAT = "%d.%m.%Y %H:%M"
_BERLIN = ZoneInfo("Europe/Berlin")


def format_local(moment: datetime | None, empty: str = "–") -> str:
    if moment is None:
        return empty
    if moment.tzinfo is None:  # never stored like this; refuse to guess
        raise ValueError("naive datetime: store and pass timezone-aware UTC values")
    return moment.astimezone(_BERLIN).strftime(DISPLAY_FORMAT)
