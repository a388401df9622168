"""Lexware API keys and the per-key token bucket (2 requests/s, burst configurable)."""

from __future__ import annotations

import threading


class TokenBuckets:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float) -> bool:
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + max(0.0, now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1.0, now)
            return True

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()


def key_is_valid(state, key: str | None, now: float) -> bool:
    record = state.data["lexware_keys"].get(key or "")
    return bool(record) and not record["revoked"] and now < record["expires_at"]
