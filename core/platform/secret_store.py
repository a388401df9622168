"""Store, read, erase and re-key encrypted secrets (tokens, API keys, PKCE verifiers).

Every secret is one `StoredSecret` row. Callers pass an open session so the secret commits in the
same transaction as the row that owns it (no half-written state).

Key rotation while processes run (docs: README, "Rotating the encryption key"):
- A keyring loaded from the key file or the process settings follows its source (crypto.KeySource):
  after `rotate-keys` rewrote the key file, the next seal or open in a running process uses the new
  key set. Callers may keep the keyring they got at start; `put_secret` and `get_secret` use its
  current state.
- `rotate-keys` records the new primary in the database (`key_check.primary_since`). Before sealing,
  `put_secret` checks that the primary it is about to use is not behind that record; if it is, it
  reloads once (the key file may just have changed), and if the process still does not hold the
  recorded primary (keys from an environment that a running process cannot re-read), it refuses
  with `KeyRotationPending`, a German "try later" error, and an English log line, except for values
  that cannot be fetched again (`UNREPEATABLE_SECRETS`: a provider's freshly issued or rotated
  token), which are sealed with the key the process holds, logged as an error, and re-sealed by the
  next `rotate-keys --reencrypt-only`; `remove-key` keeps a key that any secret still uses.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.platform.config import Settings, get_settings
from core.platform.crypto import (
    KeyConfigurationError,
    Keyring,
    KeySource,
    SecretDecryptionError,
    fingerprint,
    key_id_of,
    load_keyring,
    read_key_file,
    stat_signature,
)
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import KeyCheck, StoredSecret, secret_context, utcnow

log = logging.getLogger(__name__)

_KEY_CHECK_PLAINTEXT = "token-desk-key-check"
_KEY_CHECK_CONTEXT = "key_check"

# (owner_type, purpose) of secrets a caller cannot obtain again if sealing is refused: DATEV spends
# the old refresh token with every refresh and an authorization code once, so refusing would lose the
# company's token. These are sealed with the key the process holds (see the module docstring).
UNREPEATABLE_SECRETS = frozenset({("connection", "refresh_token"), ("connection", "access_token")})


class KeyRotationPending(UserFacingError):
    """The encryption key was rotated and this process does not hold the new primary key yet."""

    def __init__(self) -> None:
        super().__init__("Der Verschlüsselungsschlüssel wurde gewechselt und dieser Prozess kennt den neuen "
                         "noch nicht. Es wurde nichts gespeichert; bitte später erneut versuchen. (Betrieb: "
                         "Prozess mit den aktuellen Schlüsseln neu starten.)")


class _ProcessKeyring:
    """`get_keyring()`: the process-wide keyring from the settings, re-read when its source changed: the
    key file's inode, size or mtime (one stat per call), `.env` (at most once a second), or the
    ENCRYPTION_KEYS / ENCRYPTION_KEY_FILE values."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._source: KeySource | None = None

    def __call__(self) -> Keyring:
        with self._lock:
            if self._source is None:
                self._source = _settings_source()
                keyring = self._source.load_now()  # the first load: errors reach the caller
                return keyring
            source = self._source
        return source.current()

    def cache_clear(self) -> None:
        """Forget the loaded keys (tests; the next call loads them again)."""
        with self._lock:
            self._source = None


ENV_FILE_CHECK_SECONDS = 1.0  # `.env` is looked at once a second; the key file at every use (one stat)


@dataclass
class _Stamp:
    signature: object = None
    taken: float = float("-inf")


def _settings_source() -> KeySource:
    """The settings as a key source: the first load uses the process settings, later ones read them anew."""
    state: dict[str, Settings | None] = {"settings": None}
    env_file = _Stamp()

    def settings() -> Settings:
        return state["settings"] or get_settings()

    def env_file_signature() -> object:
        now = time.monotonic()
        if now - env_file.taken >= ENV_FILE_CHECK_SECONDS:
            env_file.signature, env_file.taken = stat_signature(Path(".env")), now
        return env_file.signature

    def signature() -> tuple[object, ...]:
        current = settings()
        return (os.environ.get("ENCRYPTION_KEYS"), os.environ.get("ENCRYPTION_KEY_FILE"), env_file_signature(),
                None if current.encryption_keys else stat_signature(current.encryption_key_file))

    def load() -> Keyring:
        fresh = get_settings() if state["settings"] is None else _fresh_settings()
        state["settings"] = fresh
        if fresh.encryption_keys:
            return Keyring.parse(fresh.encryption_keys, "ENCRYPTION_KEYS")
        return read_key_file(fresh.encryption_key_file)

    return KeySource("the settings (ENCRYPTION_KEYS or ENCRYPTION_KEY_FILE)", signature, load)


