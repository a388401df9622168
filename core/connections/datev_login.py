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
from datetime import timedelta

from sqlalchemy import Engine, delete
from sqlmodel import col, select

from core import users
from core.connections.access import OWNER_TYPE, REFRESH_TOKEN, store_datev_tokens
from core.platform import audit
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import (
    AppUser,
    Company,
    Connection,
    ConnectionKind,
    Interface,
    PendingAuthorization,
    Provider,
    Role,
    utcnow,
)
from core.platform.secret_store import erase_secret, get_secret, put_secret
from core.providers.datev_oidc import (
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

PENDING_OWNER = "pending_authorization"
OFFLINE_SCOPE = "offline_access"
# A refresh token that lives less than this is not a long-term token (DATEV's is about 2 years).
LONG_TERM_MIN_SECONDS = 300 * 24 * 3600


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)  # 64 characters from the unreserved set (RFC 7636)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def slot_for(kind: ConnectionKind, user: AppUser) -> str:
    return kind.value if kind == ConnectionKind.long_term else f"{kind.value}:{user.id}"


def requested_scopes(settings: Settings, company: Company, kind: ConnectionKind) -> list[str]:
    scopes = settings.datev_scopes.split()
    if kind == ConnectionKind.long_term:
        scopes += [OFFLINE_SCOPE, f"datev:iam:client:{company.datev_client_id}"]
    return scopes


def _datev_company(session, company_id: int) -> Company:  # type: ignore[no-untyped-def]
    company = session.get(Company, company_id)
    if company is None or company.archived_at is not None:
        raise UserFacingError("Dieses Unternehmen gibt es nicht oder es ist archiviert.")
    if company.interface != Interface.datev.value or company.datev_client_id is None:
        raise UserFacingError("Für dieses Unternehmen ist DATEV mit Berater-Nr. und Mandanten-Nr. nicht eingerichtet.")
    return company


def start_login(engine: Engine, settings: Settings, keyring: Keyring, *, company_id: int, user: AppUser,
                kind: ConnectionKind) -> str:
    """Create the pending login and return the DATEV authorization URL to send the browser to."""
    needed = Role.admin if kind == ConnectionKind.long_term else Role.operator
    if not users.has_role(user, needed):
        raise UserFacingError("Dafür fehlt Ihnen die Berechtigung.")
    with unit_of_work(engine) as session:
        company = _datev_company(session, company_id)
        session.expunge(company)
    if kind == ConnectionKind.long_term and settings.datev_revoke_before_new_login:
        from core.connections.health import delete_token, long_term_connection

        existing = long_term_connection(engine, company_id, Provider.datev)
        if existing is not None and existing.has_token:
            delete_token(engine, settings, keyring, connection_id=existing.id, actor=user.email,  # type: ignore[arg-type]
                         reason="vor neuer Anmeldung (eine gültige Verbindung je Mandant)")
    endpoints = discover(engine, settings)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier, challenge = pkce_pair()
    now = utcnow()
    with unit_of_work(engine) as session:  # expired pending logins (and their secrets) go in housekeeping
        pending = PendingAuthorization(
            state_hash=state_hash(state), company_id=company_id, provider=Provider.datev.value, kind=kind.value,
            user_id=user.id, redirect_uri=settings.datev_callback_uri,  # type: ignore[arg-type]
            expires_at=now + timedelta(minutes=settings.pending_authorization_minutes),
        )
        session.add(pending)
        session.flush()
        for purpose, value in (("pkce_verifier", verifier), ("nonce", nonce)):
            put_secret(session, keyring, owner_type=PENDING_OWNER, owner_id=pending.id, purpose=purpose,  # type: ignore[arg-type]
                       value=value)
    return authorization_url(endpoints, settings, scopes=requested_scopes(settings, company, kind), state=state,
                             nonce=nonce, code_challenge=challenge, offline=kind == ConnectionKind.long_term)


@dataclass(frozen=True)
class CallbackOutcome:
    ok: bool
    message: str
    company_id: int | None = None
    kind: str | None = None
    warning: str | None = None


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
        if pending is None:
            return None
        removed = session.exec(  # type: ignore[call-overload]
            delete(PendingAuthorization).where(col(PendingAuthorization.id) == pending.id)
        ).rowcount
        if removed != 1:  # another request claimed it first (PostgreSQL, concurrent callbacks)
            return None
        values = {}
        for purpose in ("pkce_verifier", "nonce"):
            values[purpose] = get_secret(session, keyring, owner_type=PENDING_OWNER, owner_id=pending.id,  # type: ignore[arg-type]
                                         purpose=purpose) or ""
            erase_secret(session, owner_type=PENDING_OWNER, owner_id=pending.id, purpose=purpose)  # type: ignore[arg-type]
        session.expunge(pending)
        return _Claimed(pending, values["pkce_verifier"], values["nonce"])


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
    replaced = _store_connection(engine, keyring, pending=pending, user=user, tokens=tokens, claims=claims,
                                 grantor_name=grantor_name, offline=offline)
    if replaced:
        _revoke_replaced(engine, settings, ctx, endpoints, company_id, replaced, user)

    if kind == ConnectionKind.long_term:
        from core.connections.health import long_term_connection, run_test

        connection = long_term_connection(engine, company_id, Provider.datev)
        test = run_test(engine, settings, keyring, connection_id=connection.id, actor=user.email)  # type: ignore[union-attr,arg-type]
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


