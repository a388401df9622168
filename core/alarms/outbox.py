"""Raise an alarm once, and deliver it at least once (with a bounded number of attempts).

The `alarm_sent` row with the alarm's dedupe key is inserted FIRST, in its own short transaction.
The key is unique, so when several scheduler processes (or ticks) raise the same alarm, exactly one
insert wins and only the winner sends. The insert is a claim with a lease: `next_attempt_at` is set
to now + `claim_lease(...)`, long enough to send to every target (`max_targets`). Sending happens
outside any transaction (docs/style.md §3.2 rule 2); its result (delivered, and per target the redacted
address and error) is written back afterwards, and decides what happens next:

- delivered to every target: final (`next_attempt_at` NULL);
- a target failed: retried at now + backoff (`core.platform.backoff.next_delay`, full jitter, base 5 minutes,
  cap 6 hours) until ALARM_MAX_ATTEMPTS attempts were made; then final, the detail ending in
  "aufgegeben nach N Versuchen";
- no target configured at all: final with NO_TARGETS (logged as a warning). Not retried: that is
  configuration, not a passing outage, and retrying cannot help until someone sets targets.

`retry_due_alarms` (the scheduler's alarm_retry job, every ALARM_RETRY_INTERVAL_MINUTES) resends
rows that are due: each is claimed by a conditional UPDATE on its attempt counter (compare-and-swap, rowcount 1 wins, new lease,
attempts + 1), sent outside any transaction to the targets configured now (ALARM_TARGETS,
ALARM_EMAILS and the company's own recipients; only the global ones when the company is gone or
archived), and written back as above. A retry goes to every target again, so a target that got an
earlier attempt may get the alarm twice.

A process that dies between claim and write-back leaves its lease behind; once it runs out, the row
is due and the alarm is sent again. This deliberately replaces the earlier "lose rather than
duplicate": a duplicate alarm mail after a crash is better than a lost "Token ungültig". The promise
is now: each alarm is raised once, and delivered at least once unless every attempt failed.

Titles and bodies are stored for the retry; alarm texts never contain secrets. Logs and details name
targets only in redacted form (`core.alarms.messages.redact_target`).

`purge_old_alarms` (housekeeping) deletes final rows ALARM_RETENTION_DAYS after their first attempt.
Keys embed the day a condition began, so a condition that lasts longer than the retention (say a
token invalid for over a year) is reported once more after its row is gone: a yearly reminder.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ColumnElement, Engine, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from core.alarms.delivery import DeliveryResult, alarm_targets, direct_targets, max_targets, send_alarm
from core.alarms.messages import Alarm, Severity
from core.platform.backoff import next_delay
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.models import AlarmSent, Company, StoredSecret, max_length, utcnow
from core.platform.secret_store import erase_secret, get_keyring, get_secret, put_secret

log = logging.getLogger(__name__)

MAX_DETAIL_CHARS = max_length(AlarmSent.detail)
MAX_KEY_CHARS = max_length(AlarmSent.key)
MAX_TITLE_CHARS = max_length(AlarmSent.title)
NO_TARGETS = "Keine Alarm-Empfänger eingerichtet (ALARM_TARGETS, ALARM_EMAILS mit SMTP_HOST)."
SENDING = "wird gesendet"
NOT_SENT_PREFIX = "Nicht gesendet"  # details of rows that never went to any target (views: "nicht gesendet")
# A message to one person (an Anforderungslink) goes by e-mail only: without SMTP_HOST it cannot be sent,
# whatever the alarm targets are (NO_TARGETS names those and would mislead here).
NO_MAIL_SERVER = f"{NOT_SENT_PREFIX}: kein Mailserver eingerichtet (SMTP_HOST)."
LINK_GONE = f"{NOT_SENT_PREFIX}: der Link ist nicht mehr gültig (verwendet, zurückgezogen oder abgelaufen)."
MESSAGE_OWNER, LINK_PURPOSE = "alarm_sent", "link"  # the sealed link of a message (StoredSecret)
INTERRUPTED = "Versand unterbrochen"
SEND_TIMEOUT_SECONDS = 10.0  # per connect/read of one target
LEASE_MARGIN_SECONDS = 60.0
RETRY_BASE_SECONDS = 300.0
RETRY_CAP_SECONDS = 6 * 3600.0
RETRY_BATCH = 5  # rows per retry pass: a pass blocks the scheduler loop while it sends (worst case


@dataclass(frozen=True)
class AlarmOutcome:
    key: str
    delivered: bool
    results: list[DeliveryResult]


# --- timing -----------------------------------------------------------------------------------


def claim_lease(target_count: int, timeout: float) -> timedelta:
    """How long a claimed send is left alone: each target may take Apprise's service timeout
    (2 × timeout + 1 seconds, core.alarms.messages), plus a margin. Then another process may send again."""
    return timedelta(seconds=max(target_count, 1) * (2 * timeout + 1) + LEASE_MARGIN_SECONDS)


def retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt (exponential backoff, full jitter)."""
    return timedelta(seconds=next_delay(attempts, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS))


