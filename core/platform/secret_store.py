"""Store, read, erase and re-key encrypted secrets (tokens, API keys, PKCE verifiers).

Every secret is one `StoredSecret` row. Callers pass an open session so the secret commits in the
same transaction as the row that owns it (no half-written state).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from core.platform.config import Settings, get_settings
from core.platform.crypto import (
    KeyConfigurationError,
    Keyring,
    SecretDecryptionError,
    fingerprint,
    key_id_of,
    load_keyring,
)
from core.platform.db import unit_of_work
from core.platform.models import KeyCheck, StoredSecret, secret_context, utcnow

_KEY_CHECK_PLAINTEXT = "token-desk-key-check"
_KEY_CHECK_CONTEXT = "key_check"


@functools.cache
def get_keyring() -> Keyring:
    """The process-wide keyring from the settings."""
    settings = get_settings()
    return keyring_from_settings(settings)


def keyring_from_settings(settings: Settings) -> Keyring:
    return load_keyring(settings.encryption_keys, settings.encryption_key_file)


def put_secret(
    session: Session, keyring: Keyring, *, owner_type: str, owner_id: int, purpose: str, value: str
) -> StoredSecret:
    """Insert or replace the secret of (owner, purpose). Returns the row (no value on it in clear)."""
    context = secret_context(owner_type, owner_id, purpose)
    row = _find(session, owner_type, owner_id, purpose)
    sealed = keyring.seal(value, context)
    if row is None:
        row = StoredSecret(owner_type=owner_type, owner_id=owner_id, purpose=purpose, ciphertext=sealed,
                           key_id=keyring.primary_id, fingerprint=fingerprint(value))
    else:
        row.ciphertext, row.key_id, row.fingerprint = sealed, keyring.primary_id, fingerprint(value)
        row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return row


def get_secret(session: Session, keyring: Keyring, *, owner_type: str, owner_id: int, purpose: str) -> str | None:
    row = _find(session, owner_type, owner_id, purpose)
    if row is None:
        return None
    return keyring.open(row.ciphertext, row.context)


def secret_fingerprint(session: Session, *, owner_type: str, owner_id: int, purpose: str) -> str | None:
    row = _find(session, owner_type, owner_id, purpose)
    return row.fingerprint if row else None


def erase_secret(session: Session, *, owner_type: str, owner_id: int, purpose: str) -> bool:
    row = _find(session, owner_type, owner_id, purpose)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def _find(session: Session, owner_type: str, owner_id: int, purpose: str) -> StoredSecret | None:
    return session.exec(
        select(StoredSecret).where(
            StoredSecret.owner_type == owner_type,
            StoredSecret.owner_id == owner_id,
            StoredSecret.purpose == purpose,
        )
    ).first()


@dataclass(frozen=True)
class KeyringReport:
    secrets: int
    key_ids_in_use: tuple[str, ...]
    checked_keys: tuple[str, ...]


def _check_canary(engine: Engine, kid: str, single: Keyring) -> None:
    """Write the key's canary if it has none (tolerating a concurrent first writer), then verify it."""
    for _ in range(2):
        with unit_of_work(engine) as session:
            canary = session.get(KeyCheck, kid)
            if canary is not None:
                try:
                    ok = single.open(canary.ciphertext, _KEY_CHECK_CONTEXT) == _KEY_CHECK_PLAINTEXT
                except SecretDecryptionError:
                    ok = False
                if not ok:
                    raise KeyConfigurationError(
                        f"Encryption key '{kid}' is not the key this database was written with. "
                        "Load the original key (ENCRYPTION_KEYS or ENCRYPTION_KEY_FILE)."
                    )
                return
        try:
            with unit_of_work(engine) as session:
                session.add(KeyCheck(key_id=kid, ciphertext=single.seal(_KEY_CHECK_PLAINTEXT, _KEY_CHECK_CONTEXT)))
            return
        except IntegrityError:  # another process (e.g. a second scheduler starting) wrote it first: verify theirs
            continue


def verify_keyring(engine: Engine, keyring: Keyring) -> KeyringReport:
    """Fail loudly at start when the loaded keys do not fit the database.

    Each loaded key is checked against its sealed canary (a key with the right id but the wrong
    bytes fails here), the canary of a new key is written, and every key id that stored secrets
    use must be loaded. Safe when several processes start at once.
    """
    for kid, raw in keyring.keys:
        _check_canary(engine, kid, Keyring(((kid, raw),)))
    with unit_of_work(engine) as session:
        in_use = tuple(sorted(set(session.exec(select(StoredSecret.key_id)).all())))
        count = len(session.exec(select(StoredSecret.id)).all())
    missing = [kid for kid in in_use if kid not in keyring.key_ids]
    if missing:
        raise KeyConfigurationError(
            f"Stored secrets use key(s) {', '.join(missing)}, which are not loaded "
            f"(loaded: {', '.join(keyring.key_ids)}). Add them to ENCRYPTION_KEYS or the key file."
        )
    return KeyringReport(secrets=count, key_ids_in_use=in_use, checked_keys=keyring.key_ids)


def reencrypt_all(engine: Engine, keyring: Keyring, batch_size: int = 200) -> int:
    """Re-seal every stored secret whose key is not the primary. Returns how many were re-sealed.

    Works in short batches (each its own transaction) so a long rotation never blocks the
    scheduler; safe to re-run after an interruption.
    """
    done = 0
    while True:
        with unit_of_work(engine) as session:
            rows = session.exec(
                select(StoredSecret).where(StoredSecret.key_id != keyring.primary_id).limit(batch_size)
            ).all()
            for row in rows:
                row.ciphertext = keyring.reseal(row.ciphertext, row.context)
                row.key_id = key_id_of(row.ciphertext)
                row.updated_at = utcnow()
                session.add(row)
        done += len(rows)
        if len(rows) < batch_size:
            return done