def _fresh_settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # noqa: BLE001  (any settings error: keep the loaded keys, KeySource logs it)
        raise KeyConfigurationError(f"the settings cannot be read again ({type(exc).__name__})") from None


get_keyring = _ProcessKeyring()


def keyring_from_settings(settings: Settings) -> Keyring:
    """The keys of `settings`, read now (a key file's keyring then follows the file)."""
    return load_keyring(settings.encryption_keys, settings.encryption_key_file)


def current_keyring(keyring: Keyring) -> Keyring:
    """`keyring` as its source holds it now (itself if it has no source). One stat, no read, unless changed."""
    return keyring.source.current() if keyring.source is not None else keyring


def _recorded_primaries(session: Session) -> dict[str, datetime]:
    rows = session.exec(select(KeyCheck.key_id, KeyCheck.primary_since)
                        .where(col(KeyCheck.primary_since).is_not(None))).all()
    return {kid: since for kid, since in rows if since is not None}


def recorded_primary(session: Session) -> str | None:
    """The primary key id recorded by `rotate-keys` (the latest stamp), or None if none was recorded."""
    recorded = _recorded_primaries(session)
    return max(recorded, key=lambda kid: recorded[kid]) if recorded else None


def superseded_by(session: Session, keyring: Keyring) -> str | None:
    """The recorded primary if `keyring`'s primary is behind it, else None.

    Not behind: no primary recorded; the keyring's primary is the recorded one; or the keyring is
    ahead (its primary was never recorded and the recorded one is among its older keys: a rotation
    whose key file is written but whose record is not yet)."""
    recorded = _recorded_primaries(session)
    if not recorded:
        return None
    latest = max(recorded, key=lambda kid: recorded[kid])
    mine = keyring.primary_id
    if mine == latest or (mine not in recorded and latest in keyring.key_ids[1:]):
        return None
    return latest


def _sealing_keyring(session: Session, keyring: Keyring, owner_type: str, purpose: str) -> Keyring:
    ring = current_keyring(keyring)
    recorded = superseded_by(session, ring)
    if recorded is None:
        return ring
    if keyring.source is not None:  # the key file may have changed a moment ago: read it once more
        ring = keyring.source.current(force=True)
        if superseded_by(session, ring) is None:
            return ring
    if (owner_type, purpose) in UNREPEATABLE_SECRETS:
        log.error("sealing a %s %s with key '%s' although the recorded primary key is '%s', which this process "
                  "has not loaded: the value cannot be fetched again. Restart this process with the current "
                  "keys, then run `python -m core.cli rotate-keys --reencrypt-only`.", owner_type, purpose,
                  ring.primary_id, recorded)
        return ring
    log.error("refusing to seal a %s %s with key '%s': the recorded primary key is '%s', which this process has "
              "not loaded. Restart this process with the current keys.", owner_type, purpose, ring.primary_id,
              recorded)
    raise KeyRotationPending()


def put_secret(
    session: Session, keyring: Keyring, *, owner_type: str, owner_id: int, purpose: str, value: str
) -> StoredSecret:
    """Insert or replace the secret of (owner, purpose), sealed with the current primary key (see the
    module docstring; may raise KeyRotationPending). Returns the row (no value on it in clear)."""
    context = secret_context(owner_type, owner_id, purpose)
    ring = _sealing_keyring(session, keyring, owner_type, purpose)
    row = _find(session, owner_type, owner_id, purpose)
    sealed = ring.seal(value, context)
    if row is None:
        row = StoredSecret(owner_type=owner_type, owner_id=owner_id, purpose=purpose, ciphertext=sealed,
                           key_id=key_id_of(sealed), fingerprint=fingerprint(value))
    else:
        row.ciphertext, row.key_id, row.fingerprint = sealed, key_id_of(sealed), fingerprint(value)
        row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return row


