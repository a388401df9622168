"""The one writer of the Connection state machine.

Every change to a `connection` row (its token secrets, `version`, refresh lease, test result,
invalid and deleted state) happens in this module, each with its audit event in the same short
transaction. Everything else reads rows and calls these functions.

The states are derived from the row's facts by `core.connections.health.evaluate_health`:

    fehlt ──store_login / store_lexware_key──► aktiv ◄──store_refreshed── (a refresh)
    aktiv ──mark_invalid──────────────────────► ungültig
    aktiv | ungültig | abgelaufen ──erase────► widerrufen   (deleted; the row keeps the history)
    any state ──store_login / store_lexware_key──► aktiv (a new login or key replaces the old one)

`version` is the compare-and-swap counter of the stored token: every write of a new token and every
erase bumps it, so a refresh that raced a deletion or a new login never writes its pair back, and
`mark_invalid` only hits the token it was told about. The refresh lease (`refresh_lease_until`,
`refresh_lease_owner`) serialises refreshes across processes (core.connections.access).

`slot` makes "one connection per company and provider" a database rule: "long_term" for the
connection the scheduler uses, "one_off:<user id>" for a user's one-off DATEV login.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from core.connections import grant
from core.platform import audit
from core.platform.config import Settings
from core.platform.crypto import Keyring, fingerprint
from core.platform.db import unit_of_work
from core.platform.models import AppUser, Connection, ConnectionKind, Provider, clip, utcnow
from core.platform.secret_store import erase_secret, get_secret, put_secret
from core.providers.datev_oidc import TokenResponse

log = logging.getLogger(__name__)

OWNER_TYPE = "connection"  # StoredSecret.owner_type of a connection's secrets
REFRESH_TOKEN, ACCESS_TOKEN, API_KEY = "refresh_token", "access_token", "api_key"
TOKEN_PURPOSES = (REFRESH_TOKEN, ACCESS_TOKEN, API_KEY)
LONG_TERM_SLOT = ConnectionKind.long_term.value
ONE_OFF_PREFIX = ConnectionKind.one_off.value + ":"
ONE_OFF_FALLBACK_LIFETIME = grant.ONE_OFF_LIFETIME
SYSTEM = audit.SYSTEM_ACTOR
BATCH = 500


def one_off_slot(user_id: int) -> str:
    """The slot of a user's one-off DATEV login (used only for that user's manual transfers)."""
    return f"{ONE_OFF_PREFIX}{user_id}"


def slot_for(kind: ConnectionKind, user_id: int) -> str:
    return LONG_TERM_SLOT if kind == ConnectionKind.long_term else one_off_slot(user_id)


# --- reads ------------------------------------------------------------------------------------


def _in_slot(company_id: int, provider: str, slot: str) -> SelectOfScalar[Connection]:
    """The one slot lookup: a company's connection to a provider in a slot."""
    return select(Connection).where(Connection.company_id == company_id, Connection.provider == provider,
                                    Connection.slot == slot)


def find(engine: Engine, company_id: int, provider: Provider | str, slot: str = LONG_TERM_SLOT) -> Connection | None:
    """The company's connection to `provider` in `slot` (default: the long-term one), detached."""
    with unit_of_work(engine) as session:
        row = session.exec(_in_slot(company_id, Provider(provider).value, slot)).first()
        if row is not None:
            session.expunge(row)
        return row


def in_slot(engine: Engine, slot: str, company_ids: Iterable[int] | None = None) -> dict[tuple[int, str], Connection]:
    """Every connection in `slot` (of the given companies), keyed by (company id, provider)."""
    query = select(Connection).where(Connection.slot == slot)
    if company_ids is not None:
        query = query.where(col(Connection.company_id).in_(list(company_ids)))
    with unit_of_work(engine) as session:
        rows = session.exec(query).all()
        session.expunge_all()
    return {(row.company_id, row.provider): row for row in rows}


