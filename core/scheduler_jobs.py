"""The scheduler's jobs. Each takes a JobContext, reads durable state from the database and claims
work there; none keeps state in the process. scheduler.py only ticks them."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import Engine, delete
from sqlmodel import col

from core import httplog
from core.config import Settings
from core.crypto import Keyring
from core.db import unit_of_work
from core.models import PendingAuthorization, utcnow
from core.transfers import PassOptions, PassSummary, run_pass


@dataclass
class JobContext:
    engine: Engine
    settings: Settings
    keyring: Keyring
    instance_id: str
    stop: threading.Event

    @property
    def owner(self) -> str:
        return f"scheduler:{self.instance_id}"


def transfer_pass(ctx: JobContext) -> PassSummary:
    """Deliver every due, approved document of companies with automatic transfer switched on."""
    return run_pass(ctx.engine, ctx.settings, ctx.keyring,
                    PassOptions(trigger="scheduler", actor=ctx.owner, owner=ctx.owner, only_auto_transfer=True,
                                stop=ctx.stop))


def housekeeping(ctx: JobContext) -> dict:
    """HTTP log retention and expired pending logins."""
    purged = httplog.purge_older_than(ctx.engine, ctx.settings.http_log_retention_days)
    with unit_of_work(ctx.engine) as session:
        expired = session.exec(delete(PendingAuthorization).where(  # type: ignore[call-overload]
            col(PendingAuthorization.expires_at) < utcnow())).rowcount or 0
    return {"http_log_purged": purged, "pending_logins_expired": expired}


def token_care(ctx: JobContext) -> dict:
    """Health evaluation, proactive refresh and reminders (filled in with the alarms)."""
    return {}


def inbox_import(ctx: JobContext) -> dict:
    """Per-company inbox folders (filled in with the inbox)."""
    return {}
