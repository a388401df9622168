"""Process heartbeats: one row per scheduler process, so the dashboard can tell whether (and how many)
schedulers run, when they last ticked and what their last pass did; and one row per dashboard process.

Both kinds record the encryption key set the process holds (primary first), so `remove-key` can tell
whether a live process might still seal with a key (`processes_holding`). A scheduler beats every few
seconds (scheduler.py); a dashboard beats when a page runs, at most once a minute unless its key set
changed (`beat_dashboard`, called by ui.services), which is before anything on that page can seal.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete
from sqlmodel import col, select

from core.platform.db import unit_of_work
from core.platform.models import SchedulerHeartbeat, clip, utcnow

log = logging.getLogger(__name__)

SCHEDULER, DASHBOARD = "scheduler", "dashboard"
DASHBOARD_BEAT_SECONDS = 60.0
# A process that beat within this window counts as alive for `remove-key` (a scheduler beats every 10 s;
# a dashboard on use). Conservative on purpose: a wrongly removed key makes secrets unreadable.
LIVE_WINDOW = timedelta(minutes=5)


def new_instance_id(prefix: str = "") -> str:
    return f"{prefix}{socket.gethostname()[:40]}-{os.getpid()}-{utcnow().strftime('%H%M%S')}"


def _joined(key_ids: Sequence[str] | None) -> str | None:
    return clip(SchedulerHeartbeat.key_ids, ",".join(key_ids)) if key_ids else None


def start(engine: Engine, instance_id: str, *, kind: str = SCHEDULER, key_ids: Sequence[str] | None = None) -> None:
    now = utcnow()
    with unit_of_work(engine) as session:
        session.merge(SchedulerHeartbeat(instance_id=instance_id, kind=kind,
                                         host=clip(SchedulerHeartbeat.host, socket.gethostname()) or "",
                                         pid=os.getpid(), started_at=now, last_tick_at=now, key_ids=_joined(key_ids)))


def tick(engine: Engine, instance_id: str, last_pass: dict | None = None, *,
         key_ids: Sequence[str] | None = None) -> bool:
    """Beat; `key_ids` (primary first) updates the key set the process holds. False if the row is gone."""
    with unit_of_work(engine) as session:
        row = session.get(SchedulerHeartbeat, instance_id)
        if row is None:
            return False
        row.last_tick_at = utcnow()
        if last_pass is not None:
            row.last_pass = last_pass
        if key_ids:
            row.key_ids = _joined(key_ids)
        session.add(row)
        return True


def stop(engine: Engine, instance_id: str) -> None:
    with unit_of_work(engine) as session:
        row = session.get(SchedulerHeartbeat, instance_id)
        if row is not None:
            row.stopped_at = row.last_tick_at = utcnow()
            session.add(row)


HEARTBEAT_RETENTION = timedelta(days=7)


def purge_old(engine: Engine, now: datetime, *, keep: timedelta = HEARTBEAT_RETENTION) -> int:
    """Housekeeping: rows of processes that have not beaten for `keep` (stopped, killed, or a dashboard
    restarted long ago) are deleted; every process start adds a row, so they would pile up otherwise.
    Far outside LIVE_WINDOW: a deleted row can never hide a process that might still seal."""
    with unit_of_work(engine) as session:
        return session.exec(delete(SchedulerHeartbeat).where(
            col(SchedulerHeartbeat.last_tick_at) < now - keep)).rowcount or 0


@dataclass
class _DashboardBeat:
    instance_id: str
    key_ids: tuple[str, ...]
    at: float


_dashboard_beats: dict[str, _DashboardBeat] = {}  # per database URL: this process's row there
_dashboard_lock = threading.Lock()


def beat_dashboard(engine: Engine, key_ids: Sequence[str]) -> None:
    """The dashboard process's heartbeat: its row is created on first use and refreshed at most once
    a minute, or at once when the key set changed. Never raises (a heartbeat must not break a page)."""
    url = engine.url.render_as_string(hide_password=True)
    keys = tuple(key_ids)
    now = time.monotonic()
    with _dashboard_lock:
        beat = _dashboard_beats.get(url)
        if beat is not None and beat.key_ids == keys and now - beat.at < DASHBOARD_BEAT_SECONDS:
            return
        try:
            if beat is None or not tick(engine, beat.instance_id, key_ids=keys):
                beat = _DashboardBeat(new_instance_id("dashboard-"), keys, now)
                start(engine, beat.instance_id, kind=DASHBOARD, key_ids=keys)
            beat.key_ids, beat.at = keys, now
            _dashboard_beats[url] = beat
        except Exception:  # the page goes on; the next run tries again
            log.exception("dashboard heartbeat failed")


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
        rows = list(session.exec(select(SchedulerHeartbeat).where(SchedulerHeartbeat.kind == SCHEDULER)
                                 .order_by(col(SchedulerHeartbeat.last_tick_at).desc()).limit(50)).all())
        session.expunge_all()
    running = [r for r in rows if r.stopped_at is None and now - r.last_tick_at <= stale_after]
    return SchedulerStatus(running, rows[0] if rows else None)


def live_processes(engine: Engine, *, now: datetime | None = None,
                   window: timedelta = LIVE_WINDOW) -> list[SchedulerHeartbeat]:
    """Scheduler and dashboard processes that beat within `window` and did not stop."""
    now = now or utcnow()
    with unit_of_work(engine) as session:
        rows = list(session.exec(select(SchedulerHeartbeat).where(
            col(SchedulerHeartbeat.stopped_at).is_(None),
            col(SchedulerHeartbeat.last_tick_at) >= now - window)
            .order_by(col(SchedulerHeartbeat.instance_id))).all())
        session.expunge_all()
    return rows


def held_key_ids(row: SchedulerHeartbeat) -> tuple[str, ...] | None:
    """The key set a process reported (primary first), or None if it reported none."""
    return tuple(k for k in (row.key_ids or "").split(",") if k) or None


def processes_holding(engine: Engine, key_id: str, *, primary_since: datetime | None,
                      now: datetime | None = None, window: timedelta = LIVE_WINDOW) -> list[SchedulerHeartbeat]:
    """Live processes that might still seal with `key_id`: their primary is `key_id`, or they reported
    no key set and started before the current primary was recorded (or none is recorded)."""
    holding = []
    for row in live_processes(engine, now=now, window=window):
        keys = held_key_ids(row)
        if keys is not None:
            if keys[0] == key_id:
                holding.append(row)
        elif primary_since is None or row.started_at <= primary_since:
            holding.append(row)
    return holding