def get(engine: Engine, connection_id: int) -> Connection | None:
    with unit_of_work(engine) as session:
        row = session.get(Connection, connection_id)
        if row is not None:
            session.expunge(row)
        return row


def refresh_token_of(engine: Engine, keyring: Keyring, connection_id: int) -> str | None:
    """The stored refresh token in clear (for a revoke at the provider), or None."""
    with unit_of_work(engine) as session:
        return get_secret(session, keyring, owner_type=OWNER_TYPE, owner_id=connection_id, purpose=REFRESH_TOKEN)


# --- use and refresh ----------------------------------------------------------------------------


def touch_last_used(engine: Engine, connection_id: int, now: datetime) -> None:
    with unit_of_work(engine) as session:
        session.exec(update(Connection).where(col(Connection.id) == connection_id)
                     .values(last_used_at=now))


def take_refresh_lease(engine: Engine, row: Connection, owner: str, now: datetime, seconds: int) -> bool:
    """Take the refresh lease if the token is still the one `row` shows and nobody holds a live lease.

    Committed at once; True for the one winner (rowcount 1).
    """
    with unit_of_work(engine) as session:
        result = session.exec(
            update(Connection)
            .where(col(Connection.id) == row.id, col(Connection.version) == row.version,
                   col(Connection.has_token).is_(True),
                   (col(Connection.refresh_lease_until).is_(None)) | (col(Connection.refresh_lease_until) < now))
            .values(refresh_lease_until=now + timedelta(seconds=seconds), refresh_lease_owner=owner)
        )
        return bool(result.rowcount == 1)


def release_refresh_lease(engine: Engine, connection_id: int, owner: str) -> None:
    with unit_of_work(engine) as session:
        session.exec(
            update(Connection)
            .where(col(Connection.id) == connection_id, col(Connection.refresh_lease_owner) == owner)
            .values(refresh_lease_until=None, refresh_lease_owner=None)
        )


def _put_datev_tokens(session: Session, keyring: Keyring, row: Connection, tokens: TokenResponse,
                      now: datetime, refresh_expires_at: datetime | None, expiry_derived: bool) -> None:
    """Write a new DATEV token pair onto the row (inside the caller's transaction): version + 1, the
    refresh lease and an unclear refresh cleared (the new pair settles both)."""
    assert row.id is not None
    if tokens.refresh_token:
        put_secret(session, keyring, owner_type=OWNER_TYPE, owner_id=row.id, purpose=REFRESH_TOKEN,
                   value=tokens.refresh_token)
        row.token_fingerprint = fingerprint(tokens.refresh_token)
    row.refresh_expires_at, row.refresh_expiry_derived = refresh_expires_at, expiry_derived
    put_secret(session, keyring, owner_type=OWNER_TYPE, owner_id=row.id, purpose=ACCESS_TOKEN,
               value=tokens.access_token)
    row.access_expires_at = now + timedelta(seconds=tokens.expires_in)
    row.access_ttl_seconds = tokens.expires_in
    row.has_token = True
    row.version += 1
    row.refresh_lease_until = None
    row.refresh_lease_owner = None
    row.refresh_unclear_since = None
    row.updated_at = now
    session.add(row)


