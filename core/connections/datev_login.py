"""Requesting a DATEV token: start the login, and finish it when DATEV sends the user back.

The return from DATEV opens a new Streamlit session, so the pending login lives in the database
(`PendingAuthorization`): keyed by sha256(state), with the PKCE verifier and the nonce encrypted,
the company, the kind (Langzeittoken or one-off login), the user who started it, 10 minutes to
live, single use. Every failure returns a German message and stores nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select

from core import users
from core.connections import grant, store
from core.connections.disconnect import revoke_and_erase
from core.connections.test_call import test_and_record
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
    clip,
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

log = logging.getLogger(__name__)

PENDING_OWNER = "pending_authorization"  # StoredSecret.owner_type of a pending login's verifier and nonce
PENDING_PURPOSES = ("pkce_verifier", "nonce")
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
        scopes += [grant.OFFLINE_SCOPE, grant.client_scope(company.datev_client_id or "")]
    return scopes


def datev_company(session: Session, company_id: int) -> Company:
    """The company if a DATEV login may be started for it (active, DATEV with its numbers); else UserFacingError."""
    company = session.get(Company, company_id)
    if company is None or company.archived_at is not None:
        raise UserFacingError("Dieses Unternehmen gibt es nicht oder es ist archiviert.")
    if company.interface != Interface.datev.value or company.datev_client_id is None:
        raise UserFacingError("Für dieses Unternehmen ist DATEV mit Berater-Nr. und Mandanten-Nr. nicht eingerichtet.")
    return company


def start_login(engine: Engine, settings: Settings, keyring: Keyring, *, company_id: int, user: AppUser,
                kind: ConnectionKind, return_to: str | None = None) -> str:
    """Create the pending login and return the DATEV authorization URL to send the browser to.
    `return_to` (the page and selection to continue with, e.g. Übertragen's) is kept with the pending
    login and handed back in the callback's outcome.

    Raises only UserFacingError (no permission, no DATEV company, DATEV unreachable).
    """
    users.authorized(engine, users.Actor.of(user), Role.admin if kind == ConnectionKind.long_term else Role.operator)
    return begin_login(engine, settings, keyring, company_id=company_id, user=user, kind=kind, return_to=return_to)


def begin_login(engine: Engine, settings: Settings, keyring: Keyring, *, company_id: int, user: AppUser,
                kind: ConnectionKind, redirect_uri: str | None = None, request_link_id: int | None = None,
                browser: str | None = None, return_to: str | None = None) -> str:
    """The login itself, after the caller's permission check (the admin's role, or an open
    Anforderungslink): the pending login and the authorization URL. Raises only UserFacingError."""
    with unit_of_work(engine) as session:
        company = datev_company(session, company_id)
        session.expunge(company)
    if kind == ConnectionKind.long_term and settings.datev_revoke_before_new_login:
        existing = store.find(engine, company_id, Provider.datev)
        if existing is not None and existing.id is not None and existing.has_token:
            revoke_and_erase(engine, settings, keyring, connection_id=existing.id, actor=user.email,
                         reason="vor neuer Anmeldung (eine gültige Verbindung je Mandant)")
    try:
        endpoints = discover(engine, settings)
    except ProviderUnavailable as exc:
        raise UserFacingError(f"DATEV ist gerade nicht erreichbar ({exc}). Bitte später erneut versuchen.") from None
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier, challenge = pkce_pair()
    scopes = requested_scopes(settings, company, kind)
    redirect_uri = redirect_uri or settings.datev_callback_uri
    _create_pending(engine, keyring, settings, company_id=company_id, kind=kind, user=user, state=state,
                    verifier=verifier, nonce=nonce, scopes=scopes, redirect_uri=redirect_uri,
                    request_link_id=request_link_id, browser=browser, return_to=return_to)
    return authorization_url(endpoints, settings, scopes=scopes, state=state, nonce=nonce, code_challenge=challenge,
                             offline=kind == ConnectionKind.long_term, redirect_uri=redirect_uri)


# --- pending logins: created here, claimed once by the callback, purged by housekeeping ----------------


def _create_pending(engine: Engine, keyring: Keyring, settings: Settings, *, company_id: int, kind: ConnectionKind,
                    user: AppUser, state: str, verifier: str, nonce: str, scopes: list[str], redirect_uri: str,
                    request_link_id: int | None, browser: str | None, return_to: str | None = None) -> None:
    assert user.id is not None
    now = utcnow()
    with unit_of_work(engine) as session:  # expired pending logins (and their secrets) go in housekeeping
        pending = PendingAuthorization(
            state_hash=state_hash(state), company_id=company_id, provider=Provider.datev.value, kind=kind.value,
            user_id=user.id, redirect_uri=redirect_uri, scope=" ".join(scopes), request_link_id=request_link_id,
            browser_hash=browser_hash(browser) if browser else None,
            return_to=clip(PendingAuthorization.return_to, return_to),
            expires_at=now + timedelta(minutes=settings.pending_authorization_minutes),
        )
        session.add(pending)
        session.flush()
        assert pending.id is not None
        for purpose, value in zip(PENDING_PURPOSES, (verifier, nonce), strict=True):
            put_secret(session, keyring, owner_type=PENDING_OWNER, owner_id=pending.id, purpose=purpose, value=value)


@dataclass(frozen=True)
class CallbackOutcome:
    ok: bool
    message: str
    company_id: int | None = None
    kind: str | None = None
    warning: str | None = None
    return_to: str | None = None  # the page and selection the login was started from (start_login)


def _fail(message: str, company_id: int | None = None) -> CallbackOutcome:
    return CallbackOutcome(ok=False, message=message + " Es wurde nichts gespeichert.", company_id=company_id)


@dataclass(frozen=True)
class _Claimed:
    pending: PendingAuthorization
    verifier: str
    nonce: str


def browser_hash(browser: str) -> str:
    return hashlib.sha256(f"browser|{browser}".encode()).hexdigest()


def _claim(engine: Engine, keyring: Keyring, state: str, user: AppUser | None,
           browser: str = "") -> _Claimed | CallbackOutcome:
    """Take the pending login for `state` (single use): look it up, check who may finish it, then
    consume it by a conditional DELETE (rowcount 1 wins).

    `user`: the signed-in user, who must be the one who started it (a login started by somebody else is
    left alone, so another signed-in user cannot burn it). None: a login started from an
    Anforderungslink, finished on the link page without sign-in; only such logins qualify, and only in
    the browser that started it (`browser`: its XSRF cookie secret, compared by hash), so a callback URL
    that leaked (history, a forwarded screenshot) cannot be finished elsewhere."""
    with unit_of_work(engine) as session:
        pending = session.exec(
            select(PendingAuthorization).where(PendingAuthorization.state_hash == state_hash(state))
        ).first()
        if pending is None or pending.id is None or (pending.request_link_id is None) != (user is not None):
            return _fail("Diese Anmeldung ist unbekannt oder wurde bereits verwendet.")
        if user is not None and pending.user_id != user.id:
            return _fail("Diese Anmeldung wurde von einem anderen Benutzer gestartet.", pending.company_id)
        if user is None and (pending.browser_hash is None or not browser
                             or not hmac.compare_digest(pending.browser_hash, browser_hash(browser))):
            return _fail("Diese Anmeldung wurde in einem anderen Browser begonnen. Bitte schließen Sie sie in dem "
                         "Browser ab, in dem Sie den Link geöffnet haben.")
        removed = session.exec(
            delete(PendingAuthorization).where(col(PendingAuthorization.id) == pending.id)
        ).rowcount
        if removed != 1:  # another request claimed it first (PostgreSQL, concurrent callbacks)
            return _fail("Diese Anmeldung ist unbekannt oder wurde bereits verwendet.")
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


class _Refused(Exception):
    """A login that must not be stored; `message` is German, `audit` an optional audit event detail."""

    def __init__(self, message: str, audit_detail: str | None = None) -> None:
        super().__init__(message)
        self.message, self.audit_detail = message, audit_detail


def finish_login(engine: Engine, settings: Settings, keyring: Keyring, *, params: dict[str, str],
                 user: AppUser) -> CallbackOutcome:
    """Handle DATEV's redirect back (`code`/`state` or `error`) to the signed-in user's session.
    Nothing is stored on any failure, and a grant obtained before the failure is revoked at DATEV at
    once (no orphan grants)."""
    state = params.get("state", "")
    if not state:
        return _fail("Die Rückmeldung von DATEV enthält keinen state-Parameter.")
    claimed = _claim(engine, keyring, state, user)
    if isinstance(claimed, CallbackOutcome):
        return claimed
    outcome = _complete(engine, settings, keyring, claimed, params, user=user, requested_via=None)
    return replace(outcome, return_to=claimed.pending.return_to)  # also after a failure: back to the selection


def finish_link_login(engine: Engine, settings: Settings, keyring: Keyring, *, params: dict[str, str],
                      browser: str, requested_via: str) -> tuple[CallbackOutcome, int | None]:
    """DATEV's redirect back to the link page (no sign-in): the same checks and the same storing as an
    admin's own login; the token counts as requested by the admin who made the link. Returns the
    outcome and the link's id (None when no link login matched the state)."""
    state = params.get("state", "")
    if not state:
        return _fail("Die Rückmeldung von DATEV enthält keinen state-Parameter."), None
    claimed = _claim(engine, keyring, state, None, browser)
    if isinstance(claimed, CallbackOutcome):
        return claimed, None
    with unit_of_work(engine) as session:
        creator = session.get(AppUser, claimed.pending.user_id)
        if creator is not None:
            session.expunge(creator)
    if creator is None:
        return _fail("Der Link ist nicht mehr gültig."), claimed.pending.request_link_id
    return (_complete(engine, settings, keyring, claimed, params, user=creator, requested_via=requested_via),
            claimed.pending.request_link_id)


