"""A small line in the sidebar: does the scheduler run? (heartbeat rows, core.heartbeat)."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from core import heartbeat
from core.platform.config import ConfigurationError, get_settings
from core.platform.db import get_engine
from core.platform.timefmt import format_local


def stale_after(transfer_interval_seconds: int) -> timedelta:
    """A scheduler counts as stopped after three missed transfer intervals, at least 60 s."""
    return timedelta(seconds=max(60, 3 * transfer_interval_seconds))


def status_line() -> tuple[bool, str]:
    """(running, German text) for the sidebar."""
    settings = get_settings()
    found = heartbeat.status(get_engine(settings.database_url),
                             stale_after=stale_after(settings.transfer_interval_seconds))
    if found.is_running:
        last = max(r.last_tick_at for r in found.running)
        return True, f"Scheduler läuft ({len(found.running)}) · letzter Takt {format_local(last)}"
    if found.latest is not None:
        return False, f"Scheduler läuft nicht (letzter Takt {format_local(found.latest.last_tick_at)})"
    return False, "Scheduler läuft nicht (noch nie gestartet)"


@st.fragment(run_every="30s")
def show_scheduler_status() -> None:
    """Render the line; reruns on its own every 30 s (one small SELECT)."""
    try:
        running, text = status_line()
    except ConfigurationError:
        return  # the page shows the configuration error itself
    except Exception:  # a status line must never break the page
        st.caption("Scheduler-Status nicht verfügbar")
        return
    if running:
        st.caption(f":green[:material/check_circle:] {text}")
    else:
        st.warning(text)