def store_refreshed(engine: Engine, keyring: Keyring, connection_id: int, owner: str, tokens: TokenResponse,
                    now: datetime, expected_version: int, settings: Settings) -> Connection | None:
    """Store a refreshed pair, unless the connection was deleted or got a new login meanwhile
    (then None: the caller revokes the orphaned pair). Returns the updated row, detached."""
    with unit_of_work(engine) as session:
        row = session.get(Connection, connection_id)
        if row is None or not row.has_token or row.version != expected_version:
            return None
        if row.refresh_lease_owner != owner:
            log.warning("connection %s: lease expired during refresh; storing the new token anyway", connection_id)
        old_fingerprint = row.token_fingerprint
        expires_at, derived = grant.refreshed_expiry(tokens, row.refresh_expires_at, row.refresh_expiry_derived,
                                                     row.offline_granted, settings, now)
        _put_datev_tokens(session, keyring, row, tokens, now, expires_at, derived)
        row.last_refresh_at = now
        row.last_used_at = now
        audit.record(session, actor=SYSTEM, action="token.refreshed", entity_type="connection", entity_id=row.id,
                     before={"token_fingerprint": old_fingerprint},
                     after={"token_fingerprint": row.token_fingerprint,
                            "refresh_expires_at": row.refresh_expires_at, "version": row.version})
        session.flush()
        session.expunge(row)
        return row


def mark_refresh_unclear(engine: Engine, connection_id: int, *, expected_version: int, owner: str,
                         hold_until: datetime, detail: str) -> bool:
    """A refresh whose answer was lost: from now on the old refresh token is not sent again until
    the access check decides (core.connections.access). The lease is kept until `hold_until`: any
    request still in flight at the provider has ended before another process may look. True if marked."""
    now = utcnow()
    with unit_of_work(engine) as session:
        marked = session.exec(update(Connection).where(
            col(Connection.id) == connection_id, col(Connection.version) == expected_version,
            col(Connection.refresh_unclear_since).is_(None), col(Connection.refresh_lease_owner) == owner,
        ).values(refresh_unclear_since=now, refresh_lease_until=hold_until, updated_at=now)).rowcount == 1
        if marked:
            audit.record(session, actor=SYSTEM, action="token.refresh_unclear", entity_type="connection",
                         entity_id=connection_id, detail=detail)
        return bool(marked)


def clear_refresh_unclear(engine: Engine, connection_id: int, *, expected_version: int, actor: str,
                          decision: str) -> bool:
    """The unclear refresh is decided: the old refresh token may be used again. True if cleared."""
    now = utcnow()
    with unit_of_work(engine) as session:
        cleared = session.exec(update(Connection).where(
            col(Connection.id) == connection_id, col(Connection.version) == expected_version,
            col(Connection.refresh_unclear_since).is_not(None)).values(refresh_unclear_since=None, updated_at=now)
        ).rowcount == 1
        if cleared:
            audit.record(session, actor=actor, action="token.refresh_unclear_decided", entity_type="connection",
                         entity_id=connection_id, detail=decision)
        return bool(cleared)


def mark_invalid(engine: Engine, connection_id: int, *, expected_version: int, reason: str,
                 actor: str = SYSTEM) -> bool:
    """Mark the connection invalid unless its token changed meanwhile. Returns True if marked."""
    now = utcnow()
    with unit_of_work(engine) as session:
        result = session.exec(
            update(Connection)
            .where(col(Connection.id) == connection_id, col(Connection.version) == expected_version,
                   col(Connection.invalid_at).is_(None))
            .values(invalid_at=now, invalid_reason=clip(Connection.invalid_reason, reason), refresh_lease_until=None,
                    refresh_lease_owner=None, refresh_unclear_since=None, updated_at=now)
        )
        if result.rowcount != 1:
            return False
        audit.record(session, actor=actor, action="token.invalid", entity_type="connection",
                     entity_id=connection_id, after={"reason": reason[:300]})
        return True


def record_test(engine: Engine, connection_id: int, *, ok: bool, message: str, actor: str,
                token_fingerprint: str | None) -> None:
    """The result of a connection test call, with its audit event."""
    now = utcnow()
    with unit_of_work(engine) as session:
        stored = session.get(Connection, connection_id)
        if stored is not None:
            stored.last_test_at, stored.last_test_ok = now, ok
            stored.last_test_message = clip(Connection.last_test_message, message)
            session.add(stored)
        audit.record(session, actor=actor, action="token.test", entity_type="connection", entity_id=connection_id,
                     after={"ok": ok, "token_fingerprint": token_fingerprint}, detail=message)


