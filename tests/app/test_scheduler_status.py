"""The sidebar line about the scheduler (ui.scheduler_status), from heartbeat rows in the database."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select
from streamlit.testing.v1 import AppTest

from core import heartbeat
from core.platform.db import get_engine, unit_of_work
from core.platform.models import SchedulerHeartbeat, utcnow
from ui.scheduler_status import stale_after


def sidebar_app() -> None:
    import streamlit as st

    from ui.scheduler_status import show_scheduler_status

    with st.sidebar:
        show_scheduler_status()


def run() -> AppTest:
    at = AppTest.from_function(sidebar_app, default_timeout=30).run()
    assert not at.exception, at.exception
    return at


def test_stale_after_is_three_intervals_but_at_least_a_minute() -> None:
    assert stale_after(5) == timedelta(seconds=60)
    assert stale_after(60) == timedelta(seconds=180)


def test_no_scheduler_ever(app_db: str) -> None:
    at = run()
    assert [w.value for w in at.sidebar.warning] == ["Scheduler läuft nicht (noch nie gestartet)"]


def test_running_and_stale_schedulers(app_db: str) -> None:
    engine = get_engine(app_db)
    heartbeat.start(engine, "host-a-1")
    heartbeat.start(engine, "host-b-2")
    at = run()
    [caption] = [c.value for c in at.sidebar.caption]
    assert caption.startswith(":green[:material/check_circle:] Scheduler läuft (2) · letzter Takt ") and len(at.sidebar.warning) == 0
    old = utcnow() - timedelta(minutes=10)
    with unit_of_work(engine) as s:
        for row in s.exec(select(SchedulerHeartbeat)).all():
            row.last_tick_at = old
            s.add(row)
    heartbeat.stop(engine, "host-b-2")  # stopped now: counts as not running either
    [warning] = [w.value for w in run().sidebar.warning]
    assert warning.startswith("Scheduler läuft nicht (letzter Takt ")
