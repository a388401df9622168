"""Getting a valid access token: the one function the dashboard and the scheduler both use.

DATEV refresh tokens are single use, and redeeming one twice kills the whole grant
(docs/datev-contract.md §1.6). So a refresh happens under a cross-process lease on the connection row:

1. read the row (short transaction); a fresh access token is returned at once ("fresh": more than
   min(ACCESS_TOKEN_SKEW_SECONDS, a third of its lifetime) left, so short-lived tokens are not
   refreshed on every call);
2. otherwise take the lease with a conditional UPDATE (`version` compare-and-swap and no live
   lease), committed at once; losers wait and re-read;
3. the winner calls DATEV outside any transaction (the call ends at HTTP_DEADLINE_SECONDS, shorter
   than the lease), then stores the new pair: encrypted, `version` + 1, lease cleared. The store is
   retried with backoff while the lease holds: the new pair lives only in memory until then, and the
   old token is already dead at DATEV.

`invalid_grant` is re-checked against the stored token first: if it changed, a sibling refreshed
and we use its token; only otherwise the connection becomes invalid.

**Ambiguous is not failed.** A refresh that may have reached DATEV (timeout after sending, dropped
connection, 5xx, an unreadable 200) may have rotated the token while its answer was lost. Sending
the old refresh token again could then kill the grant (reuse detection), and a request still in
flight could kill a fresh one. So the connection is marked "Erneuerung unklar" and the lease is NOT
released but held one more deadline: nobody looks until any request of ours still in flight has ended. The next
use decides with one call with the stored access token (userinfo): DATEV kills the previous access
token on a refresh (DATEV_REFRESH_REVOKES_ACCESS_TOKEN), so if it still works the refresh never
happened and the old refresh token is used again; if it is refused while it should still be valid,
the refresh happened and its answer is lost: the connection becomes invalid (a new login is needed),
without sending the old refresh token again. When neither can be told (the access token has run out
too), the connection stays "Erneuerung unklar" until an admin decides (core.connections.store
.clear_refresh_unclear, "Erneuerung erneut versuchen") or requests a new token.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlmodel import select

from core.connections import store
from core.connections.store import ACCESS_TOKEN, API_KEY, OWNER_TYPE, REFRESH_TOKEN
from core.platform.backoff import next_delay
from core.platform.config import Settings, get_settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import Connection, Provider, Role, StoredSecret, utcnow
from core.platform.secret_store import get_keyring
from core.providers.datev_oidc import (
    DatevEndpoints,
    ProviderRejected,
    ProviderUnavailable,
    TokenResponse,
    discover,
    refresh,
    revoke,
    userinfo,
)
from core.providers.http import CallContext
from core.users import Actor, authorized

log = logging.getLogger(__name__)

LAST_USED_RESOLUTION = timedelta(seconds=60)  # last_used_at is written at most once a minute
UNCLEAR = ("Erneuerung unklar: die Antwort von DATEV auf die Erneuerung ging verloren. Das alte Token wird "
           "nicht erneut gesendet, bis geklärt ist, ob DATEV es schon ersetzt hat.")
LOST = ("DATEV hat das Token bei einer Erneuerung ersetzt, deren Antwort verloren ging. Bitte das Langzeittoken "
        "neu anfordern.")
STORE_RETRY_BASE_SECONDS = 0.2
STORE_RETRY_CAP_SECONDS = 5.0


class TokenUnavailable(UserFacingError):
    """No usable token now. `permanent`: a person must act (new login); else retry later.
    `newly_invalid`: this call found the token broken (the caller raises the alarm now)."""

    def __init__(self, message: str, *, permanent: bool, newly_invalid: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.newly_invalid = newly_invalid


@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    connection_id: int
    company_id: int
    provider: str
    version: int
    expires_at: datetime | None

    @classmethod
    def of(cls, value: str, row: Connection, expires_at: datetime | None) -> AccessToken:
        assert row.id is not None
        return cls(value, row.id, row.company_id, row.provider, row.version, expires_at)


@dataclass(frozen=True)
class _Snapshot:
    row: Connection
    access_token: str | None = field(repr=False)
    refresh_token: str | None = field(repr=False)
    api_key: str | None = field(repr=False)


def lease_owner_id() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{threading.get_ident() % 100000}:{uuid.uuid4().hex[:6]}"


def refresh_skew(settings: Settings, row: Connection) -> timedelta:
    """How long before expiry a token counts as stale: the configured skew, at most a third of its life."""
    seconds = float(settings.access_token_skew_seconds)
    if row.access_ttl_seconds:
        seconds = min(seconds, row.access_ttl_seconds / 3)
    return timedelta(seconds=seconds)


def _read(engine: Engine, keyring: Keyring, connection_id: int) -> _Snapshot:
    with unit_of_work(engine) as session:
        row = session.get(Connection, connection_id)
        if row is None:
            raise TokenUnavailable("Diese Verbindung gibt es nicht (mehr).", permanent=True)
        session.expunge(row)

        sealed = {s.purpose: s for s in session.exec(select(StoredSecret).where(  # one query for all secrets
            StoredSecret.owner_type == OWNER_TYPE, StoredSecret.owner_id == connection_id)).all()}

        def secret(purpose: str) -> str | None:
            found = sealed.get(purpose)
            return keyring.open(found.ciphertext, found.context) if found is not None else None

        if row.provider == Provider.lexware.value:
            return _Snapshot(row, None, None, secret(API_KEY))
        return _Snapshot(row, secret(ACCESS_TOKEN), secret(REFRESH_TOKEN), None)


def _raise_if_unusable(row: Connection, now: datetime) -> None:
    if row.deleted_at is not None or not row.has_token:
        raise TokenUnavailable("Kein Token hinterlegt.", permanent=True)
    if row.invalid_at is not None:
        raise TokenUnavailable(f"Token ungültig: {row.invalid_reason or 'vom Anbieter abgelehnt'}", permanent=True)
    if row.refresh_expires_at is not None and row.refresh_expires_at <= now:
        raise TokenUnavailable("Token abgelaufen: bitte neu anfordern.", permanent=True)


def _touch_last_used(engine: Engine, row: Connection, now: datetime) -> None:
    if row.last_used_at is not None and now - row.last_used_at < LAST_USED_RESOLUTION:
        return
    assert row.id is not None
    store.touch_last_used(engine, row.id, now)


def get_valid_token(engine: Engine, connection_id: int, *, settings: Settings | None = None,
                    keyring: Keyring | None = None, stale_version: int | None = None,
                    owner: str | None = None) -> AccessToken:
    """A usable access token (DATEV) or API key (Lexware) for the connection.

    `stale_version`: the version of a token the provider just refused with 401; a token of that
    version is not returned again (one refresh, however many callers saw the 401).
    Raises TokenUnavailable (permanent: a person must act; else: try later).
    """
    settings = settings or get_settings()
    keyring = keyring or get_keyring()
    owner = owner or lease_owner_id()
    give_up_at = time.monotonic() + settings.refresh_lease_seconds + 15
    pause = 0.02
    while True:
        now = utcnow()
        snap = _read(engine, keyring, connection_id)
        row = snap.row
        _raise_if_unusable(row, now)
        if row.provider == Provider.lexware.value:
            if not snap.api_key:
                raise TokenUnavailable("Kein API-Schlüssel hinterlegt.", permanent=True)
            _touch_last_used(engine, row, now)
            return AccessToken.of(snap.api_key, row, row.refresh_expires_at)
        fresh = (snap.access_token is not None and row.access_expires_at is not None
                 and row.access_expires_at - refresh_skew(settings, row) > now
                 and row.version != stale_version)
        if fresh and snap.access_token is not None:
            _touch_last_used(engine, row, now)
            return AccessToken.of(snap.access_token, row, row.access_expires_at)
        lease_live = row.refresh_lease_until is not None and row.refresh_lease_until >= now
        if row.refresh_unclear_since is not None and lease_live:
            # The lost refresh's own lease: nobody decides before every request of it has ended.
            raise TokenUnavailable(UNCLEAR, permanent=False)
        if snap.refresh_token and store.take_refresh_lease(engine, row, owner, now, settings.refresh_lease_seconds):
            if row.refresh_unclear_since is not None:
                _decide_unclear(engine, settings, snap, owner)  # returns only when the old token may be used
            result = _refresh_with_lease(engine, settings, keyring, snap, owner)
            if result is not None:
                return result
            continue  # a sibling had rotated the token: re-read and use it
        if time.monotonic() > give_up_at:
            raise TokenUnavailable("Das Token wird gerade von einem anderen Prozess erneuert; bitte erneut versuchen.",
                                   permanent=False)
        time.sleep(pause)  # another process holds the lease: wait for its result
        pause = min(pause * 2, 0.5)


def _decide_unclear(engine: Engine, settings: Settings, snap: _Snapshot, owner: str) -> None:
    """With the lease held, decide an unclear refresh by one call with the stored access token.

    Returns when the refresh never happened: the flag is cleared and the old refresh token may be
    used. Raises TokenUnavailable when it was lost (the connection is invalid now) or cannot be told
    (the flag stays; the lease is released so an admin's decision or a new token is not blocked)."""
    row = snap.row
    assert row.id is not None
    now = utcnow()
    still_valid = row.access_expires_at is not None and row.access_expires_at > now
    verdict = "unclear"
    if snap.access_token and settings.datev_refresh_revokes_access_token:
        ctx = CallContext(provider=row.provider, purpose="refresh_check", company_id=row.company_id,
                          connection_id=row.id)
        try:
            userinfo(engine, ctx, discover(engine, settings), settings, access_token=snap.access_token)
            verdict = "not_refreshed"
        except ProviderRejected as exc:
            if exc.status == 401 and still_valid:  # refused before its time: a refresh went through
                verdict = "lost"
        except ProviderUnavailable:
            pass
    if verdict == "not_refreshed":
        store.clear_refresh_unclear(engine, row.id, expected_version=row.version, actor=store.SYSTEM,
                                    decision="Das bisherige Zugriffstoken gilt noch: DATEV hat nicht erneuert.")
        return
    if verdict == "lost":
        marked = store.mark_invalid(engine, row.id, expected_version=row.version, reason=LOST)
        raise TokenUnavailable(f"Token ungültig: {LOST}", permanent=True, newly_invalid=marked)
    store.release_refresh_lease(engine, row.id, owner)
    raise TokenUnavailable(UNCLEAR + " Bitte das Langzeittoken neu anfordern, oder (Administration) die "
                           "Erneuerung erneut versuchen.", permanent=True)


def retry_unclear_refresh(engine: Engine, *, connection_id: int, actor: Actor) -> bool:
    """An admin's decision on an unclear refresh ("Erneuerung erneut versuchen"): the old refresh token
    may be sent again at the next use. If DATEV had rotated it meanwhile, DATEV refuses it and the
    connection becomes invalid: no worse than now, since the new token was lost anyway."""
    authorized(engine, actor, Role.admin)
    row = store.get(engine, connection_id)
    if row is None or row.refresh_unclear_since is None:
        return False
    return store.clear_refresh_unclear(engine, connection_id, expected_version=row.version, actor=actor.name,
                                       decision="Erneuerung von Hand freigegeben")


def _refresh_with_lease(engine: Engine, settings: Settings, keyring: Keyring, snap: _Snapshot,
                        owner: str) -> AccessToken | None:
    row = snap.row
    assert row.id is not None
    ctx = CallContext(provider=row.provider, purpose="token_refresh", company_id=row.company_id,
                      connection_id=row.id)
    leased_until = time.monotonic() + settings.refresh_lease_seconds
    try:
        endpoints = discover(engine, settings)
        tokens = refresh(engine, ctx, endpoints, settings, refresh_token=snap.refresh_token or "")
    except ProviderUnavailable as exc:
        if exc.ambiguous:  # the token may be rotated: keep the lease, mark it, never send the old one blindly
            hold_until = utcnow() + timedelta(seconds=settings.http_deadline_seconds)
            store.mark_refresh_unclear(engine, row.id, expected_version=row.version, owner=owner,
                                       hold_until=hold_until, detail=str(exc))
            raise TokenUnavailable(UNCLEAR, permanent=False) from None
        store.release_refresh_lease(engine, row.id, owner)
        raise TokenUnavailable(f"DATEV ist gerade nicht erreichbar ({exc}); später erneut.", permanent=False) from None
    except ProviderRejected as exc:
        store.release_refresh_lease(engine, row.id, owner)
        if exc.error != "invalid_grant":
            raise TokenUnavailable(f"DATEV lehnt die Erneuerung ab ({exc.error}); bitte Einstellungen prüfen.",
                                   permanent=False) from None
        current = _read(engine, keyring, row.id).row
        if current.version != row.version:
            return None  # someone else stored a new token: use that one
        reason = "DATEV hat das Token abgelehnt: widerrufen, abgelaufen oder bereits verwendet."
        marked = store.mark_invalid(engine, row.id, expected_version=row.version, reason=reason)
        raise TokenUnavailable(f"Token widerrufen oder ungültig: {reason} Bitte neu anfordern.", permanent=True,
                               newly_invalid=marked) from None
    stored = _store_with_retries(engine, keyring, settings, row, owner, tokens, leased_until)
    if stored is None:  # deleted or replaced while we refreshed: our new pair must not stay valid
        _revoke_orphan(engine, settings, ctx, endpoints, tokens, row.id)
        return None  # re-read: the caller sees the deletion or the new login
    return AccessToken.of(tokens.access_token, stored, stored.access_expires_at)


def _store_with_retries(engine: Engine, keyring: Keyring, settings: Settings, row: Connection, owner: str,
                        tokens: TokenResponse, leased_until: float) -> Connection | None:
    """Store the new pair; a database that is down is retried with backoff while the lease holds.

    The old refresh token is already dead at DATEV, so losing the new pair would lose the grant."""
    assert row.id is not None
    attempt = 0
    while True:
        attempt += 1
        try:
            return store.store_refreshed(engine, keyring, row.id, owner, tokens, utcnow(), row.version, settings)
        except (OperationalError, DBAPIError) as exc:
            wait = next_delay(attempt, base=STORE_RETRY_BASE_SECONDS, cap=STORE_RETRY_CAP_SECONDS)
            if time.monotonic() + wait >= leased_until:
                log.error("connection %s: the refreshed token could not be stored before the lease ran out "
                          "(%s); it is lost and the connection needs a new login", row.id, type(exc).__name__)
                raise TokenUnavailable("Das erneuerte Token konnte nicht gespeichert werden (Datenbank nicht "
                                       "erreichbar).", permanent=False) from None
            log.warning("connection %s: storing the refreshed token failed (%s, attempt %d); retrying in %.1f s",
                        row.id, type(exc).__name__, attempt, wait)
            time.sleep(wait)  # the database is down: wait before the next try (not synchronisation)


def _revoke_orphan(engine: Engine, settings: Settings, ctx: CallContext, endpoints: DatevEndpoints,
                   tokens: TokenResponse, connection_id: int) -> None:
    try:
        revoke(engine, ctx.with_purpose("revoke_orphaned"), endpoints, settings,
               token=tokens.refresh_token or tokens.access_token,
               hint="refresh_token" if tokens.refresh_token else "access_token")
    except (ProviderRejected, ProviderUnavailable):
        log.warning("connection %s: could not revoke an orphaned token pair", connection_id)