# --- erase ------------------------------------------------------------------------------------


def _erase(session: Session, row: Connection, now: datetime) -> None:
    """Erase the row's secrets; version + 1 so a refresh in flight never writes its token back."""
    assert row.id is not None
    for purpose in TOKEN_PURPOSES:
        erase_secret(session, owner_type=OWNER_TYPE, owner_id=row.id, purpose=purpose)
    row.has_token = False
    row.version += 1
    row.access_expires_at = None
    row.refresh_lease_until = row.refresh_lease_owner = None
    row.updated_at = now
    session.add(row)


def erase_deleted(engine: Engine, connection_id: int, *, actor: str, revoked_at_provider: bool,
                  revoke_error: str = "", left_at_provider: str | None = None, reason: str = "") -> None:
    """"Token löschen": erase the secrets, record who deleted it (the row keeps the history).
    `left_at_provider`: what remains to be done at the provider (None: nothing), kept for the card;
    `revoke_error`: why the provider did not confirm a revocation that was asked for (audited)."""
    now = utcnow()
    with unit_of_work(engine) as session:
        row = session.get(Connection, connection_id)
        if row is None:
            return
        before = {"token_fingerprint": row.token_fingerprint}
        _erase(session, row, now)
        row.deleted_at, row.deleted_by = now, actor
        row.left_at_provider = clip(Connection.left_at_provider, left_at_provider) if left_at_provider else None
        audit.record(session, actor=actor, action="token.deleted", entity_type="connection", entity_id=connection_id,
                     before=before, after={"revoked_at_provider": revoked_at_provider}, detail=reason or None)
        if revoke_error:
            audit.record(session, actor=actor, action="token.revoke_failed", entity_type="connection",
                         entity_id=connection_id, detail=revoke_error)


def _one_off_expired(row: Connection, now: datetime) -> bool:
    if row.refresh_expires_at is not None:
        return row.refresh_expires_at < now
    return row.requested_at is not None and row.requested_at < now - ONE_OFF_FALLBACK_LIFETIME


def discard_expired_one_off_logins(engine: Engine, now: datetime, *, actor: str) -> int:
    """One-off logins whose refresh token ran out: erase their secrets, keep the row (history)."""
    expired = (col(Connection.refresh_expires_at) < now) | (
        col(Connection.refresh_expires_at).is_(None) & (col(Connection.requested_at) < now - ONE_OFF_FALLBACK_LIFETIME))
    with unit_of_work(engine) as session:
        ids = list(session.exec(select(Connection.id).where(
            col(Connection.slot).startswith(ONE_OFF_PREFIX), col(Connection.has_token).is_(True), expired)
            .limit(BATCH)).all())
    discarded = 0
    for connection_id in ids:
        with unit_of_work(engine) as session:
            row = session.get(Connection, connection_id)
            if row is None or not row.has_token or not _one_off_expired(row, now):
                continue  # a new login arrived meanwhile
            before = {"token_fingerprint": row.token_fingerprint}
            _erase(session, row, now)
            audit.record(session, actor=actor, action="token.one_off_expired", entity_type="connection",
                         entity_id=connection_id, before=before)
            discarded += 1
    return discarded


# --- new tokens -------------------------------------------------------------------------------


def _slot_row(session: Session, company_id: int, provider: Provider, slot: str,
              kind: ConnectionKind = ConnectionKind.long_term, owner_user_id: int | None = None) -> tuple[Connection, bool]:
    """The row of the slot, created if missing. Returns (row, created)."""
    row = session.exec(_in_slot(company_id, provider.value, slot)).first()
    if row is not None:
        return row, False
    row = Connection(company_id=company_id, provider=provider.value, kind=kind.value, slot=slot,
                     owner_user_id=owner_user_id)
    session.add(row)
    session.flush()
    return row, True


