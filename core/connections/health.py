"""Connection health as every screen and the scheduler see it: the state of a company's token, the
card view model, and the connection test call.

`evaluate_health` is the one place that turns a connection's facts into its state; the token
screen, the transfer engine's readiness check and the scheduler's alarms all call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Engine
from sqlmodel import col, select

from core.connections import store
from core.platform.config import Settings
from core.platform.db import unit_of_work
from core.platform.models import Company, Connection, Provider, utcnow


class Health(StrEnum):
    active = "aktiv"
    expiring = "läuft bald ab"
    unclear = "Erneuerung unklar"  # a refresh's answer was lost; decided at the next use (core.connections.access)
    expired = "abgelaufen"
    invalid = "ungültig"
    revoked = "widerrufen"
    missing = "fehlt"


# Worth trying to use: the token works, or (unclear) its next use decides whether it still does.
USABLE = frozenset({Health.active, Health.expiring, Health.unclear})


class Binding(StrEnum):
    """Which DATEV data set a long-term token is bound to, compared with the company's own."""

    bound = "gebunden"  # to the company's own data set
    unbound = "nicht gebunden"  # the provider did not grant a datev:iam:client scope
    foreign = "fremder Datenbestand"  # another data set (refused at login; possible after a number change)
    not_applicable = "–"  # no DATEV token


def evaluate_health(connection: Connection | None, now: datetime, warning_days: int) -> Health:
    """The one place that turns a connection's facts into its health."""
    if connection is None:
        return Health.missing
    if not connection.has_token:
        return Health.revoked if connection.deleted_at is not None else Health.missing
    if connection.invalid_at is not None:
        return Health.invalid
    if connection.refresh_expires_at is not None and connection.refresh_expires_at <= now:
        return Health.expired
    if connection.refresh_unclear_since is not None:
        return Health.unclear
    if connection.refresh_expires_at is not None:
        if connection.refresh_expires_at <= now:
            return Health.expired
        if connection.refresh_expires_at - now <= timedelta(days=warning_days):
            return Health.expiring
    return Health.active


def datev_data_set(company: Company) -> str:
    """The DATEV data set (Berater-Nr.-Mandanten-Nr.) every call for a company addresses: always the company's
    own, never the one a token names (a token bound to another is not used at all: transfers.readiness's
    `waiting_reason`). Uploads, the dry run and the connection test use it."""
    return company.datev_client_id or ""


def evaluate_binding(company: Company, connection: Connection | None) -> Binding:
    """The one place that compares the token's bound data set with the company's own."""
    if (connection is None or not connection.has_token or connection.provider != Provider.datev.value
            or connection.kind != "long_term"):
        return Binding.not_applicable
    if connection.bound_client is None:
        return Binding.unbound
    return Binding.bound if connection.bound_client == company.datev_client_id else Binding.foreign


@dataclass(frozen=True)
class TokenCard:
    company: Company
    provider: Provider
    connection: Connection | None
    health: Health

    @property
    def binding(self) -> Binding:
        return evaluate_binding(self.company, self.connection)


def token_cards(engine: Engine, settings: Settings, *, now: datetime | None = None) -> list[TokenCard]:
    """One card per active company with an interface, with its long-term connection and health."""
    now = now or utcnow()
    with unit_of_work(engine) as session:
        companies = session.exec(select(Company).where(col(Company.archived_at).is_(None))
                                 .order_by(col(Company.name))).all()
        session.expunge_all()
    connections = store.in_slot(engine, store.LONG_TERM_SLOT)
    cards = []
    for company in companies:
        provider = company.provider
        if provider is None:
            continue
        assert company.id is not None
        connection = connections.get((company.id, provider.value))
        cards.append(TokenCard(company, provider, connection,
                               evaluate_health(connection, now, settings.token_expiry_warning_days)))
    return cards


def card_for(engine: Engine, settings: Settings, company: Company, provider: Provider) -> TokenCard:
    """The card of one company (its long-term connection, re-read now)."""
    assert company.id is not None
    connection = store.find(engine, company.id, provider)
    return TokenCard(company, provider, connection,
                     evaluate_health(connection, utcnow(), settings.token_expiry_warning_days))
