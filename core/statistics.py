"""The Übersicht's charts as plain data: the renewal plan (long-term tokens expiring per month, which
companies must re-scan the QR code when), transfers per day, and the failure reasons. Months and days
are those of the display time zone (Europe/Berlin), labelled in German; the page only draws them.

Speed: the renewal plan reads the long-term connections with a token (one row per company); transfers per
day are one grouped count per day over ix_attempt_outcome_started (30 small range queries, each exact
for a day of 23 or 25 hours); the failure reasons one grouped count over the same index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, func
from sqlmodel import col, select

from core.companies import INTERFACE_LABELS
from core.connections import store
from core.platform.db import unit_of_work
from core.platform.models import Company, Connection, Interface, TransferAttempt, utcnow
from core.platform.timefmt import day_start_utc, local_day
from core.providers.outcome import Outcome

MONTHS = ("Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sep.", "Okt.", "Nov.", "Dez.")
# The outcomes a chart shows, by their German names (retries are not an end state: not shown).
DAY_OUTCOMES = {Outcome.delivered.value: "übertragen", Outcome.failed.value: "fehlgeschlagen",
                Outcome.waiting.value: "fehlgeschlagen", Outcome.unresolved.value: "ungeklärt"}
FAILED = (Outcome.failed.value, Outcome.waiting.value)
# This month and the next 24: a two-year DATEV token requested today expires in the plan's last month.
PLAN_MONTHS = 25


def month_label(month: date) -> str:
    return f"{MONTHS[month.month - 1]} {month.year}"


def _add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class RenewalBar:
    month: date  # the first day of the month (display time zone)
    label: str  # "März 2027"
    interface: str  # German label
    count: int
    companies: tuple[str, ...]  # by name


def renewal_plan(engine: Engine, *, months: int = PLAN_MONTHS, now: datetime | None = None) -> list[RenewalBar]:
    """Long-term tokens and API keys expiring per month from this month on, by interface, with the companies
    behind each bar (active companies only; a token already expired is not in the plan, it is on the tiles)."""
    now = now or utcnow()
    first = local_day(now).replace(day=1)
    end = day_start_utc(_add_months(first, months))
    with unit_of_work(engine) as session:
        rows = session.exec(
            select(Company.name, Company.interface, Connection.refresh_expires_at)
            .join(Connection, col(Connection.company_id) == col(Company.id))
            .where(col(Connection.slot) == store.LONG_TERM_SLOT, col(Connection.has_token).is_(True),
                   col(Connection.invalid_at).is_(None), col(Company.archived_at).is_(None),
                   col(Connection.refresh_expires_at) > now, col(Connection.refresh_expires_at) < end)
        ).all()
    groups: dict[tuple[date, str], list[str]] = {}
    for name, interface, expires_at in rows:
        if expires_at is None:
            continue
        month = local_day(expires_at).replace(day=1)
        label = INTERFACE_LABELS.get(Interface(interface), interface)
        groups.setdefault((month, label), []).append(name)
    return [RenewalBar(month, month_label(month), interface, len(names), tuple(sorted(names)))
            for (month, interface), names in sorted(groups.items())]


def plan_months(*, months: int = PLAN_MONTHS, now: datetime | None = None) -> list[str]:
    """The plan's month labels in order (the chart's axis shows every month, also the empty ones)."""
    first = local_day(now or utcnow()).replace(day=1)
    return [month_label(_add_months(first, i)) for i in range(months)]


@dataclass(frozen=True)
class DayCount:
    day: date
    label: str  # "29.11."
    outcome: str  # übertragen | fehlgeschlagen | ungeklärt
    count: int


def day_labels(*, days: int = 30, now: datetime | None = None) -> list[str]:
    """The x axis of the transfers chart: every local day of the last `days` (today included), oldest
    first, so a day without any transfer shows as a gap instead of vanishing."""
    today = local_day(now or utcnow())
    return [(today - timedelta(days=offset)).strftime("%d.%m.") for offset in range(days - 1, -1, -1)]


def transfers_per_day(engine: Engine, *, days: int = 30, now: datetime | None = None) -> list[DayCount]:
    """Finished transfer attempts per local day of the last `days` days (today included), by outcome."""
    today = local_day(now or utcnow())
    result: list[DayCount] = []
    with unit_of_work(engine) as session:
        for offset in range(days - 1, -1, -1):
            day = today - timedelta(days=offset)
            counts: dict[str, int] = {}
            rows = session.exec(
                select(TransferAttempt.outcome, func.count())
                .where(col(TransferAttempt.outcome).in_(list(DAY_OUTCOMES)),
                       col(TransferAttempt.started_at) >= day_start_utc(day),
                       col(TransferAttempt.started_at) < day_start_utc(day + timedelta(days=1)))
                .group_by(col(TransferAttempt.outcome))).all()
            for outcome, n in rows:
                counts[DAY_OUTCOMES[outcome]] = counts.get(DAY_OUTCOMES[outcome], 0) + n
            result.extend(DayCount(day, day.strftime("%d.%m."), outcome, n) for outcome, n in sorted(counts.items()))
    return result


@dataclass(frozen=True)
class FailureReason:
    reason: str
    count: int


def failure_reasons(engine: Engine, *, days: int = 30, limit: int = 10, now: datetime | None = None) -> list[FailureReason]:
    """The most frequent messages of failed attempts in the last `days` days (most frequent first)."""
    since = day_start_utc(local_day(now or utcnow()) - timedelta(days=days - 1))
    with unit_of_work(engine) as session:
        rows = session.exec(
            select(TransferAttempt.error_code, TransferAttempt.error_text, func.count())
            .where(col(TransferAttempt.outcome).in_(FAILED), col(TransferAttempt.started_at) >= since)
            .group_by(col(TransferAttempt.error_code), col(TransferAttempt.error_text))
            .order_by(func.count().desc()).limit(limit)).all()
    return [FailureReason(text or code or "ohne Meldung", n) for code, text, n in rows]

