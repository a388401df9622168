"""Scheduler heartbeats: one row per scheduler process, so the dashboard can tell whether (and
how many) schedulers run, when they last ticked and what their last pass did."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import col, select

from core.platform.db import unit_of_work
from core.platform.models import SchedulerHeartbeat, clip, utcnow


def new_instance_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{utcnow().strftime('%H%M%S')}"


def start(engine: Engine, instance_id: str) -> None:
    now = utcnow()
    with unit_of_work(engine) as session:
        session.merge(SchedulerHeartbeat(instance_id=instance_id, host=clip(SchedulerHeartbeat.host, socket.gethostname()) or "", pid=os.getpid(),
                                         started_at=now, last_tick_at=now))


def tick(engine: Engine, instance_id: str, last_pass: dict | None = None) -> None:
    with unit_of_work(engine) as session:
        row = session.get(SchedulerHeartbeat, instance_id)
        if row is None:
            return
        row.last_tick_at = utcnow()
        if last_pass is not None:
            row.last_pass = last_pass
        session.add(row)


def stop(engine: Engine, instance_id: str) -> None:
    with unit_of_work(engine) as session:
        row = session.get(SchedulerHeartbeat, instance_id)
        if row is not None:
            row.stopped_at = row.last_tick_at = utcnow()
            session.add(row)


@dataclass(frozen=True)
class SchedulerStatus:
    running: list[SchedulerHeartbeat]
    latest: SchedulerHeartbeat | None  # the most recent tick of any instance

    @property
    def is_running(self) -> bool:
        return bool(self.running)


def status(engine: Engine, *, stale_after: timedelta, now: datetime | None = None) -> SchedulerStatus:
    """Running = ticked within `stale_after` and not stopped (a SIGKILLed process just goes stale)."""
    now = now or utcnow()
    with unit_of_work(engine) as session:
        rows = list(session.exec(select(SchedulerHeartbeat).order_by(col(SchedulerHeartbeat.last_tick_at).desc())
                                 .limit(50)).all())
        session.expunge_all()
    running = [r for r in rows if r.stopped_at is None and now - r.last_tick_at <= stale_after]
    return SchedulerStatus(running, rows[0] if rows else None)
