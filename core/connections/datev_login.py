"""Requesting a DATEV token: start the login, and finish it when DATEV sends the user back.

The return from DATEV opens a new Streamlit session, so the pending login lives in the database
(`PendingAuthorization`): keyed by sha256(state), with the PKCE verifier and the nonce encrypted,
the company, the kind (Langzeittoken or one-off login), the user who started it, 10 minutes to
live, single use. Every failure returns a German message and stores nothing.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select

from core import users
from core.connections import store
from core.connections.disconnect import delete_token
from core.connections.health import run_test
from core.platform import audit
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import (
    AppUser,
    Company,
    ConnectionKind,
    Interface,
    PendingAuthorization,
    Provider,
    Role,
    StoredSecret,
    utcnow,
)
from core.platform.secret_store import erase_secret, get_secret, put_secret
from core.providers.datev_oidc import (
    DatevEndpoints,
    ProviderRejected,
    ProviderUnavailable,
    TokenResponse,
    authorization_url,
    discover,
    exchange_code,
    revoke,
    userinfo,
    verify_id_token,
)
from core.providers.http import CallContext

PENDING_OWNER = "pending_authorization"  # StoredSecret.owner_type of a pending login's verifier and nonce
PENDING_PURPOSES = ("pkce_verifier", "nonce")
OFFLINE_SCOPE = "offline_access"
# A refresh token that lives less than this is not a long-term token (DATEV's is about 2 years).
LONG_TERM_MIN_SECONDS = 300 * 24 * 3600
BATCH = 500


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)  # 64 characters from the unreserved set (RFC 7636)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def requested_scopes(settings: Settings, company: Company, kind: ConnectionKind) -> list[str]:
    scopes = settings.datev_scopes.split()
    if kind == ConnectionKind.long_term:
        scopes += [OFFLINE_SCOPE, f"datev:iam:client:{company.datev_client_id}"]
    return scopes


def _datev_company(session: Session, company_id: int) -> Company:
    company = session.get(Company, company_id)
    if company is None or company.archived_at is not None:
        raise UserFacingError("Dieses Unternehmen gibt es nicht oder es ist archiviert.")
    if company.interface != Interface.datev.value or company.datev_client_id is None:
        raise UserFacingError("Für dieses Unternehmen ist DATEV mit Berater-Nr. und Mandanten-Nr. nicht eingerichtet.")
    return company


def start_login(engine: Engine, settings: Settings, keyring: Keyring, *, company_id: int, user: AppUser,
                kind: ConnectionKind) -> str:
    """Create the pending login and return the DATEV authorization URL to send the browser to.

    Raises only UserFacingError (no permission, no DATEV company, DATEV unreachable).
    """
    needed = Role.admin if kind == ConnectionKind.long_term else Role.operator
    if not users.has_role(user, needed):
        raise UserFacingError("Dafür fehlt Ihnen die Berechtigung.")
    with unit_of_work(engine) as session:
        company = _datev_company(session, company_id)
        session.expunge(company)
    if kind == ConnectionKind.long_term and settings.datev_revoke_before_new_login:
        existing = store.find(engine, company_id, Provider.datev)
        if existing is not None and existing.id is not None and existing.has_token:
            delete_token(engine, settings, keyring, connection_id=existing.id, actor=user.email,
                         reason="vor neuer Anmeldung (eine gültige Verbindung je Mandant)")
    try:
        endpoints = discover(engine, settings)
    except ProviderUnavailable as exc:
        raise UserFacingError(f"DATEV ist gerade nicht erreichbar ({exc}). Bitte später erneut versuchen.") from None
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier, challenge = pkce_pair()
    _create_pending(engine, keyring, settings, company_id=company_id, kind=kind, user=user, state=state,
                    verifier=verifier, nonce=nonce)
    return authorization_url(endpoints, settings, scopes=requested_scopes(settings, company, kind), state=state,
                             nonce=nonce, code_challenge=challenge, offline=kind == ConnectionKind.long_term)


# --- pending logins: created here, claimed once by the callback, purged by housekeeping ----------------


def _create_pending(engine: Engine, keyring: Keyring, settings: Settings, *, company_id: int, kind: ConnectionKind,
                    user: AppUser, state: str, verifier: str, nonce: str) -> None:
    assert user.id is not None
    now = utcnow()
    with unit_of_work(engine) as session:  # expired pending logins (and their secrets) go in housekeeping
        pending = PendingAuthorization(
            state_hash=state_hash(state), company_id=company_id, provider=Provider.datev.value, kind=kind.value,
            user_id=user.id, redirect_uri=settings.datev_callback_uri,
            expires_at=now + timedelta(minutes=settings.pending_authorization_minutes),
        )
        session.add(pending)
        session.flush()
        assert pending.id is not None
        for purpose, value in zip(PENDING_PURPOSES, (verifier, nonce), strict=True):
            put_secret(session, keyring, owner_type=PENDING_OWNER, owner_id=pending.id, purpose=purpose, value=value)


@dataclass(frozen=True)
class _Claimed:
    pending: PendingAuthorization
    verifier: str
    nonce: str


def _claim(engine: Engine, keyring: Keyring, state: str) -> _Claimed | None:
    """Atomically take the pending login for `state` (single use): delete it and return it."""
    with unit_of_work(engine) as session:
        pending = session.exec(
            select(PendingAuthorization).where(PendingAuthorization.state_hash == state_hash(state))
        ).first()
        if pending is None or pending.id is None:
            return None
        removed = session.exec(
            delete(PendingAuthorization).where(col(PendingAuthorization.id) == pending.id)
        ).rowcount
        if removed != 1:  # another request claimed it first (PostgreSQL, concurrent callbacks)
            return None
        values = {}
        for purpose in PENDING_PURPOSES:
            values[purpose] = get_secret(session, keyring, owner_type=PENDING_OWNER, owner_id=pending.id,
                                         purpose=purpose) or ""
            erase_secret(session, owner_type=PENDING_OWNER, owner_id=pending.id, purpose=purpose)
        session.expunge(pending)
        return _Claimed(pending, values["pkce_verifier"], values["nonce"])


def purge_expired_pending_logins(engine: Engine, now: datetime) -> int:
    """Delete started DATEV logins past their 10 minutes, with their encrypted verifier and nonce;
    also sweeps verifier/nonce rows whose pending login is gone."""
    with unit_of_work(engine) as session:
        ids = [i for i in session.exec(select(PendingAuthorization.id).where(
            col(PendingAuthorization.expires_at) < now).limit(BATCH)).all() if i is not None]
        for pending_id in ids:
            for purpose in PENDING_PURPOSES:
                erase_secret(session, owner_type=PENDING_OWNER, owner_id=pending_id, purpose=purpose)
        deleted = session.exec(delete(PendingAuthorization).where(
            col(PendingAuthorization.id).in_(ids), col(PendingAuthorization.expires_at) < now)).rowcount if ids else 0
        session.exec(delete(StoredSecret).where(
            col(StoredSecret.owner_type) == PENDING_OWNER,
            col(StoredSecret.owner_id).not_in(select(PendingAuthorization.id))))
    return deleted or 0


# --- the callback -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackOutcome:
    ok: bool
    message: str
    company_id: int | None = None
    kind: str | None = None
    warning: str | None = None


def _fail(message: str, company_id: int | None = None) -> CallbackOutcome:
    return CallbackOutcome(ok=False, message=message + " Es wurde nichts gespeichert.", company_id=company_id)


def finish_login(engine: Engine, settings: Settings, keyring: Keyring, *, params: dict[str, str],
                 user: AppUser) -> CallbackOutcome:
    """Handle DATEV's redirect back (`code`/`state` or `error`). Nothing is stored on any failure."""
    state = params.get("state", "")
    if not state:
        return _fail("Die Rückmeldung von DATEV enthält keinen state-Parameter.")
    claimed = _claim(engine, keyring, state)
    if claimed is None:
        return _fail("Diese Anmeldung ist unbekannt oder wurde bereits verwendet.")
    pending = claimed.pending
    company_id = pending.company_id
    if pending.expires_at <= utcnow():
        return _fail("Die Anmeldung ist abgelaufen (länger als "
                     f"{settings.pending_authorization_minutes} Minuten). Bitte erneut anfordern.", company_id)
    if pending.user_id != user.id:
        return _fail("Diese Anmeldung wurde von einem anderen Benutzer gestartet.", company_id)
    if params.get("error"):
        if params["error"] == "access_denied":
            return _fail("Die Zustimmung wurde bei DATEV abgelehnt.", company_id)
        description = params.get("error_description", "")[:200]
        return _fail(f"DATEV meldet einen Fehler: {params['error'][:60]}"
                     + (f" ({description})" if description else "") + ".", company_id)
    code = params.get("code", "")
    if not code:
        return _fail("Die Rückmeldung von DATEV enthält keinen Code.", company_id)

    kind = ConnectionKind(pending.kind)
    ctx = CallContext(provider=Provider.datev.value, purpose="code_exchange", company_id=company_id)
    try:
        endpoints = discover(engine, settings)
        tokens = exchange_code(engine, ctx, endpoints, settings, code=code, code_verifier=claimed.verifier)
    except ProviderRejected as exc:
        return _fail(f"DATEV hat den Anmeldecode abgelehnt ({exc.error}).", company_id)
    except ProviderUnavailable as exc:
        return _fail(f"DATEV war nicht erreichbar ({exc}).", company_id)

    try:
        if not tokens.id_token:
            raise ProviderRejected("missing_id_token")
        claims = verify_id_token(engine, ctx.with_purpose("id_token"), endpoints, settings,
                                 id_token=tokens.id_token, nonce=claimed.nonce)
    except (ProviderRejected, ProviderUnavailable) as exc:
        _revoke_quietly(engine, ctx, endpoints, settings, tokens)
        detail = getattr(exc, "error", "")
        return _fail(f"Die Sicherheitsprüfung der DATEV-Antwort ist fehlgeschlagen ({detail or exc}).", company_id)
    if not tokens.refresh_token:
        _revoke_quietly(engine, ctx, endpoints, settings, tokens)
        return _fail("DATEV hat kein Refresh-Token geliefert.", company_id)

    grantor_name = _grantor_name(engine, ctx, endpoints, settings, tokens, claims)
    offline = _is_long_term(tokens)
    warning = None
    if kind == ConnectionKind.long_term and not offline:
        warning = ("DATEV hat keinen dauerhaften Zugriff erteilt: Dies ist kein Langzeittoken, es gilt nur "
                   "wenige Stunden. Bitte erneut anfordern und „Dauerhaften Zugriff“ bestätigen.")
    replaced = store.store_login(engine, keyring, company_id=company_id, kind=kind, user=user, tokens=tokens,
                                 claims=claims, grantor_name=grantor_name, offline=offline,
                                 bound_client=_bound_client(tokens.scope))
    if replaced:
        _revoke_replaced(engine, settings, ctx, endpoints, company_id, replaced, user)

    if kind == ConnectionKind.long_term:
        connection = store.find(engine, company_id, Provider.datev)
        assert connection is not None and connection.id is not None
        test = run_test(engine, settings, keyring, connection_id=connection.id, actor=user.email)
        message = f"Langzeittoken gespeichert (DATEV-Benutzer: {grantor_name or 'unbekannt'}). Testabfrage: {test.message}"
    else:
        message = f"DATEV-Anmeldung für diese Sitzung gespeichert (DATEV-Benutzer: {grantor_name or 'unbekannt'})."
    return CallbackOutcome(ok=True, message=message, company_id=company_id, kind=kind.value, warning=warning)