def store_login(engine: Engine, keyring: Keyring, *, company_id: int, kind: ConnectionKind, user: AppUser,
                tokens: TokenResponse, facts: grant.GrantFacts, claims: dict[str, Any],
                grantor_name: str | None, requested_via: str | None = None) -> str | None:
    """Store the tokens of a finished DATEV login in the company's slot (a new row or a replaced
    token). Returns the replaced refresh token, if there was one (the caller revokes it)."""
    assert user.id is not None
    now = utcnow()
    with unit_of_work(engine) as session:
        slot = slot_for(kind, user.id)
        row, created = _slot_row(session, company_id, Provider.datev, slot, kind,
                                 None if kind == ConnectionKind.long_term else user.id)
        replaced = None
        before = None
        if not created and row.has_token:
            assert row.id is not None
            replaced = get_secret(session, keyring, owner_type=OWNER_TYPE, owner_id=row.id, purpose=REFRESH_TOKEN)
            before = {"token_fingerprint": row.token_fingerprint}
        _put_datev_tokens(session, keyring, row, tokens, now, facts.refresh_expires_at, facts.expiry_derived)
        row.offline_granted = facts.long_term
        row.scopes = clip(Connection.scopes, " ".join(facts.scopes))
        row.bound_client = facts.bound_client
        row.grantor_name = clip(Connection.grantor_name, grantor_name)
        row.grantor_sub = clip(Connection.grantor_sub, str(claims.get("sub", ""))) or None
        row.requested_at, row.requested_by = now, user.email
        row.requested_via = clip(Connection.requested_via, requested_via)
        row.last_refresh_at = None
        row.last_used_at = None
        row.last_test_at = row.last_test_ok = row.last_test_message = None
        row.invalid_at = row.invalid_reason = None
        row.deleted_at = row.deleted_by = None
        audit.record(session, actor=user.email, action="token.requested", entity_type="connection", entity_id=row.id,
                     before=before,
                     after={"company_id": row.company_id, "kind": kind.value, "token_fingerprint": row.token_fingerprint,
                            "bound_client": row.bound_client, "offline_granted": facts.long_term,
                            "refresh_expires_at": row.refresh_expires_at,
                            "refresh_expiry_derived": facts.expiry_derived, "grantor": grantor_name,
                            "requested_via": requested_via})
        return replaced


def store_lexware_key(engine: Engine, keyring: Keyring, *, company_id: int, api_key: str, expires_at: datetime,
                      organisation: str | None, message: str, actor: str) -> None:
    """Store a Lexware API key (already accepted by the provider) as the company's long-term connection."""
    now = utcnow()
    with unit_of_work(engine) as session:
        row, created = _slot_row(session, company_id, Provider.lexware, LONG_TERM_SLOT)
        assert row.id is not None
        before = None if created else {"token_fingerprint": row.token_fingerprint}
        put_secret(session, keyring, owner_type=OWNER_TYPE, owner_id=row.id, purpose=API_KEY, value=api_key)
        row.has_token, row.version = True, row.version + 1
        row.token_fingerprint = fingerprint(api_key)
        row.refresh_expires_at, row.refresh_expiry_derived = expires_at, False
        row.offline_granted, row.grantor_name = True, clip(Connection.grantor_name, organisation)
        row.requested_at, row.requested_by, row.requested_via = now, actor, None
        row.invalid_at = row.invalid_reason = row.deleted_at = row.deleted_by = None
        row.last_test_at, row.last_test_ok = now, True
        row.last_test_message = clip(Connection.last_test_message, message)
        row.updated_at = now
        session.add(row)
        audit.record(session, actor=actor, action="token.requested", entity_type="connection", entity_id=row.id,
                     before=before, after={"company_id": company_id, "provider": "lexware",
                                           "token_fingerprint": row.token_fingerprint,
                                           "refresh_expires_at": row.refresh_expires_at})