def _clock(now: datetime | None) -> Callable[[], datetime]:
    """The current time; with an explicit `now` (tests), `now` plus the time elapsed since the call."""
    if now is None:
        return utcnow
    started = time.monotonic()
    return lambda: now + timedelta(seconds=time.monotonic() - started)


# --- first send -------------------------------------------------------------------------------


def raise_alarm(engine: Engine, settings: Settings, alarm: Alarm, *, company_id: int | None = None,
                recipients: str = "", timeout: float = SEND_TIMEOUT_SECONDS) -> AlarmOutcome | None:
    """Send the alarm unless it was raised before (None then). Never raises for a failing target;
    a failed delivery is retried later by `retry_due_alarms`.

    `recipients`: the company's own e-mail addresses (Company.alarm_recipients), added to
    ALARM_EMAILS.
    """
    stored = Alarm(alarm.key[:MAX_KEY_CHARS], alarm.title[:MAX_TITLE_CHARS], alarm.body, alarm.severity)
    if not _insert_claim(engine, stored, company_id, utcnow() + claim_lease(max_targets(settings), timeout)):
        return None
    delivered, results = _send_and_record(engine, settings, stored, alarm_targets(settings, recipients),
                                          attempts=1, now=utcnow, timeout=timeout)
    return AlarmOutcome(alarm.key, delivered, results)


def send_message(engine: Engine, settings: Settings, keyring: Keyring, message: Alarm, *, to: str, link: str,
                 company_id: int | None = None, timeout: float = SEND_TIMEOUT_SECONDS) -> AlarmOutcome | None:
    """A message to one person by e-mail (never to the alarm targets), raised once and retried like an
    alarm. `link` replaces "{link}" in the body at send time; it is stored encrypted with the row and
    never in clear, and once `forget_link` erased it the message is no longer sent."""
    stored = Alarm(message.key[:MAX_KEY_CHARS], message.title[:MAX_TITLE_CHARS], message.body, message.severity)
    if not _insert_claim(engine, stored, company_id, utcnow() + claim_lease(1, timeout), direct_to=to,
                         keyring=keyring, link=link):
        return None
    return _send_direct(engine, settings, keyring, stored, to, attempts=1, now=utcnow, timeout=timeout)


def forget_link(engine: Engine, key: str) -> None:
    """Erase the link a message carries (the link was used, withdrawn or expired): not sent any more."""
    with unit_of_work(engine) as session:
        row_id = session.exec(select(AlarmSent.id).where(AlarmSent.key == key[:MAX_KEY_CHARS])).first()
        if row_id is not None:
            erase_secret(session, owner_type=MESSAGE_OWNER, owner_id=row_id, purpose=LINK_PURPOSE)


def _insert_claim(engine: Engine, alarm: Alarm, company_id: int | None, lease_until: datetime, *,
                  direct_to: str | None = None, keyring: Keyring | None = None, link: str | None = None) -> bool:
    """Insert the alarm's row as a claimed first attempt; False if the key exists (raised before)."""
    try:
        with unit_of_work(engine) as session:
            if session.exec(select(AlarmSent.id).where(AlarmSent.key == alarm.key)).first() is not None:
                return False
            row = AlarmSent(key=alarm.key, company_id=company_id, title=alarm.title, body=alarm.body,
                            severity=alarm.severity, sent_at=utcnow(), delivered=False, detail=SENDING,
                            attempts=1, next_attempt_at=lease_until, direct_to=direct_to)
            session.add(row)
            if link is not None and keyring is not None:
                session.flush()
                assert row.id is not None
                put_secret(session, keyring, owner_type=MESSAGE_OWNER, owner_id=row.id, purpose=LINK_PURPOSE,
                           value=link)
    except IntegrityError:  # a concurrent process inserted the same key first
        return False
    return True