def _complete(engine: Engine, settings: Settings, keyring: Keyring, claimed: _Claimed, params: dict[str, str], *,
              user: AppUser, requested_via: str | None) -> CallbackOutcome:
    """Everything after the pending login was claimed: DATEV's answer, the checks, storing, the test call."""
    pending = claimed.pending
    company_id = pending.company_id
    if pending.expires_at <= utcnow():
        return _fail("Die Anmeldung ist abgelaufen (länger als "
                     f"{settings.pending_authorization_minutes} Minuten). Bitte erneut anfordern.", company_id)
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
        if params.get("iss") and params["iss"] != endpoints.issuer:  # RFC 9207: the answer of another provider
            return _fail("Die Rückmeldung stammt nicht vom erwarteten DATEV-Anmeldedienst (iss).", company_id)
        tokens = exchange_code(engine, ctx, endpoints, settings, code=code, code_verifier=claimed.verifier,
                               redirect_uri=pending.redirect_uri)
    except ProviderRejected as exc:
        return _fail(f"DATEV hat den Anmeldecode abgelehnt ({exc.error}).", company_id)
    except ProviderUnavailable as exc:
        return _fail(f"DATEV war nicht erreichbar ({exc}).", company_id)

    try:  # from here on a grant exists at DATEV: every failure revokes it before it is reported
        claims, facts, grantor_name = _check_grant(engine, settings, ctx, endpoints, tokens, claimed)
        replaced = store.store_login(engine, keyring, company_id=company_id, kind=kind, user=user, tokens=tokens,
                                     facts=facts, claims=claims, grantor_name=grantor_name,
                                     requested_via=requested_via)
    except _Refused as refused:
        _revoke_quietly(engine, ctx, endpoints, settings, tokens)
        if refused.audit_detail:
            with unit_of_work(engine) as session:
                audit.record(session, actor=user.email, action="token.refused", entity_type="company",
                             entity_id=company_id, detail=refused.audit_detail)
        return _fail(refused.message, company_id)
    except Exception:  # storing failed (e.g. the database): the grant must not stay at DATEV
        log.exception("DATEV login for company %s could not be completed", company_id)
        _revoke_quietly(engine, ctx, endpoints, settings, tokens)
        return _fail("Das Token konnte nicht gespeichert werden (interner Fehler); die Freigabe bei DATEV wurde "
                     "wieder zurückgenommen.", company_id)
    if replaced:
        _revoke_replaced(engine, settings, ctx, endpoints, company_id, replaced, user)

    warning = None
    if kind == ConnectionKind.long_term and not facts.long_term:
        warning = ("DATEV hat keinen dauerhaften Zugriff erteilt: Dies ist kein Langzeittoken, es gilt nur "
                   "wenige Stunden. Bitte erneut anfordern und „Dauerhaften Zugriff“ bestätigen.")
    elif kind == ConnectionKind.long_term and facts.bound_client is None:
        warning = ("DATEV hat den Zugriff nicht an einen Datenbestand gebunden. Das Token wird verwendet, die Belege "
                   "gehen an den Datenbestand des Unternehmens; bitte bei Gelegenheit neu anfordern.")
    with unit_of_work(engine) as session:  # the message names the company: the page it lands on may list several
        company = session.get(Company, company_id)
        for_company = f"{company.name}: " if company is not None else ""
    if kind == ConnectionKind.long_term:
        connection = store.find(engine, company_id, Provider.datev)
        assert connection is not None and connection.id is not None
        test = test_and_record(engine, settings, keyring, connection_id=connection.id, actor=user.email)
        message = (f"{for_company}Langzeittoken gespeichert (DATEV-Benutzer: {grantor_name or 'unbekannt'}). "
                   f"Testabfrage: {test.message}")
    else:
        message = (f"{for_company}DATEV-Anmeldung für diese Sitzung gespeichert (DATEV-Benutzer: "
                   f"{grantor_name or 'unbekannt'}).")
    return CallbackOutcome(ok=True, message=message, company_id=company_id, kind=kind.value, warning=warning)


