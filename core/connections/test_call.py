"""The connection test ("Verbindung testen", and after every new token): one cheap call that shows the
token works for the company's own data set. It stores the result, and a token found broken raises
its alarm now (not an hour later in the token care)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from core.alarms.rules import raise_alarms_for
from core.connections import store
from core.connections.access import AccessToken, TokenUnavailable, get_valid_token
from core.connections.health import datev_data_set
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import Company, Connection, Provider, Role
from core.providers.datev import DatevApiError, get_client
from core.providers.http import CallContext
from core.providers.lexware import LexwareApiError, get_profile
from core.users import Actor, authorized


@dataclass(frozen=True)
class TestResult:
    ok: bool
    message: str
    help_uri: str | None = None


def run_test(engine: Engine, settings: Settings, keyring: Keyring, *, connection_id: int, actor: Actor) -> TestResult:
    """An admin's "Verbindung testen": DATEV `GET /clients/{id}`, Lexware `GET /v1/profile`. Stores the result."""
    authorized(engine, actor, Role.admin)
    return test_and_record(engine, settings, keyring, connection_id=connection_id, actor=actor.name)


def test_and_record(engine: Engine, settings: Settings, keyring: Keyring, *, connection_id: int,
                    actor: str) -> TestResult:
    """`run_test` after the permission check (also the test right after a new token was stored)."""
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
    if not result.ok:
        raise_alarms_for(engine, settings, row.company_id)  # a broken token is reported when it is found
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
    client_id = datev_data_set(company)  # always the company's own data set, never the token's word
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
                if again.status == 401:
                    return TestResult(False, "Token widerrufen oder ungültig: DATEV lehnt auch das erneuerte "
                                             "Zugriffstoken ab (401).")
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
