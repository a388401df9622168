"""Emulator clock: real UTC time plus an adjustable offset (kept in the state so it survives restarts)."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class Clock:
    def __init__(self, state) -> None:
        self._state = state

    @property
    def offset(self) -> float:
        return float(self._state.data.get("clock_offset", 0))

    def set_offset(self, seconds: float) -> None:
        with self._state.lock:
            self._state.data["clock_offset"] = float(seconds)
            self._state.changed()

    def now(self) -> float:
        return time.time() + self.offset

    def now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def iso(self, timestamp: float | None = None) -> str:
        ts = self.now() if timestamp is None else timestamp
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