def _is_long_term(tokens: TokenResponse) -> bool:
    return OFFLINE_SCOPE in tokens.scope.split() and (tokens.refresh_expires_in or 0) >= LONG_TERM_MIN_SECONDS


def _bound_client(scope: str) -> str | None:
    for item in scope.split():
        if item.startswith("datev:iam:client:"):
            return item.removeprefix("datev:iam:client:")
    return None


def _grantor_name(engine: Engine, ctx: CallContext, endpoints: DatevEndpoints, settings: Settings,
                  tokens: TokenResponse, claims: dict[str, Any]) -> str | None:
    try:
        info = userinfo(engine, ctx.with_purpose("userinfo"), endpoints, settings, access_token=tokens.access_token)
    except (ProviderRejected, ProviderUnavailable):
        info = {}
    name = info.get("name") or claims.get("name")
    if not name and (info.get("given_name") or info.get("family_name")):
        name = f"{info.get('given_name', '')} {info.get('family_name', '')}".strip()
    return str(name) if name else None  # clipped to the column by the store


def _revoke_quietly(engine: Engine, ctx: CallContext, endpoints: DatevEndpoints, settings: Settings,
                    tokens: TokenResponse) -> None:
    """Best effort: a token we will not store must not stay valid at DATEV."""
    token, hint = (tokens.refresh_token, "refresh_token") if tokens.refresh_token else (tokens.access_token, "access_token")
    try:
        revoke(engine, ctx.with_purpose("revoke_unstored"), endpoints, settings, token=token, hint=hint)
    except (ProviderRejected, ProviderUnavailable):
        pass


def _revoke_replaced(engine: Engine, settings: Settings, ctx: CallContext, endpoints: DatevEndpoints, company_id: int,
                     old_refresh_token: str, user: AppUser) -> None:
    """DATEV: one valid refresh token per connection. Revoke the one the new login replaced."""
    try:
        revoke(engine, ctx.with_purpose("revoke_replaced"), endpoints, settings, token=old_refresh_token)
    except (ProviderRejected, ProviderUnavailable) as exc:
        with unit_of_work(engine) as session:
            audit.record(session, actor=user.email, action="token.revoke_failed", entity_type="company",
                         entity_id=company_id, detail=f"Widerruf des ersetzten Tokens fehlgeschlagen: {exc}")
