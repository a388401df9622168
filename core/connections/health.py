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
from core.connections.access import AccessToken, TokenUnavailable, get_valid_token
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import Company, Connection, Provider, utcnow
from core.providers.datev import DatevApiError, get_client
from core.providers.http import CallContext
from core.providers.lexware import LexwareApiError, get_profile


class Health(StrEnum):
    active = "aktiv"
    expiring = "läuft bald ab"
    expired = "abgelaufen"
    invalid = "ungültig"
    revoked = "widerrufen"
    missing = "fehlt"


USABLE = frozenset({Health.active, Health.expiring})


def evaluate_health(connection: Connection | None, now: datetime, warning_days: int) -> Health:
    """The one place that turns a connection's facts into its health."""
    if connection is None:
        return Health.missing
    if not connection.has_token:
        return Health.revoked if connection.deleted_at is not None else Health.missing
    if connection.invalid_at is not None:
        return Health.invalid
    if connection.refresh_expires_at is not None:
        if connection.refresh_expires_at <= now:
            return Health.expired
        if connection.refresh_expires_at - now <= timedelta(days=warning_days):
            return Health.expiring
    return Health.active


@dataclass(frozen=True)
class TokenCard:
    company: Company
    provider: Provider
    connection: Connection | None
    health: Health


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


@dataclass(frozen=True)
class TestResult:
    ok: bool
    message: str
    help_uri: str | None = None


def run_test(engine: Engine, settings: Settings, keyring: Keyring, *, connection_id: int, actor: str) -> TestResult:
    """The connection test: DATEV `GET /clients/{id}`, Lexware `GET /v1/profile`. Stores the result."""
    with unit_of_work(engine) as session:
        row = session.get(Connection, connection_id)
        if row is None:
            raise UserFacingError("Diese Verbindung gibt es nicht (mehr).")
        company = session.get(Company, row.company_id)
        session.expunge_all()
    assert company is not None
    ctx = CallContext(provider=row.provider, purpose="connection_test", company_id=row.company_id,
                      connection_id=row.id)
    result = _test_call(engine, settings, keyring, row, company, ctx)
    store.record_test(engine, connection_id, ok=result.ok, message=result.message, actor=actor,
                      token_fingerprint=row.token_fingerprint)
    return result


def _test_call(engine: Engine, settings: Settings, keyring: Keyring, row: Connection, company: Company,
               ctx: CallContext) -> TestResult:
    assert row.id is not None
    try:
        token = get_valid_token(engine, row.id, settings=settings, keyring=keyring)
    except TokenUnavailable as exc:
        return TestResult(False, exc.message)
    if row.provider == Provider.lexware.value:
        return _test_lexware(engine, settings, row, token, ctx)
    client_id = row.bound_client or company.datev_client_id or ""
    try:
        client = get_client(engine, ctx, settings, token.value, client_id)
    except DatevApiError as exc:
        if exc.status == 401:
            try:  # one refresh, then once more (the access token may have been invalidated early)
                token = get_valid_token(engine, row.id, settings=settings, keyring=keyring,
                                        stale_version=token.version)
                client = get_client(engine, ctx, settings, token.value, client_id)
            except TokenUnavailable as again:
                return TestResult(False, again.message)
            except DatevApiError as again:
                return TestResult(False, f"DATEV: {again.summary()}", again.help_uri)
        else:
            return TestResult(False, f"DATEV: {exc.summary()}", exc.help_uri)
    name = client.get("name") or client_id
    if client.get("is_document_management_available") is False:
        return TestResult(False, f"Zugriff auf Mandant {client_id} ({name}), aber Belege online ist nicht verfügbar.")
    return TestResult(True, f"Zugriff auf Mandant {client_id} ({name}) bestätigt.")


def _test_lexware(engine: Engine, settings: Settings, row: Connection, token: AccessToken,
                  ctx: CallContext) -> TestResult:
    assert row.id is not None
    try:
        profile = get_profile(engine, ctx, settings, token.value)
    except LexwareApiError as exc:
        if exc.status == 401:  # the key was revoked or has run out at Lexware
            store.mark_invalid(engine, row.id, expected_version=token.version,
                               reason="Lexware Office lehnt den API-Schlüssel ab (401).")
        return TestResult(False, f"Lexware Office: {exc.summary()}")
    return TestResult(True, f"Verbunden mit „{profile.get('companyName') or profile.get('organizationId')}“.")