def _check_grant(engine: Engine, settings: Settings, ctx: CallContext, endpoints: DatevEndpoints,
                 tokens: TokenResponse, claimed: _Claimed) -> tuple[dict[str, Any], grant.GrantFacts, str | None]:
    """Everything that must hold before a new grant is stored: the ID token, a refresh token, the data
    set it is bound to, the DATEV user's name. Raises _Refused with the German reason."""
    try:
        if not tokens.id_token:
            raise ProviderRejected("missing_id_token")
        claims = verify_id_token(engine, ctx.with_purpose("id_token"), endpoints, settings,
                                 id_token=tokens.id_token, nonce=claimed.nonce)
    except (ProviderRejected, ProviderUnavailable) as exc:
        detail = getattr(exc, "error", "")
        raise _Refused(f"Die Sicherheitsprüfung der DATEV-Antwort ist fehlgeschlagen ({detail or exc}).") from None
    if not tokens.refresh_token:
        raise _Refused("DATEV hat kein Refresh-Token geliefert.")
    pending = claimed.pending
    facts = grant.facts(tokens, pending.scope, settings, utcnow())
    with unit_of_work(engine) as session:
        company = session.get(Company, pending.company_id)
    own = company.datev_client_id if company is not None else None
    problem = grant.binding_problem(facts.clients, own or "")
    if problem is not None:
        raise _Refused(problem, f"Zugriff für {', '.join(facts.clients)} statt {own} erteilt: nicht gespeichert, "
                                "bei DATEV widerrufen.")
    try:
        grantor_name = _grantor_name(engine, ctx, endpoints, settings, tokens, claims)
    except (ProviderRejected, ProviderUnavailable) as exc:
        raise _Refused(f"DATEV hat den Namen des DATEV-Benutzers nicht geliefert ({exc}).") from None
    return claims, facts, grantor_name


def _grantor_name(engine: Engine, ctx: CallContext, endpoints: DatevEndpoints, settings: Settings,
                  tokens: TokenResponse, claims: dict[str, Any]) -> str | None:
    info = userinfo(engine, ctx.with_purpose("userinfo"), endpoints, settings, access_token=tokens.access_token)
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
