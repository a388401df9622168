"""When an alarm is due: the rules for one company's token card (token invalid, expiry reminders at
60/30/14/7/1 days, token expired, paused with approved documents waiting, repeated failures). Each alarm goes
through core.alarms.outbox.raise_alarm, whose unique key makes it "once" across runs and processes.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, func
from sqlmodel import col, select

from core.alarms.messages import (
    Alarm,
    company_paused,
    expiry_step,
    token_expired,
    token_expiring,
    token_invalid,
    transfers_failing,
)
from core.alarms.outbox import raise_alarm
from core.connections.health import USABLE, Health, TokenCard, card_for
from core.platform.config import Settings
from core.platform.db import unit_of_work
from core.platform.models import PROVIDER_LABELS, Company, Connection, Document, DocumentStatus, TransferAttempt, utcnow
from core.providers.outcome import Outcome
from core.transfers.readiness import waiting_reason


def days_left(expires_at: datetime, now: datetime, timezone: str) -> int:
    """Calendar days until expiry, counted in the display time zone (tomorrow = 1)."""
    zone = ZoneInfo(timezone)
    return (expires_at.astimezone(zone).date() - now.astimezone(zone).date()).days


def approved_waiting(engine: Engine) -> dict[int, int]:
    """Approved documents per company (company id → count)."""
    with unit_of_work(engine) as session:
        rows = session.exec(select(Document.company_id, func.count())
                            .where(Document.status == DocumentStatus.approved.value)
                            .group_by(col(Document.company_id))).all()
    return {company_id: count for company_id, count in rows}


def raise_alarms_for(engine: Engine, settings: Settings, company_id: int) -> int:
    """Raise what is due for one company now: called by whatever just found its token or key broken
    (transfer pass, connection test, refresh), so the alarm goes out in the same run. Each alarm is
    still raised once (its unique key); the hourly token care raises the rest (expiry reminders)."""
    with unit_of_work(engine) as session:
        company = session.get(Company, company_id)
        if company is None:
            return 0
        session.expunge(company)
        waiting = session.exec(select(func.count()).select_from(Document).where(
            col(Document.company_id) == company_id, col(Document.status) == DocumentStatus.approved.value)).one()
    provider = company.provider
    if provider is None or company.archived_at is not None:
        return 0
    return raise_card_alarms(engine, settings, card_for(engine, settings, company, provider), int(waiting))


def raise_card_alarms(engine: Engine, settings: Settings, card: TokenCard, approved_waiting: int) -> int:
    """Raise every alarm that is due for this company now; returns how many were raised (not before)."""
    company, connection, now = card.company, card.connection, utcnow()
    assert company.id is not None
    company_id = company.id
    label = PROVIDER_LABELS[card.provider]
    raised = 0

    def send(alarm: Alarm) -> None:
        nonlocal raised
        if raise_alarm(engine, settings, alarm, company_id=company_id, recipients=company.alarm_recipients):
            raised += 1

    if card.health == Health.invalid and connection is not None and connection.invalid_at is not None:
        # Keyed by the day it became invalid: one alarm per invalidation, not one per tick or day.
        send(token_invalid(company_id=company_id, company_name=company.name, provider_label=label,
                           reason=connection.invalid_reason or "vom Anbieter abgelehnt", when=connection.invalid_at))
    if card.health == Health.expired and connection is not None and connection.refresh_expires_at is not None:
        # Keyed by the day it ran out: once per validity, even when nothing waits for a transfer.
        send(token_expired(company_id=company_id, company_name=company.name, provider_label=label,
                           expired_at=connection.refresh_expires_at))
    if card.health in USABLE and connection is not None and connection.refresh_expires_at is not None:
        left = days_left(connection.refresh_expires_at, now, settings.display_timezone)
        if expiry_step(left) is not None:
            valid_until = connection.refresh_expires_at.astimezone(ZoneInfo(settings.display_timezone))
            send(token_expiring(company_id=company_id, company_name=company.name, provider_label=label,
                                days_left=left, valid_until_text=valid_until.strftime("%d.%m.%Y")))
    reason = waiting_reason(company, connection, settings, now)
    if reason is not None and approved_waiting > 0:
        belege = "1 freigegebener Beleg wartet" if approved_waiting == 1 else \
            f"{approved_waiting} freigegebene Belege warten"
        send(company_paused(company_id=company_id, company_name=company.name,
                            reason=f"{reason}. {belege} auf die Übertragung.",
                            when=_paused_since(company, connection, card.health, reason, now)))
    failing = _failures_since_last_delivery(engine, company_id)
    if failing is not None and failing[0] >= settings.transfer_failure_alarm_threshold:
        count, last_at, last_error = failing
        send(transfers_failing(company_id=company_id, company_name=company.name, failed_count=count,
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


def _failures_since_last_delivery(engine: Engine, company_id: int) -> tuple[int, datetime, str | None] | None:
    """Failed attempts after the company's last delivered one: count, time and text of the last."""
    with unit_of_work(engine) as session:
        last_delivered = session.exec(select(func.max(TransferAttempt.started_at)).where(
            TransferAttempt.company_id == company_id, TransferAttempt.outcome == Outcome.delivered.value)).one()
        query = select(TransferAttempt).where(TransferAttempt.company_id == company_id,
                                              TransferAttempt.outcome == Outcome.failed.value)
        if last_delivered is not None:
            query = query.where(col(TransferAttempt.started_at) > last_delivered)
        count = session.exec(select(func.count()).select_from(query.subquery())).one()
        if not count:
            return None
        last = session.exec(query.order_by(col(TransferAttempt.finished_at).desc(),
                                           col(TransferAttempt.id).desc()).limit(1)).one()
        return int(count), last.finished_at, last.error_text
