"""Getting a valid access token: the one function the dashboard and the scheduler both use.

DATEV refresh tokens are single use, and redeeming one twice kills the whole grant
(docs/datev-contract.md §1.6). So a refresh happens under a cross-process lease on the connection row:

1. read the row (short transaction); a fresh access token is returned at once;
2. otherwise take the lease with a conditional UPDATE (`version` compare-and-swap and no live
   lease), committed at once; losers wait and re-read;
3. the winner calls DATEV outside any transaction, then stores the new refresh and access token
   (encrypted), bumps `version` and clears the lease in one short transaction.

`invalid_grant` is re-checked against the stored token first: if it changed, a sibling refreshed
and we use its token; only otherwise the connection becomes invalid. Timeouts, 429 and 5xx never
mark a connection invalid. After a timeout the old refresh token is tried again later: either the
call never reached DATEV (then it works) or DATEV already rotated it and the answer was lost (then
the grant is gone either way and the retry makes DATEV revoke the orphaned family, which is what
DATEV's "one valid refresh token" rule wants).
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
from sqlmodel import select

from core.connections import store
from core.connections.store import ACCESS_TOKEN, API_KEY, OWNER_TYPE, REFRESH_TOKEN
from core.platform.config import Settings, get_settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import Connection, Provider, StoredSecret, utcnow
from core.platform.secret_store import get_keyring
from core.providers.datev_oidc import ProviderRejected, ProviderUnavailable, discover, refresh, revoke
from core.providers.http import CallContext

log = logging.getLogger(__name__)

LAST_USED_RESOLUTION = timedelta(seconds=60)  # last_used_at is written at most once a minute


class TokenUnavailable(UserFacingError):
    """No usable token now. `permanent`: a person must act (new login); else retry later."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


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
                 and row.access_expires_at - timedelta(seconds=settings.access_token_skew_seconds) > now
                 and row.version != stale_version)
        if fresh and snap.access_token is not None:
            _touch_last_used(engine, row, now)
            return AccessToken.of(snap.access_token, row, row.access_expires_at)
        if snap.refresh_token and store.take_refresh_lease(engine, row, owner, now, settings.refresh_lease_seconds):
            result = _refresh_with_lease(engine, settings, keyring, snap, owner)
            if result is not None:
                return result
            continue  # a sibling had rotated the token: re-read and use it
        if time.monotonic() > give_up_at:
            raise TokenUnavailable("Das Token wird gerade von einem anderen Prozess erneuert; bitte erneut versuchen.",
                                   permanent=False)
        time.sleep(pause)  # another process holds the lease: wait for its result
        pause = min(pause * 2, 0.5)


def _refresh_with_lease(engine: Engine, settings: Settings, keyring: Keyring, snap: _Snapshot,
                        owner: str) -> AccessToken | None:
    row = snap.row
    assert row.id is not None
    ctx = CallContext(provider=row.provider, purpose="token_refresh", company_id=row.company_id,
                      connection_id=row.id)
    try:
        endpoints = discover(engine, settings)
        tokens = refresh(engine, ctx, endpoints, settings, refresh_token=snap.refresh_token or "")
    except ProviderUnavailable as exc:
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
        reason = "DATEV hat das Token abgelehnt (invalid_grant): widerrufen, abgelaufen oder bereits verwendet."
        store.mark_invalid(engine, row.id, expected_version=row.version, reason=reason)
        raise TokenUnavailable(f"Token ungültig: {reason} Bitte neu anfordern.", permanent=True) from None
    stored = store.store_refreshed(engine, keyring, row.id, owner, tokens, utcnow(), row.version)
    if stored is None:  # deleted or replaced while we refreshed: our new pair must not stay valid
        try:
            revoke(engine, ctx.with_purpose("revoke_orphaned"), endpoints, settings,
                   token=tokens.refresh_token or tokens.access_token,
                   hint="refresh_token" if tokens.refresh_token else "access_token")
        except (ProviderRejected, ProviderUnavailable):
            log.warning("connection %s: could not revoke an orphaned token pair", row.id)
        return None  # re-read: the caller sees the deletion or the new login
    return AccessToken.of(tokens.access_token, stored, stored.access_expires_at)
