"""What the dashboard shows about alarms: the recent ones with their delivery state, and a test
alarm an admin sends to check the targets (SMTP, webhooks) without waiting for a real problem.

Both read and write through core.alarms.outbox, so the scheduler and the dashboard share one path: a test
alarm is raised, recorded, sent and (if a target fails) retried like any other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import col, select

from core.alarms.delivery import split_addresses, split_targets
from core.alarms.messages import Alarm
from core.alarms.outbox import NO_TARGETS, NOT_SENT_PREFIX, SENDING, AlarmOutcome, raise_alarm
from core.platform import audit
from core.platform.config import Settings
from core.platform.db import unit_of_work
from core.platform.models import AlarmSent, Company, Role, utcnow
from core.platform.timefmt import format_local
from core.users import Actor, authorized

TEST_KEY_PREFIX = "test:"


@dataclass(frozen=True)
class AlarmRow:
    first_attempt: datetime
    company: str
    title: str
    state: str  # German: zugestellt, wird gesendet, nächster Versuch …, nicht zugestellt, nicht gesendet
    attempts: int
    detail: str
    open: bool  # not delivered and another attempt is planned or running


def delivery_state(row: AlarmSent) -> tuple[str, bool]:
    """The German delivery state of an alarm row, and whether it is still open."""
    if row.delivered:
        return "zugestellt", False
    if row.next_attempt_at is None:  # final: never sent at all, or sent and failed every time
        never_sent = row.detail == NO_TARGETS or (row.detail or "").startswith(NOT_SENT_PREFIX)
        return ("nicht gesendet" if never_sent else "nicht zugestellt"), False
    if row.detail == SENDING:
        return "wird gesendet", True
    return f"nächster Versuch {format_local(row.next_attempt_at)}", True


def recent_alarms(engine: Engine, *, limit: int = 200, only_undelivered: bool = False) -> list[AlarmRow]:
    """The newest alarms first (by first attempt), with the company's name where there is one."""
    with unit_of_work(engine) as session:
        query = (select(AlarmSent, Company.name).join(Company, col(Company.id) == col(AlarmSent.company_id),
                                                      isouter=True)
                 .order_by(col(AlarmSent.sent_at).desc(), col(AlarmSent.id).desc()).limit(limit))
        if only_undelivered:
            query = query.where(col(AlarmSent.delivered).is_(False))
        rows = session.exec(query).all()
    result = []
    for alarm, company_name in rows:
        state, is_open = delivery_state(alarm)
        result.append(AlarmRow(alarm.sent_at, company_name or "–", alarm.title, state, alarm.attempts,
                               alarm.detail or "", is_open))
    return result


def send_test_alarm(engine: Engine, settings: Settings, *, actor: Actor) -> AlarmOutcome:
    """Send a test alarm to every globally configured target (ALARM_TARGETS, ALARM_EMAILS); admins.

    Its key is unique, so it is never deduplicated away; an audit event records who sent it.
    """
    authorized(engine, actor, Role.admin)
    now = utcnow()
    alarm = Alarm(key=f"{TEST_KEY_PREFIX}{now:%Y%m%dT%H%M%S}:{uuid.uuid4().hex[:8]}",
                  title="Test-Alarm von Token Desk",
                  body=(f"Dies ist ein Test-Alarm, ausgelöst von {actor.name} am {format_local(now)}.\n\n"
                        "Wenn Sie diese Nachricht erhalten, kommen Alarme von Token Desk bei Ihnen an."),
                  severity="info")
    outcome = raise_alarm(engine, settings, alarm)
    if outcome is None:  # cannot happen: the key is new
        raise RuntimeError("a test alarm key was used twice")
    with unit_of_work(engine) as session:
        audit.record(session, actor=actor.name, action="alarm.test_sent", entity_type="alarm", entity_id=alarm.key,
                     after={"delivered": outcome.delivered, "targets": [r.target for r in outcome.results]})
    return outcome


def targets_configured(settings: Settings) -> bool:
    """Whether any global alarm target exists (the test alarm needs one)."""
    return bool(split_targets(settings.alarm_targets)) or bool(settings.smtp_host and
                                                               split_addresses(settings.alarm_emails))
