"""A rate limit shared by every worker and process through the database (Lexware: 2 requests/s per
API key, global for the whole API). Each caller reserves the next free slot in a short transaction
(row lock on PostgreSQL, BEGIN IMMEDIATE on SQLite), then waits outside it until its slot."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from core.platform.db import unit_of_work
from core.platform.models import RateSlot, utcnow


def reserve(engine: Engine, key: str, per_second: float) -> datetime:
    """Reserve the next free slot for `key` (slots are 1/per_second apart); returns its time."""
    interval = timedelta(seconds=1 / per_second)
    for _ in range(5):
        try:
            with unit_of_work(engine) as session:
                row = session.exec(select(RateSlot).where(RateSlot.key == key).with_for_update()).first()
                now = utcnow()
                if row is None:
                    session.add(RateSlot(key=key, next_free_at=now + interval))
                    return now
                slot = max(now, row.next_free_at)
                row.next_free_at = slot + interval
                session.add(row)
                return slot
        except IntegrityError:  # two first callers inserted at once: the other row won, go again
            continue
    raise RuntimeError(f"could not reserve a rate slot for {key}")


def acquire(engine: Engine, key: str, per_second: float) -> None:
    wait = (reserve(engine, key, per_second) - utcnow()).total_seconds()
    if wait > 0:
        time.sleep(wait)  # pacing requests to the provider's limit, not synchronisation
