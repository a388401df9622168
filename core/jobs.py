"""The scheduler's jobs. Each takes a JobContext, reads durable state from the database and claims
work there; none keeps state in the process. scheduler.py only ticks them.

- transfer_pass: approved documents of companies with automatic transfer.
- token_care: health, keepalive refresh of rolling DATEV tokens, alarms (token invalid, expiry
  reminders at 60/30/14/7/1 days, company paused with documents waiting, repeated failures). It
  contacts DATEV only for the keepalive refresh; everything else is read from the database.
- housekeeping: HTTP log retention, expired pending logins, abandoned document claims, expired
  one-off logins, alarm retention. Each step is done by the module that owns that state.
- alarm_retry: resends undelivered alarms whose next attempt is due (core.alarms.outbox.retry_due_alarms).
- inbox_import: the companies' inbox folders (core.documents.inbox).

Every alarm goes through core.alarms.outbox.raise_alarm, whose unique key makes it "once" across ticks
and across scheduler processes; the alarm_retry job (every ALARM_RETRY_INTERVAL_MINUTES, 5) resends
the undelivered ones, so a mail server that was down for a moment delays an alarm by minutes, not by
the hour of housekeeping or token care.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from core import heartbeat
from core.alarms.outbox import purge_old_alarms, retry_due_alarms
from core.alarms.rules import approved_waiting, raise_card_alarms
from core.connections import request_links
from core.connections import store as connection_store
from core.connections.access import TokenUnavailable, get_valid_token
from core.connections.datev_login import purge_expired_pending_logins
from core.connections.health import USABLE, TokenCard, card_for, token_cards
from core.documents import inbox, lifecycle
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.models import Connection, Provider, utcnow
from core.providers import http
from core.transfers.engine import PassOptions, PassSummary, run_pass
from core.users import process

log = logging.getLogger(__name__)

BATCH = 500


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
                    PassOptions(trigger="scheduler", actor=process(ctx.owner), owner=ctx.owner, only_auto_transfer=True,
                                stop=ctx.stop))


# --- token care -------------------------------------------------------------------------------


def token_care(ctx: JobContext) -> dict[str, int]:
    """Health evaluation, proactive refresh and reminders/alarms for every active company."""
    return care_for_tokens(ctx.engine, ctx.settings, ctx.keyring, stop=ctx.stop)


def care_for_tokens(engine: Engine, settings: Settings, keyring: Keyring, *,
                    stop: threading.Event | None = None) -> dict[str, int]:
    summary = {"companies": 0, "refreshed": 0, "refresh_failed": 0, "alarms": 0}
    waiting = approved_waiting(engine)
    for card in token_cards(engine, settings):
        if stop is not None and stop.is_set():
            break
        summary["companies"] += 1
        try:
            card = _keepalive(engine, settings, keyring, card, summary)
            assert card.company.id is not None
            summary["alarms"] += raise_card_alarms(engine, settings, card, waiting.get(card.company.id, 0))
        except Exception:  # one company must not keep the others from their care
            log.exception("token care for company %s failed", card.company.id)
    return summary


def keepalive_due(connection: Connection, settings: Settings, now: datetime) -> bool:
    """A rolling DATEV Langzeittoken not refreshed for TOKEN_KEEPALIVE_DAYS gets one refresh."""
    if (not settings.datev_refresh_rolling or connection.provider != Provider.datev.value
            or connection.slot != connection_store.LONG_TERM_SLOT):
        return False
    last = connection.last_refresh_at or connection.requested_at
    return last is None or last <= now - timedelta(days=settings.token_keepalive_days)


def _keepalive(engine: Engine, settings: Settings, keyring: Keyring, card: TokenCard,
               summary: dict[str, int]) -> TokenCard:
    connection = card.connection
    now = utcnow()
    if (connection is None or connection.id is None or card.health not in USABLE
            or not keepalive_due(connection, settings, now)):
        return card
    try:  # stale_version forces exactly one refresh, even with several schedulers (lease + version CAS)
        get_valid_token(engine, connection.id, settings=settings, keyring=keyring, stale_version=connection.version)
        summary["refreshed"] += 1
    except TokenUnavailable as exc:
        summary["refresh_failed"] += 1
        log.warning("keepalive refresh for connection %s failed: %s", connection.id, exc.message)
    return card_for(engine, settings, card.company, card.provider)


# --- housekeeping -----------------------------------------------------------------------------


def housekeeping(ctx: JobContext) -> dict[str, int]:
    """HTTP log retention, expired pending logins, abandoned claims, expired one-off logins, alarm
    retention, expired request links, old process heartbeats: each done by the module that owns that state."""
    engine, now = ctx.engine, utcnow()
    return {
        "http_log_purged": http.purge_older_than(engine, ctx.settings.http_log_retention_days),
        "pending_logins_expired": purge_expired_pending_logins(engine, now),
        "abandoned_claims": lifecycle.release_abandoned_claims(
            engine, now, lease_seconds=ctx.settings.transfer_lease_seconds, actor=ctx.owner),
        "one_off_logins_discarded": connection_store.discard_expired_one_off_logins(engine, now, actor=ctx.owner),
        "alarms_purged": purge_old_alarms(engine, ctx.settings, now, batch=BATCH),
        "request_links_expired": request_links.expire_links(engine, now),
        "heartbeats_purged": heartbeat.purge_old(engine, now),
    }


def alarm_retry(ctx: JobContext) -> dict[str, int]:
    """Resend undelivered alarms whose next attempt is due (at most core.alarms.outbox.RETRY_BATCH per run)."""
    return {"alarms_retried": retry_due_alarms(ctx.engine, ctx.settings, stop=ctx.stop)}


# --- inbox ------------------------------------------------------------------------------------


def inbox_import(ctx: JobContext) -> dict[str, Any]:
    """Per-company inbox folders (core.documents.inbox). Raises after serving all folders if one is broken."""
    return inbox.import_all(ctx.engine, ctx.settings)