def _send_direct(engine: Engine, settings: Settings, keyring: Keyring, message: Alarm, to: str, *, attempts: int,
                 now: Callable[[], datetime], timeout: float) -> AlarmOutcome:
    """Fill in the sealed link and send to the one address; a link erased meanwhile stops the message."""
    with unit_of_work(engine) as session:
        row_id = session.exec(select(AlarmSent.id).where(AlarmSent.key == message.key)).first()
        link = None if row_id is None else get_secret(session, keyring, owner_type=MESSAGE_OWNER, owner_id=row_id,
                                                      purpose=LINK_PURPOSE)
    if link is None and "{link}" in message.body:
        with unit_of_work(engine) as session:
            session.exec(update(AlarmSent).where(col(AlarmSent.key) == message.key, col(AlarmSent.delivered).is_(False))
                         .values(next_attempt_at=None, detail=LINK_GONE))
        return AlarmOutcome(message.key, False, [])
    body = message.body.replace("{link}", link or "")
    filled = Alarm(message.key, message.title, body, message.severity)
    delivered, results = _send_and_record(engine, settings, filled, direct_targets(settings, to), attempts=attempts,
                                          now=now, timeout=timeout, no_targets=NO_MAIL_SERVER)
    if delivered:  # sent: the link is not needed any more, so it is not kept
        forget_link(engine, message.key)
    return AlarmOutcome(message.key, delivered, results)


def mark_not_sent(engine: Engine, keys: Sequence[str], detail: str) -> int:
    """Final, undelivered rows that were never sent (no target): say why in `detail` (it should start with
    NOT_SENT_PREFIX) instead of the NO_TARGETS hint. Used by the demo showcase, whose set-up raises alarms
    with the targets off."""
    if not keys:
        return 0
    with unit_of_work(engine) as session:
        result = session.exec(update(AlarmSent).where(
            col(AlarmSent.key).in_(list(keys)), col(AlarmSent.delivered).is_(False),
            col(AlarmSent.next_attempt_at).is_(None), col(AlarmSent.detail) == NO_TARGETS,
        ).values(detail=detail[:MAX_DETAIL_CHARS]))
        return int(result.rowcount)


# --- sending and recording --------------------------------------------------------------------


def _send_and_record(engine: Engine, settings: Settings, alarm: Alarm, targets: Sequence[str], *, attempts: int,
                     now: Callable[[], datetime], timeout: float,
                     no_targets: str = NO_TARGETS) -> tuple[bool, list[DeliveryResult]]:
    """Send outside any transaction, then write the result and the next attempt back (`no_targets`: the
    detail when there was nowhere to send it)."""
    results = send_alarm(alarm, targets, timeout=timeout) if targets else []
    delivered = bool(results) and all(r.ok for r in results)
    next_attempt_at, detail = _after_attempt(results, delivered, attempts, settings, now(), no_targets)
    if not delivered:
        log.warning("alarm %s not delivered (attempt %d): %s", alarm.key, attempts, detail)
    where = [col(AlarmSent.key) == alarm.key]
    if not delivered:  # never undo a delivery, nor the result of a newer claim
        where += [col(AlarmSent.attempts) == attempts, col(AlarmSent.delivered).is_(False)]
    with unit_of_work(engine) as session:
        session.exec(update(AlarmSent).where(*where).values(
            delivered=delivered, detail=detail, next_attempt_at=next_attempt_at))
    return delivered, results


def _after_attempt(results: Sequence[DeliveryResult], delivered: bool, attempts: int, settings: Settings,
                   now: datetime, no_targets: str) -> tuple[datetime | None, str]:
    """(next_attempt_at, detail) after an attempt; next_attempt_at None means final."""
    if not results:
        return None, no_targets  # nothing to retry until targets are configured
    if delivered:
        return None, delivery_detail(results)
    if attempts >= settings.alarm_max_attempts:
        return None, _given_up(delivery_detail(results), attempts)
    return now + retry_delay(attempts), delivery_detail(results)


def delivery_detail(results: Sequence[DeliveryResult]) -> str:
    """Per target its redacted address and "zugestellt" or the error, as stored and shown."""
    return _cut("; ".join(f"{r.target}: {'zugestellt' if r.ok else r.error or 'fehlgeschlagen'}" for r in results))


def _given_up(detail: str, attempts: int) -> str:
    suffix = f" – aufgegeben nach {attempts} {'Versuch' if attempts == 1 else 'Versuchen'}"
    return _cut(detail, MAX_DETAIL_CHARS - len(suffix)) + suffix