def _grantor_name(engine, ctx, endpoints, settings, tokens, claims) -> str | None:  # type: ignore[no-untyped-def]
    try:
        info = userinfo(engine, ctx.with_purpose("userinfo"), endpoints, settings, access_token=tokens.access_token)
    except (ProviderRejected, ProviderUnavailable):
        info = {}
    name = info.get("name") or claims.get("name")
    if not name and (info.get("given_name") or info.get("family_name")):
        name = f"{info.get('given_name', '')} {info.get('family_name', '')}".strip()
    return str(name)[:200] if name else None


def _store_connection(engine: Engine, keyring: Keyring, *, pending: PendingAuthorization, user: AppUser,
                      tokens: TokenResponse, claims: dict, grantor_name: str | None,
                      offline: bool) -> str | None:
    """Upsert the connection with the new tokens. Returns the replaced refresh token, if any."""
    kind = ConnectionKind(pending.kind)
    now = utcnow()
    with unit_of_work(engine) as session:
        slot = slot_for(kind, user)
        row = session.exec(select(Connection).where(
            Connection.company_id == pending.company_id, Connection.provider == Provider.datev.value,
            Connection.slot == slot)).first()
        replaced = None
        before = None
        if row is None:
            row = Connection(company_id=pending.company_id, provider=Provider.datev.value, kind=kind.value, slot=slot,
                             owner_user_id=None if kind == ConnectionKind.long_term else user.id)
            session.add(row)
            session.flush()
        elif row.has_token:
            replaced = get_secret(session, keyring, owner_type=OWNER_TYPE, owner_id=row.id, purpose=REFRESH_TOKEN)  # type: ignore[arg-type]
            before = {"token_fingerprint": row.token_fingerprint}
        row.refresh_expires_at = None
        store_datev_tokens(session, keyring, row, tokens, now)
        row.offline_granted = offline
        row.scopes = tokens.scope[:1000]
        row.bound_client = _bound_client(tokens.scope)
        row.grantor_name = grantor_name
        row.grantor_sub = str(claims.get("sub", ""))[:255] or None
        row.requested_at, row.requested_by = now, user.email
        row.last_refresh_at = None
        row.last_used_at = None
        row.last_test_at = row.last_test_ok = row.last_test_message = None
        row.invalid_at = row.invalid_reason = None
        row.deleted_at = row.deleted_by = None
        audit.record(session, actor=user.email, action="token.requested", entity_type="connection", entity_id=row.id,
                     before=before,
                     after={"company_id": row.company_id, "kind": kind.value, "token_fingerprint": row.token_fingerprint,
                            "bound_client": row.bound_client, "offline_granted": offline,
                            "refresh_expires_at": row.refresh_expires_at, "grantor": grantor_name})
        return replaced


def _revoke_quietly(engine, ctx, endpoints, settings, tokens: TokenResponse) -> None:  # type: ignore[no-untyped-def]
    """Best effort: a token we will not store must not stay valid at DATEV."""
    token, hint = (tokens.refresh_token, "refresh_token") if tokens.refresh_token else (tokens.access_token, "access_token")
    try:
        revoke(engine, ctx.with_purpose("revoke_unstored"), endpoints, settings, token=token, hint=hint)
    except (ProviderRejected, ProviderUnavailable):
        pass


def _revoke_replaced(engine, settings, ctx, endpoints, company_id, old_refresh_token, user) -> None:  # type: ignore[no-untyped-def]
    """DATEV: one valid refresh token per connection. Revoke the one the new login replaced."""
    try:
        revoke(engine, ctx.with_purpose("revoke_replaced"), endpoints, settings, token=old_refresh_token)
    except (ProviderRejected, ProviderUnavailable) as exc:
        with unit_of_work(engine) as session:
            audit.record(session, actor=user.email, action="token.revoke_failed", entity_type="company",
                         entity_id=company_id, detail=f"Widerruf des ersetzten Tokens fehlgeschlagen: {exc}")