def get_secret(session: Session, keyring: Keyring, *, owner_type: str, owner_id: int, purpose: str) -> str | None:
    row = _find(session, owner_type, owner_id, purpose)
    if row is None:
        return None
    return keyring.open(row.ciphertext, row.context)  # follows the keyring's source for a new key id


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
    bytes fails here), the canary of a new key is written, every key id that stored secrets use
    must be loaded, and the loaded primary must not be behind the one `rotate-keys` recorded (a
    process started with an outdated key set refuses to start). Safe when several processes start
    at once.
    """
    for kid, raw in keyring.keys:
        _check_canary(engine, kid, Keyring(((kid, raw),)))
    with unit_of_work(engine) as session:
        in_use = tuple(sorted(set(session.exec(select(StoredSecret.key_id)).all())))
        count = len(session.exec(select(StoredSecret.id)).all())
        behind = superseded_by(session, keyring)
    missing = [kid for kid in in_use if kid not in keyring.key_ids]
    if missing:
        raise KeyConfigurationError(
            f"Stored secrets use key(s) {', '.join(missing)}, which are not loaded "
            f"(loaded: {', '.join(keyring.key_ids)}). Add them to ENCRYPTION_KEYS or the key file."
        )
    if behind is not None:
        raise KeyConfigurationError(
            f"The primary encryption key is '{behind}' (recorded by rotate-keys), but the loaded primary is "
            f"'{keyring.primary_id}' (loaded: {', '.join(keyring.key_ids)}). Put '{behind}' first in "
            "ENCRYPTION_KEYS or the key file."
        )
    return KeyringReport(secrets=count, key_ids_in_use=in_use, checked_keys=keyring.key_ids)


def record_primary(engine: Engine, keyring: Keyring) -> bool:
    """Record `keyring`'s primary as the primary key (rotate-keys; verify_keyring first, for the canaries).

    Its older keys that were never recorded get a stamp from before (their canary's creation): they
    were primaries once, so a process that still puts one of them first counts as behind. True if the
    primary was newly recorded."""
    now = utcnow()
    with unit_of_work(engine) as session:
        if recorded_primary(session) == keyring.primary_id:
            return False
        for position, kid in enumerate(keyring.key_ids):
            canary = session.get(KeyCheck, kid)
            if canary is None:
                raise KeyConfigurationError(f"Key '{kid}' has no key check in the database: run check-keys first.")
            if position == 0:
                canary.primary_since = now
            elif canary.primary_since is None:
                canary.primary_since = min(canary.created_at, now - timedelta(microseconds=position))
            session.add(canary)
        return True


def primary_record(engine: Engine) -> tuple[str, datetime] | None:
    """(recorded primary key id, since when), or None."""
    with unit_of_work(engine) as session:
        recorded = _recorded_primaries(session)
    if not recorded:
        return None
    latest = max(recorded, key=lambda kid: recorded[kid])
    return latest, recorded[latest]


def reencrypt_all(engine: Engine, keyring: Keyring, batch_size: int = 200) -> int:
    """Re-seal every stored secret whose key is not the primary. Returns how many were re-sealed.

    Works in short batches (each its own transaction) so a long rotation never blocks the
    scheduler; safe to re-run after an interruption. Each row is written back only if its
    ciphertext is still the one that was read (compare-and-swap): a process that stored a new value
    meanwhile (a refreshed DATEV token) must never get the old, spent value back. On PostgreSQL's
    READ COMMITTED a plain read-modify-write did exactly that; a row changed meanwhile is skipped
    (its writer sealed it just now; `check-keys` names any key still in use).
    """
    done = 0
    after_id = 0
    while True:
        with unit_of_work(engine) as session:
            rows = session.exec(
                select(StoredSecret).where(StoredSecret.key_id != keyring.primary_id, col(StoredSecret.id) > after_id)
                .order_by(col(StoredSecret.id)).limit(batch_size)
            ).all()
            for row in rows:
                resealed = keyring.reseal(row.ciphertext, row.context)
                result = session.exec(
                    update(StoredSecret)
                    .where(col(StoredSecret.id) == row.id, col(StoredSecret.ciphertext) == row.ciphertext)
                    .values(ciphertext=resealed, key_id=key_id_of(resealed), updated_at=utcnow())
                )
                done += result.rowcount
            session.expunge_all()
        if rows and rows[-1].id is not None:
            after_id = rows[-1].id
        if len(rows) < batch_size:
            return done