def _cut(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- retries ----------------------------------------------------------------------------------


def retry_due_alarms(engine: Engine, settings: Settings, now: datetime | None = None, *,
                     timeout: float = SEND_TIMEOUT_SECONDS, stop: threading.Event | None = None) -> int:
    """Resend undelivered alarms whose next attempt is due; the number of alarms resent.

    Safe with several processes at once: each row is claimed by compare-and-swap before it is sent.
    """
    clock = _clock(now)
    resent = 0
    for row in _due_rows(engine, clock()):
        if stop is not None and stop.is_set():
            break
        if row.attempts >= settings.alarm_max_attempts:  # the last attempt's process died (or the limit fell)
            _give_up_unsent(engine, row, clock())
            continue
        claimed_at = clock()
        if not _reclaim(engine, row, claimed_at, claimed_at + claim_lease(max_targets(settings), timeout)):
            continue  # another process took it, or it changed meanwhile
        alarm = Alarm(row.key, row.title, row.body, cast(Severity, row.severity))
        if row.direct_to:
            _send_direct(engine, settings, get_keyring(), alarm, row.direct_to, attempts=row.attempts + 1, now=clock,
                         timeout=timeout)
        else:
            targets = alarm_targets(settings, _company_recipients(engine, row.company_id))
            _send_and_record(engine, settings, alarm, targets, attempts=row.attempts + 1, now=clock, timeout=timeout)
        resent += 1
    return resent


def _due_rows(engine: Engine, now: datetime) -> list[AlarmSent]:
    with unit_of_work(engine) as session:
        return list(session.exec(select(AlarmSent).where(
            col(AlarmSent.delivered).is_(False), col(AlarmSent.next_attempt_at) <= now)
            .order_by(col(AlarmSent.next_attempt_at)).limit(RETRY_BATCH)).all())


def _still_due(row: AlarmSent, now: datetime) -> list[ColumnElement[bool]]:
    """The compare-and-swap condition: nobody claimed, delivered or rescheduled the row since it was read."""
    return [col(AlarmSent.id) == row.id, col(AlarmSent.attempts) == row.attempts,
            col(AlarmSent.delivered).is_(False), col(AlarmSent.next_attempt_at) <= now]


def _reclaim(engine: Engine, row: AlarmSent, now: datetime, lease_until: datetime) -> bool:
    """Claim a due row for one more attempt (new lease, attempts + 1); True for the one winner."""
    with unit_of_work(engine) as session:
        claimed = session.exec(update(AlarmSent).where(*_still_due(row, now))
                               .values(attempts=row.attempts + 1, next_attempt_at=lease_until)).rowcount
    return claimed == 1


def _give_up_unsent(engine: Engine, row: AlarmSent, now: datetime) -> None:
    """The last allowed attempt was claimed but never recorded (its process died): final."""
    detail = _given_up(INTERRUPTED, row.attempts)
    with unit_of_work(engine) as session:
        changed = session.exec(update(AlarmSent).where(*_still_due(row, now))
                               .values(next_attempt_at=None, detail=detail)).rowcount
    if changed == 1:
        log.warning("alarm %s: %s", row.key, detail)


def _company_recipients(engine: Engine, company_id: int | None) -> str:
    """The company's own recipients; none when it is gone or archived (the global targets remain)."""
    if company_id is None:
        return ""
    with unit_of_work(engine) as session:
        company = session.get(Company, company_id)
    return company.alarm_recipients if company is not None and company.archived_at is None else ""


# --- retention --------------------------------------------------------------------------------


def purge_old_alarms(engine: Engine, settings: Settings, now: datetime, *, batch: int) -> int:
    """Delete up to `batch` final rows whose first attempt is older than ALARM_RETENTION_DAYS.

    Rows still waiting for a retry (or being sent) are kept. A condition that outlasts the
    retention is reported once more afterwards (its key reappears), which is acceptable.
    """
    cutoff = now - timedelta(days=settings.alarm_retention_days)
    old = [col(AlarmSent.sent_at) < cutoff, col(AlarmSent.next_attempt_at).is_(None)]
    with unit_of_work(engine) as session:
        ids = list(session.exec(select(AlarmSent.id).where(*old).order_by(col(AlarmSent.id)).limit(batch)).all())
        if not ids:
            return 0
        result = session.exec(delete(AlarmSent).where(col(AlarmSent.id).in_(ids), *old))
        session.exec(delete(StoredSecret).where(  # a purged message's sealed link, if it still had one
            col(StoredSecret.owner_type) == MESSAGE_OWNER, col(StoredSecret.owner_id).in_(ids)))
        return result.rowcount or 0
