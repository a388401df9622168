"""Raise an alarm once: record it, then send it.

The `alarm_sent` row with the alarm's dedupe key is inserted FIRST, in its own short transaction.
The key is unique, so when several scheduler processes (or ticks) raise the same alarm, exactly one
insert wins and only the winner sends. Sending happens outside any transaction (style.md §3.2
rule 2); its result (delivered, and per target the redacted address and error) is written back
afterwards. A process that dies between the insert and the send loses that one alarm rather than
sending it twice: "each alarm once" is the promise.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from core.alarms import Alarm, DeliveryResult, send_alarm, smtp_target
from core.config import Settings
from core.db import unit_of_work
from core.models import AlarmSent, utcnow

log = logging.getLogger(__name__)

MAX_DETAIL_CHARS = 1000  # alarm_sent.detail
NO_TARGETS = "Keine Alarm-Empfänger eingerichtet (ALARM_TARGETS, ALARM_EMAILS mit SMTP_HOST)."
# A new Apprise URL starts where a comma or whitespace is followed by "scheme://"; commas inside a
# URL (e.g. mailto://…?to=a@x.de,b@x.de) stay part of it.
_URL_START = re.compile(r"[,\s]+(?=[A-Za-z][A-Za-z0-9+.-]*://)")


@dataclass(frozen=True)
class AlarmOutcome:
    key: str
    delivered: bool
    results: list[DeliveryResult]


def split_targets(text: str) -> list[str]:
    """ALARM_TARGETS: Apprise URLs separated by commas or whitespace."""
    parts = _URL_START.split(text.strip()) if text and text.strip() else []
    return [p.strip().strip(",").strip() for p in parts if p.strip().strip(",").strip()]


def split_addresses(*texts: str) -> list[str]:
    """E-mail addresses from comma/semicolon/whitespace separated lists, without duplicates."""
    seen: dict[str, str] = {}
    for text in texts:
        for address in re.split(r"[,;\s]+", text or ""):
            if "@" in address and address.lower() not in seen:
                seen[address.lower()] = address
    return list(seen.values())


def alarm_targets(settings: Settings, company_recipients: str = "") -> list[str]:
    """The Apprise URLs for one alarm: ALARM_TARGETS, plus one SMTP target for the global and the
    company's e-mail recipients when SMTP_HOST is set."""
    targets = split_targets(settings.alarm_targets)
    recipients = split_addresses(settings.alarm_emails, company_recipients)
    if settings.smtp_host and recipients:
        targets.append(smtp_target(settings.smtp_host, settings.smtp_port, settings.smtp_sender, recipients,
                                   user=settings.smtp_user, password=settings.smtp_password, tls=settings.smtp_tls))
    elif recipients:
        log.warning("alarm e-mail recipients are set but SMTP_HOST is not: no e-mail is sent")
    return targets


def _claim(engine: Engine, alarm: Alarm, company_id: int | None) -> bool:
    """Insert the alarm's row; False if the key exists already (someone raised it before)."""
    try:
        with unit_of_work(engine) as session:
            if session.exec(select(AlarmSent.id).where(AlarmSent.key == alarm.key[:200])).first() is not None:
                return False
            session.add(AlarmSent(key=alarm.key[:200], company_id=company_id, title=alarm.title[:300],
                                  sent_at=utcnow(), delivered=False, detail="wird gesendet"))
    except IntegrityError:  # a concurrent process inserted the same key first
        return False
    return True


def _detail(results: Sequence[DeliveryResult]) -> str:
    if not results:
        return NO_TARGETS
    text = "; ".join(f"{r.target}: {'zugestellt' if r.ok else r.error or 'fehlgeschlagen'}" for r in results)
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def raise_alarm(engine: Engine, settings: Settings, alarm: Alarm, *, company_id: int | None = None,
                recipients: str = "", timeout: float = 10) -> AlarmOutcome | None:
    """Send the alarm unless it was raised before (None then). Never raises for a failing target.

    `recipients`: the company's own e-mail addresses (Company.alarm_recipients), added to
    ALARM_EMAILS.
    """
    if not _claim(engine, alarm, company_id):
        return None
    targets = alarm_targets(settings, recipients)
    results = send_alarm(alarm, targets, timeout=timeout) if targets else []
    delivered = bool(results) and all(r.ok for r in results)
    if not delivered:
        log.warning("alarm %s not delivered: %s", alarm.key, _detail(results))
    with unit_of_work(engine) as session:
        session.exec(update(AlarmSent).where(col(AlarmSent.key) == alarm.key[:200])  # type: ignore[call-overload]
                     .values(delivered=delivered, detail=_detail(results)))
    return AlarmOutcome(alarm.key, delivered, results)
