"""The scheduler's jobs. Each takes a JobContext, reads durable state from the database and claims
work there; none keeps state in the process. scheduler.py only ticks them.

- transfer_pass: approved documents of companies with automatic transfer.
- token_care: health, keepalive refresh of rolling DATEV tokens, alarms (token invalid, expiry
  reminders at 60/30/14/7/1 days, company paused with documents waiting, repeated failures). It
  contacts DATEV only for the keepalive refresh; everything else is read from the database.
- housekeeping: HTTP log retention, expired pending logins, abandoned document claims, expired
  one-off logins, alarm retention.
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
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, delete, func, update
from sqlmodel import col, select

from core.alarms.messages import company_paused, expiry_step, token_expiring, token_invalid, transfers_failing
from core.alarms.outbox import purge_old_alarms, raise_alarm, retry_due_alarms
from core.connections.access import ACCESS_TOKEN, OWNER_TYPE, REFRESH_TOKEN, TokenUnavailable, get_valid_token
from core.connections.health import USABLE, Health, TokenCard, evaluate_health, long_term_connection, token_cards
from core.documents import inbox
from core.platform import audit
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.models import (
    PROVIDER_LABELS,
    Company,
    Connection,
    ConnectionKind,
    Document,
    DocumentStatus,
    Interface,
    PendingAuthorization,
    Provider,
    StoredSecret,
    TransferAttempt,
    utcnow,
)
from core.platform.secret_store import erase_secret
from core.providers import http
from core.transfers.engine import PassOptions, PassSummary, run_pass, waiting_reason

log = logging.getLogger(__name__)

PENDING_OWNER = "pending_authorization"  # owner_type of a pending login's verifier and nonce
PENDING_PURPOSES = ("pkce_verifier", "nonce")
ONE_OFF_PREFIX = ConnectionKind.one_off.value + ":"
ONE_OFF_FALLBACK_LIFETIME = timedelta(hours=11)  # DATEV refresh window without offline_access (contract §1.5)
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
                    PassOptions(trigger="scheduler", actor=ctx.owner, owner=ctx.owner, only_auto_transfer=True,
                                stop=ctx.stop))


# --- token care -------------------------------------------------------------------------------


def token_care(ctx: JobContext) -> dict:
    """Health evaluation, proactive refresh and reminders/alarms for every active company."""
    return care_for_tokens(ctx.engine, ctx.settings, ctx.keyring, stop=ctx.stop)


def care_for_tokens(engine: Engine, settings: Settings, keyring: Keyring, *,
                    stop: threading.Event | None = None) -> dict:
    summary = {"companies": 0, "refreshed": 0, "refresh_failed": 0, "alarms": 0}
    waiting = _approved_waiting(engine)
    for card in token_cards(engine, settings):
        if stop is not None and stop.is_set():
            break
        summary["companies"] += 1
        try:
            card = _keepalive(engine, settings, keyring, card, summary)
            summary["alarms"] += _card_alarms(engine, settings, card, waiting.get(card.company.id, 0))  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001  (one company must not keep the others from their care)
            log.exception("token care for company %s failed", card.company.id)
    return summary


def keepalive_due(connection: Connection, settings: Settings, now: datetime) -> bool:
    """A rolling DATEV Langzeittoken not refreshed for TOKEN_KEEPALIVE_DAYS gets one refresh."""
    if (not settings.datev_refresh_rolling or connection.provider != Provider.datev.value
            or connection.slot != ConnectionKind.long_term.value):
        return False
    last = connection.last_refresh_at or connection.requested_at
    return last is None or last <= now - timedelta(days=settings.token_keepalive_days)


def _keepalive(engine: Engine, settings: Settings, keyring: Keyring, card: TokenCard, summary: dict) -> TokenCard:
    connection = card.connection
    now = utcnow()
    if connection is None or card.health not in USABLE or not keepalive_due(connection, settings, now):
        return card
    try:  # stale_version forces exactly one refresh, even with several schedulers (lease + version CAS)
        get_valid_token(engine, connection.id, settings=settings, keyring=keyring,  # type: ignore[arg-type]
                        stale_version=connection.version)
        summary["refreshed"] += 1
    except TokenUnavailable as exc:
        summary["refresh_failed"] += 1
        log.warning("keepalive refresh for connection %s failed: %s", connection.id, exc.message)
    fresh = long_term_connection(engine, card.company.id, card.provider)  # type: ignore[arg-type]
    return TokenCard(card.company, card.provider, fresh,
                     evaluate_health(fresh, utcnow(), settings.token_expiry_warning_days))


def days_left(expires_at: datetime, now: datetime, timezone: str) -> int:
    """Calendar days until expiry, counted in the display time zone (tomorrow = 1)."""
    zone = ZoneInfo(timezone)
    return (expires_at.astimezone(zone).date() - now.astimezone(zone).date()).days


def _card_alarms(engine: Engine, settings: Settings, card: TokenCard, approved_waiting: int) -> int:
    company, connection, now = card.company, card.connection, utcnow()
    label = PROVIDER_LABELS[card.provider]
    raised = 0

    def send(alarm) -> None:  # type: ignore[no-untyped-def]
        nonlocal raised
        if raise_alarm(engine, settings, alarm, company_id=company.id, recipients=company.alarm_recipients):
            raised += 1

    if card.health == Health.invalid and connection is not None and connection.invalid_at is not None:
        # Keyed by the day it became invalid: one alarm per invalidation, not one per tick or day.
        send(token_invalid(company_id=company.id, company_name=company.name, provider_label=label,  # type: ignore[arg-type]
                           reason=connection.invalid_reason or "vom Anbieter abgelehnt", when=connection.invalid_at))
    if card.health in USABLE and connection is not None and connection.refresh_expires_at is not None:
        left = days_left(connection.refresh_expires_at, now, settings.display_timezone)
        if expiry_step(left) is not None:
            valid_until = connection.refresh_expires_at.astimezone(ZoneInfo(settings.display_timezone))
            send(token_expiring(company_id=company.id, company_name=company.name, provider_label=label,  # type: ignore[arg-type]
                                days_left=left, valid_until_text=valid_until.strftime("%d.%m.%Y")))
    reason = waiting_reason(company, connection, settings, now)
    if reason is not None and approved_waiting > 0:
        belege = "1 freigegebener Beleg wartet" if approved_waiting == 1 else \
            f"{approved_waiting} freigegebene Belege warten"
        send(company_paused(company_id=company.id, company_name=company.name,  # type: ignore[arg-type]
                            reason=f"{reason}. {belege} auf die Übertragung.",
                            when=_paused_since(company, connection, card.health, reason, now)))
    failing = _failures_since_last_delivery(engine, company.id)  # type: ignore[arg-type]
    if failing is not None and failing[0] >= settings.transfer_failure_alarm_threshold:
        count, last_at, last_error = failing
        send(transfers_failing(company_id=company.id, company_name=company.name, failed_count=count,  # type: ignore[arg-type]
                               last_error=last_error or "unbekannt", when=last_at))
    return raised


def _paused_since(company: Company, connection: Connection | None, health: Health, reason: str,
                  now: datetime) -> datetime:
    """When the pause began (the alarm's key uses its day, so each pause is reported once)."""
    if reason.startswith("pausiert") and company.paused_at is not None:
        return company.paused_at
    if connection is not None:
        moment = {Health.invalid: connection.invalid_at, Health.expired: connection.refresh_expires_at,
                  Health.revoked: connection.deleted_at, Health.missing: connection.updated_at}.get(health)
        if moment is not None:
            return moment
    elif health == Health.missing:
        return company.created_at
    return now


def _approved_waiting(engine: Engine) -> dict[int, int]:
    with unit_of_work(engine) as session:
        rows = session.exec(select(Document.company_id, func.count())
                            .where(Document.status == DocumentStatus.approved.value)
                            .group_by(Document.company_id)).all()
    return {company_id: count for company_id, count in rows}


def _failures_since_last_delivery(engine: Engine, company_id: int) -> tuple[int, datetime, str | None] | None:
    """Failed attempts after the company's last delivered one: count, time and text of the last."""
    with unit_of_work(engine) as session:
        last_delivered = session.exec(select(func.max(TransferAttempt.started_at)).where(
            TransferAttempt.company_id == company_id, TransferAttempt.outcome == "delivered")).one()
        query = select(TransferAttempt).where(TransferAttempt.company_id == company_id,
                                              TransferAttempt.outcome == "failed")
        if last_delivered is not None:
            query = query.where(col(TransferAttempt.started_at) > last_delivered)
        count = session.exec(select(func.count()).select_from(query.subquery())).one()
        if not count:
            return None
        last = session.exec(query.order_by(col(TransferAttempt.finished_at).desc(),
                                           col(TransferAttempt.id).desc()).limit(1)).one()
        return int(count), last.finished_at, last.error_text


# --- housekeeping -----------------------------------------------------------------------------


def housekeeping(ctx: JobContext) -> dict:
    """HTTP log retention, expired pending logins, abandoned claims, expired one-off logins,
    alarm retention."""
    engine, now = ctx.engine, utcnow()
    return {
        "http_log_purged": http.purge_older_than(engine, ctx.settings.http_log_retention_days),
        "pending_logins_expired": purge_expired_pending_logins(engine, now),
        "abandoned_claims": release_abandoned_claims(engine, ctx.settings, now, actor=ctx.owner),
        "one_off_logins_discarded": discard_expired_one_off_logins(engine, now, actor=ctx.owner),
        "alarms_purged": purge_old_alarms(engine, ctx.settings, now, batch=BATCH),
    }


def alarm_retry(ctx: JobContext) -> dict:
    """Resend undelivered alarms whose next attempt is due (at most core.alarms.outbox.RETRY_BATCH per run)."""
    return {"alarms_retried": retry_due_alarms(ctx.engine, ctx.settings, stop=ctx.stop)}


def purge_expired_pending_logins(engine: Engine, now: datetime) -> int:
    """Delete started DATEV logins past their 10 minutes, with their encrypted verifier and nonce;
    also sweeps verifier/nonce rows whose pending login is gone."""
    with unit_of_work(engine) as session:
        ids = list(session.exec(select(PendingAuthorization.id).where(
            col(PendingAuthorization.expires_at) < now).limit(BATCH)).all())
        for pending_id in ids:
            for purpose in PENDING_PURPOSES:
                erase_secret(session, owner_type=PENDING_OWNER, owner_id=pending_id, purpose=purpose)  # type: ignore[arg-type]
        deleted = session.exec(delete(PendingAuthorization).where(  # type: ignore[call-overload]
            col(PendingAuthorization.id).in_(ids), col(PendingAuthorization.expires_at) < now)).rowcount if ids else 0
        session.exec(delete(StoredSecret).where(  # type: ignore[call-overload]
            col(StoredSecret.owner_type) == PENDING_OWNER,
            col(StoredSecret.owner_id).not_in(select(PendingAuthorization.id))))
    return deleted or 0


def release_abandoned_claims(engine: Engine, settings: Settings, now: datetime, *, actor: str) -> int:
    """Documents left "in Übertragung" by a worker that died (lease run out).

    DATEV documents go back to "freigegeben" and are claimable again (the PUT with the fixed GUID makes
    a repeat harmless). A Lexware upload may have arrived and Lexware has no idempotency, so such a
    document becomes "ungeklärt" (never re-sent automatically), exactly as the transfer engine does
    when it takes over such a claim.
    """
    with unit_of_work(engine) as session:
        rows = session.exec(
            select(Document.id, Document.lease_until, Document.attempts, Document.company_id, Company.interface)
            .join(Company, col(Company.id) == col(Document.company_id))
            .where(Document.status == DocumentStatus.transferring.value, col(Document.lease_until) < now)
            .limit(BATCH)).all()
    released = 0
    for document_id, lease_until, attempts, company_id, interface in rows:
        lexware = interface == Interface.lexware.value
        values: dict = {"lease_owner": None, "lease_until": None, "updated_at": now}
        if lexware:
            message = ("Die Übertragung an Lexware Office wurde unterbrochen; ob der Beleg angekommen ist, ist "
                       "unklar. Bitte in Lexware prüfen.")
            values |= {"status": DocumentStatus.unresolved.value, "last_error": message}
        else:
            values |= {"status": DocumentStatus.approved.value, "next_attempt_at": None}
        with unit_of_work(engine) as session:
            changed = session.exec(update(Document).where(  # type: ignore[call-overload]
                col(Document.id) == document_id, col(Document.status) == DocumentStatus.transferring.value,
                col(Document.lease_until) < now).values(**values)).rowcount
            if changed != 1:  # claimed or finished meanwhile
                continue
            if lexware:
                session.add(TransferAttempt(
                    document_id=document_id, company_id=company_id, provider=Provider.lexware.value,
                    trigger="scheduler", triggered_by=actor[:254], attempt_no=attempts,
                    started_at=lease_until - timedelta(seconds=settings.transfer_lease_seconds), finished_at=now,
                    outcome=DocumentStatus.unresolved.value, error_text=message, correlation_id=f"housekeeping-{document_id}"))
            audit.record(session, actor=actor, action="document.claim_released", entity_type="document",
                         entity_id=document_id, after={"status": values["status"]})
            released += 1
    return released


def discard_expired_one_off_logins(engine: Engine, now: datetime, *, actor: str) -> int:
    """One-off logins whose refresh token ran out: erase their secrets, keep the row (history)."""
    expired = (col(Connection.refresh_expires_at) < now) | (
        col(Connection.refresh_expires_at).is_(None) & (col(Connection.requested_at) < now - ONE_OFF_FALLBACK_LIFETIME))
    with unit_of_work(engine) as session:
        ids = list(session.exec(select(Connection.id).where(
            col(Connection.slot).startswith(ONE_OFF_PREFIX), col(Connection.has_token).is_(True), expired)
            .limit(BATCH)).all())
    discarded = 0
    for connection_id in ids:
        with unit_of_work(engine) as session:
            row = session.get(Connection, connection_id)
            if row is None or not row.has_token or not _one_off_expired(row, now):
                continue  # a new login arrived meanwhile
            for purpose in (REFRESH_TOKEN, ACCESS_TOKEN):
                erase_secret(session, owner_type=OWNER_TYPE, owner_id=connection_id, purpose=purpose)  # type: ignore[arg-type]
            row.has_token = False
            row.version += 1  # a refresh in flight must not write its token back
            row.access_expires_at = None
            row.refresh_lease_until = row.refresh_lease_owner = None
            row.updated_at = now
            session.add(row)
            audit.record(session, actor=actor, action="token.one_off_expired", entity_type="connection",
                         entity_id=connection_id, before={"token_fingerprint": row.token_fingerprint})
            discarded += 1
    return discarded


def _one_off_expired(row: Connection, now: datetime) -> bool:
    if row.refresh_expires_at is not None:
        return row.refresh_expires_at < now
    return row.requested_at is not None and row.requested_at < now - ONE_OFF_FALLBACK_LIFETIME


# --- inbox ------------------------------------------------------------------------------------


def inbox_import(ctx: JobContext) -> dict:
    """Per-company inbox folders (core.documents.inbox). Raises after serving all folders if one is broken."""
    return inbox.import_all(ctx.engine, ctx.settings)
