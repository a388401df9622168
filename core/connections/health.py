"""Connections as the token screen (and later the overview and the scheduler) see them:
health, the test call, deleting with revoke, Lexware API keys, and the card view model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from dateutil.relativedelta import relativedelta
from sqlalchemy import Engine
from sqlmodel import col, select

from core.connections.access import (
    ACCESS_TOKEN,
    API_KEY,
    OWNER_TYPE,
    REFRESH_TOKEN,
    TokenUnavailable,
    get_valid_token,
    mark_invalid,
)
from core.platform import audit
from core.platform.config import Settings
from core.platform.crypto import Keyring, fingerprint
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError, ValidationFailed
from core.platform.models import Company, Connection, ConnectionKind, Interface, Provider, utcnow
from core.platform.secret_store import erase_secret, get_secret, put_secret
from core.providers.datev import DatevApiError, get_client
from core.providers.datev_oidc import ProviderRejected, ProviderUnavailable, discover, revoke
from core.providers.http import CallContext
from core.providers.lexware import LexwareApiError, get_profile

DATEV_CONNECTED_APPS_URL = "https://apps.datev.de/tokrevui"


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


def provider_for(company: Company) -> Provider | None:
    return {Interface.datev.value: Provider.datev, Interface.lexware.value: Provider.lexware}.get(company.interface)


def long_term_connection(engine: Engine, company_id: int, provider: Provider) -> Connection | None:
    with unit_of_work(engine) as session:
        row = session.exec(select(Connection).where(
            Connection.company_id == company_id, Connection.provider == provider.value,
            Connection.slot == ConnectionKind.long_term.value)).first()
        if row is not None:
            session.expunge(row)
        return row


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
        connections = {(c.company_id, c.provider): c for c in session.exec(
            select(Connection).where(Connection.slot == ConnectionKind.long_term.value)).all()}
        cards = []
        for company in companies:
            provider = provider_for(company)
            if provider is None:
                continue
            connection = connections.get((company.id, provider.value))
            cards.append(TokenCard(company, provider, connection,
                                   evaluate_health(connection, now, settings.token_expiry_warning_days)))
        session.expunge_all()
        return cards


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
    ctx = CallContext(provider=row.provider, purpose="connection_test", company_id=row.company_id,
                      connection_id=row.id)
    result = _test_call(engine, settings, keyring, row, company, ctx)  # type: ignore[arg-type]
    now = utcnow()
    with unit_of_work(engine) as session:
        stored = session.get(Connection, connection_id)
        if stored is not None:
            stored.last_test_at, stored.last_test_ok, stored.last_test_message = now, result.ok, result.message[:500]
            session.add(stored)
        audit.record(session, actor=actor, action="token.test", entity_type="connection", entity_id=connection_id,
                     after={"ok": result.ok, "token_fingerprint": row.token_fingerprint}, detail=result.message)
    return result


def _test_call(engine: Engine, settings: Settings, keyring: Keyring, row: Connection, company: Company,
               ctx: CallContext) -> TestResult:
    try:
        token = get_valid_token(engine, row.id, settings=settings, keyring=keyring)  # type: ignore[arg-type]
    except TokenUnavailable as exc:
        return TestResult(False, exc.message)
    if row.provider == Provider.lexware.value:
        try:
            profile = get_profile(engine, ctx, settings, token.value)
        except LexwareApiError as exc:
            if exc.status == 401:  # the key was revoked or has run out at Lexware
                mark_invalid(engine, row.id, expected_version=token.version,  # type: ignore[arg-type]
                             reason="Lexware Office lehnt den API-Schlüssel ab (401).")
            return TestResult(False, f"Lexware Office: {exc.summary()}")
        return TestResult(True, f"Verbunden mit „{profile.get('companyName') or profile.get('organizationId')}“.")
    client_id = row.bound_client or company.datev_client_id
    try:
        client = get_client(engine, ctx, settings, token.value, client_id)  # type: ignore[arg-type]
    except DatevApiError as exc:
        if exc.status == 401:
            try:  # one refresh, then once more (the access token may have been invalidated early)
                token = get_valid_token(engine, row.id, settings=settings, keyring=keyring,  # type: ignore[arg-type]
                                        stale_version=token.version)
                client = get_client(engine, ctx, settings, token.value, client_id)  # type: ignore[arg-type]
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


@dataclass(frozen=True)
class DeleteResult:
    revoked: bool
    message: str


def delete_token(engine: Engine, settings: Settings, keyring: Keyring, *, connection_id: int, actor: str,
                 reason: str = "") -> DeleteResult:
    """"Langzeittoken löschen": revoke at the provider, then erase locally, keeping the history.

    If the revoke call fails the secret is erased anyway and the result says so, pointing to
    DATEV's "Verbundene Anwendungen".
    """
    with unit_of_work(engine) as session:
        row = session.get(Connection, connection_id)
        if row is None or not row.has_token:
            raise UserFacingError("Für diese Verbindung ist kein Token hinterlegt.")
        refresh_token = get_secret(session, keyring, owner_type=OWNER_TYPE, owner_id=connection_id, purpose=REFRESH_TOKEN)
        session.expunge(row)
    revoked, revoke_error = True, ""
    if row.provider == Provider.datev.value and refresh_token:
        ctx = CallContext(provider=row.provider, purpose="revoke", company_id=row.company_id, connection_id=row.id)
        try:
            revoke(engine, ctx, discover(engine, settings), settings, token=refresh_token, hint="refresh_token")
        except (ProviderRejected, ProviderUnavailable) as exc:
            revoked, revoke_error = False, str(exc)[:200]
    now = utcnow()
    with unit_of_work(engine) as session:
        stored = session.get(Connection, connection_id)
        assert stored is not None
        for purpose in (REFRESH_TOKEN, ACCESS_TOKEN, API_KEY):
            erase_secret(session, owner_type=OWNER_TYPE, owner_id=connection_id, purpose=purpose)
        stored.has_token = False
        stored.version += 1  # a refresh in flight must not write its token back
        stored.deleted_at, stored.deleted_by = now, actor
        stored.refresh_lease_until = stored.refresh_lease_owner = None
        stored.access_expires_at = None
        stored.updated_at = now
        session.add(stored)
        audit.record(session, actor=actor, action="token.deleted", entity_type="connection", entity_id=connection_id,
                     before={"token_fingerprint": row.token_fingerprint}, after={"revoked_at_provider": revoked},
                     detail=reason or None)
        if not revoked:
            audit.record(session, actor=actor, action="token.revoke_failed", entity_type="connection",
                         entity_id=connection_id, detail=revoke_error)
    if revoked:
        return DeleteResult(True, "Token gelöscht und beim Anbieter widerrufen.")
    return DeleteResult(False, "Token lokal gelöscht, aber der Widerruf beim Anbieter ist fehlgeschlagen "
                               f"({revoke_error}). Bitte den Zugriff unter „Verbundene Anwendungen“ bei DATEV "
                               f"({DATEV_CONNECTED_APPS_URL}) selbst entfernen.")


def default_key_expiry(settings: Settings, today: date) -> date:
    return today + relativedelta(months=settings.lexware_key_validity_months)


def store_lexware_key(engine: Engine, settings: Settings, keyring: Keyring, *, company_id: int, api_key: str,
                      valid_until: date | None, actor: str) -> TestResult:
    """Store a pasted Lexware API key (encrypted) after the profile call accepted it."""
    key = api_key.strip()
    errors = {}
    if not key:
        errors["api_key"] = "Bitte den API-Schlüssel einfügen."
    elif len(key) > 500 or any(ch.isspace() for ch in key):
        errors["api_key"] = "Das sieht nicht wie ein Lexware-API-Schlüssel aus (Leerzeichen oder zu lang)."
    today = utcnow().date()
    valid_until = valid_until or default_key_expiry(settings, today)
    if valid_until <= today:
        errors["valid_until"] = "Das Ablaufdatum muss in der Zukunft liegen."
    elif valid_until > today + relativedelta(months=24):
        errors["valid_until"] = "Lexware-API-Schlüssel gelten höchstens 24 Monate."
    if errors:
        raise ValidationFailed(errors)
    with unit_of_work(engine) as session:
        company = session.get(Company, company_id)
        if company is None or company.archived_at is not None or company.interface != Interface.lexware.value:
            raise UserFacingError("Für dieses Unternehmen ist Lexware Office nicht als Schnittstelle eingerichtet.")
    ctx = CallContext(provider=Provider.lexware.value, purpose="connection_test", company_id=company_id)
    try:
        profile = get_profile(engine, ctx, settings, key)
    except LexwareApiError as exc:
        if exc.status == 401:
            raise ValidationFailed({"api_key": "Lexware Office lehnt diesen API-Schlüssel ab."}) from None
        raise UserFacingError(f"Lexware Office ist nicht erreichbar ({exc.summary()}); nichts gespeichert.") from None
    organisation = str(profile.get("companyName") or profile.get("organizationId") or "")[:200] or None
    now = utcnow()
    with unit_of_work(engine) as session:
        row = session.exec(select(Connection).where(
            Connection.company_id == company_id, Connection.provider == Provider.lexware.value,
            Connection.slot == ConnectionKind.long_term.value)).first()
        before = None
        if row is None:
            row = Connection(company_id=company_id, provider=Provider.lexware.value)
            session.add(row)
            session.flush()
        else:
            before = {"token_fingerprint": row.token_fingerprint}
        put_secret(session, keyring, owner_type=OWNER_TYPE, owner_id=row.id, purpose=API_KEY, value=key)  # type: ignore[arg-type]
        row.has_token, row.version = True, row.version + 1
        row.token_fingerprint = fingerprint(key)
        row.refresh_expires_at = datetime.combine(valid_until, time(23, 59), tzinfo=now.tzinfo)
        row.offline_granted, row.grantor_name = True, organisation
        row.requested_at, row.requested_by = now, actor
        row.invalid_at = row.invalid_reason = row.deleted_at = row.deleted_by = None
        message = f"Verbunden mit „{organisation}“." if organisation else "Profilabfrage erfolgreich."
        row.last_test_at, row.last_test_ok, row.last_test_message = now, True, message
        row.updated_at = now
        session.add(row)
        audit.record(session, actor=actor, action="token.requested", entity_type="connection", entity_id=row.id,
                     before=before, after={"company_id": company_id, "provider": "lexware",
                                           "token_fingerprint": row.token_fingerprint,
                                           "refresh_expires_at": row.refresh_expires_at})
    return TestResult(True, message)
