"""Authenticated encryption of every secret the product stores.

AES-256-GCM with versioned keys. A sealed value reads `tdv1:<key id>:<base64url(nonce || ciphertext)>`:
the key id travels with the ciphertext, so several keys can be loaded at once and rotated. The
associated data binds each ciphertext to its owner and purpose (for example
`company:7:datev_refresh_token`): a ciphertext copied into another row fails to decrypt.

Keys come from `ENCRYPTION_KEYS` or a key file (`kid:base64key` entries, primary first), never
from the database. There is no plaintext fallback anywhere: a missing or wrong key is an error.
Error messages name key ids and owners, never values.

A keyring loaded from a source that can change while the process runs (the key file, or the
settings' environment and `.env`) carries that `KeySource`: `KeySource.current()` stats the source
(one `stat` per call, no read) and returns a freshly loaded keyring once it changed, so a running
dashboard or scheduler picks up `rotate-keys` without a restart. `open` consults the source when a
ciphertext names a key it does not hold; `seal` always uses the keyring's own primary, and
`core.platform.secret_store.put_secret` decides which keyring seals.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.platform.files import private_dir

FORMAT_PREFIX = "tdv1"
LOCAL_KEY_ID_PREFIX = "local-"
# Key ids that production refuses: the generated local key and the test suite's key.
DEMO_KEY_ID_PREFIXES = (LOCAL_KEY_ID_PREFIX, "test-")
_NONCE_BYTES = 12
_KEY_BYTES = 32

log = logging.getLogger(__name__)


class KeyConfigurationError(RuntimeError):
    """The configured keys are missing, malformed or do not fit the stored secrets."""


class SecretDecryptionError(RuntimeError):
    """A stored secret could not be decrypted (wrong key, wrong owner, or tampered)."""


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fingerprint(value: str) -> str:
    """A short, non-reversible identifier of a secret, safe to show and log."""
    return hashlib.sha256(value.encode()).hexdigest()[:10]


def key_fingerprint(raw: bytes) -> str:
    """Identifies key bytes whatever their key id, without revealing them (sha256, domain-separated)."""
    return hashlib.sha256(b"token-desk key fingerprint|" + raw).hexdigest()[:32]


def new_key_entry(kid: str | None = None) -> str:
    """A fresh `kid:base64key` entry for a key file or ENCRYPTION_KEYS."""
    kid = kid or "k" + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"{kid}:{_b64e(secrets.token_bytes(_KEY_BYTES))}"


@dataclass(frozen=True)
class Keyring:
    """Loaded keys, primary (used for new ciphertexts) first.

    `source` (not part of equality) is where the keys were loaded from, if that can change while the
    process runs; None for keys given as a value (a test's keyring, ENCRYPTION_KEYS of a Settings)."""

    keys: tuple[tuple[str, bytes], ...]
    source: KeySource | None = field(default=None, compare=False, repr=False)

    @property
    def primary_id(self) -> str:
        return self.keys[0][0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(kid for kid, _ in self.keys)

    @classmethod
    def parse(cls, text: str, source: str = "ENCRYPTION_KEYS") -> Keyring:
        entries = [
            part.strip()
            for line in text.splitlines()
            if not line.strip().startswith("#")
            for part in line.split(",")
            if part.strip()
        ]
        if not entries:
            raise KeyConfigurationError(f"No encryption key found in {source}.")
        keys: list[tuple[str, bytes]] = []
        for position, entry in enumerate(entries, start=1):
            kid, sep, encoded = entry.partition(":")
            if not sep or not kid or ":" in encoded:
                raise KeyConfigurationError(
                    f"Entry {position} in {source} is not of the form 'keyid:base64key'."
                )
            try:
                raw = _b64d(encoded)
            except (binascii.Error, ValueError):
                raise KeyConfigurationError(
                    f"Key '{kid}' in {source} is not valid base64."
                ) from None
            if len(raw) != _KEY_BYTES:
                raise KeyConfigurationError(
                    f"Key '{kid}' in {source} has {len(raw)} bytes; 32 are required."
                )
            if kid in {k for k, _ in keys}:
                raise KeyConfigurationError(f"Key id '{kid}' appears twice in {source}.")
            keys.append((kid, raw))
        return cls(tuple(keys))

    def fingerprints(self) -> dict[str, str]:
        """Key id → key_fingerprint of its bytes (safe to log and compare)."""
        return {kid: key_fingerprint(raw) for kid, raw in self.keys}

    def weak_key_ids(self) -> list[str]:
        """Keys that are obviously not random (e.g. the test suite's all-'A' key under another id)."""
        return [kid for kid, raw in self.keys if len(set(raw)) < 8]

    def entries(self) -> list[str]:
        """The keys as `kid:base64key` entries (for writing a key file)."""
        return [f"{kid}:{_b64e(raw)}" for kid, raw in self.keys]

    def _key(self, kid: str) -> bytes:
        for known, raw in self.keys:
            if known == kid:
                return raw
        raise SecretDecryptionError(
            f"The secret was encrypted with key '{kid}', which is not loaded "
            f"(loaded: {', '.join(self.key_ids)})."
        )

    def seal(self, plaintext: str, context: str) -> str:
        kid = self.primary_id
        nonce = os.urandom(_NONCE_BYTES)
        ct = AESGCM(self._key(kid)).encrypt(nonce, plaintext.encode(), _aad(kid, context))
        return f"{FORMAT_PREFIX}:{kid}:{_b64e(nonce + ct)}"

    def open(self, sealed: str, context: str) -> str:
        """Decrypt. A key id this keyring does not hold is looked up in its source once more (a
        rotation re-sealed the value with a key this process has not loaded yet)."""
        kid = key_id_of(sealed)
        if kid not in self.key_ids and self.source is not None:
            return self.source.current(force=True)._open(kid, sealed, context)
        return self._open(kid, sealed, context)

    def _open(self, kid: str, sealed: str, context: str) -> str:
        payload = _b64d(sealed.split(":", 2)[2])
        nonce, ct = payload[:_NONCE_BYTES], payload[_NONCE_BYTES:]
        try:
            return AESGCM(self._key(kid)).decrypt(nonce, ct, _aad(kid, context)).decode()
        except InvalidTag:
            raise SecretDecryptionError(
                f"The secret for '{context}' does not decrypt with key '{kid}': wrong key, "
                "a ciphertext that belongs to another owner, or a tampered value."
            ) from None

    def reseal(self, sealed: str, context: str) -> str:
        """Re-encrypt with the primary key (used by key rotation)."""
        return self.seal(self.open(sealed, context), context)


def key_id_of(sealed: str) -> str:
    parts = sealed.split(":", 2)
    if len(parts) != 3 or parts[0] != FORMAT_PREFIX or not parts[1]:
        raise SecretDecryptionError("The stored value is not a Token Desk ciphertext.")
    return parts[1]


def _aad(kid: str, context: str) -> bytes:
    return f"{FORMAT_PREFIX}|{kid}|{context}".encode()


def stat_signature(path: Path) -> Hashable:
    """What changes when a file is replaced or edited (inode, size, mtime), or None if it is missing."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


class KeySource:
    """A place keys are loaded from that may change while the process runs.

    `current()` compares the source's signature (`signature()`: a stat, cheap) with the one of the
    last load and loads again when it differs; `current(force=True)` loads again regardless (used
    when the database says the primary key changed). A load that fails keeps the previous keyring
    and logs an error once per signature, so a half-edited key file never stops a running process.
    """

    def __init__(self, name: str, signature: Callable[[], Hashable], load: Callable[[], Keyring]) -> None:
        self.name = name
        self._signature = signature
        self._load = load
        self._lock = threading.Lock()
        self._keyring: Keyring | None = None
        self._seen: Hashable = None
        self._failed: Hashable = None

    def load_now(self) -> Keyring:
        """Load at once; errors are raised (used when a process or command loads its keys)."""
        with self._lock:
            return self._reload(self._signature())

    def current(self, *, force: bool = False) -> Keyring:
        with self._lock:
            signature = self._signature()
            if self._keyring is not None and not force and signature == self._seen:
                return self._keyring
            if self._keyring is not None and not force and signature == self._failed:
                return self._keyring
            try:
                return self._reload(signature)
            except KeyConfigurationError as exc:
                if self._keyring is None:
                    raise
                if signature != self._failed:
                    log.error("encryption keys in %s changed but cannot be loaded (%s); keeping the loaded "
                              "keys %s", self.name, exc, ", ".join(self._keyring.key_ids))
                self._failed = signature
                return self._keyring

    def _reload(self, signature: Hashable) -> Keyring:
        fresh = replace(self._load(), source=self)
        if self._keyring is not None and fresh.key_ids != self._keyring.key_ids:
            log.info("encryption keys reloaded from %s: primary %s, loaded %s (before: %s)", self.name,
                     fresh.primary_id, ", ".join(fresh.key_ids), ", ".join(self._keyring.key_ids))
        self._keyring, self._seen, self._failed = fresh, signature, None
        return fresh


def read_key_file(key_file: Path) -> Keyring:
    """The keys of a key file, without a source. Never a silent fallback."""
    try:
        text = key_file.read_text()
    except FileNotFoundError:
        raise KeyConfigurationError(
            f"No encryption key: ENCRYPTION_KEYS is not set and the key file {key_file} does not "
            "exist. Run `make run` once for a local key, or supply your own."
        ) from None
    except OSError as exc:
        raise KeyConfigurationError(f"The key file {key_file} cannot be read: {exc.strerror}.") from None
    return Keyring.parse(text, str(key_file))


_file_sources: dict[Path, KeySource] = {}
_file_sources_lock = threading.Lock()


def file_key_source(key_file: Path) -> KeySource:
    """The one KeySource of a key file in this process (shared by every keyring loaded from it)."""
    path = Path(os.path.abspath(key_file))
    with _file_sources_lock:
        source = _file_sources.get(path)
        if source is None:
            source = _file_sources[path] = KeySource(str(path), lambda: stat_signature(path),
                                                     lambda: read_key_file(path))
        return source


def load_keyring(encryption_keys: str | None, key_file: Path) -> Keyring:
    """Keys from the environment value if set, else from the key file (read now; the keyring then
    follows the file: see KeySource). Never a silent fallback."""
    if encryption_keys:
        return Keyring.parse(encryption_keys, "ENCRYPTION_KEYS")
    return file_key_source(key_file).load_now()


LOCAL_KEY_FILE_HEADER = (
    "# Token Desk: LOCAL DEVELOPMENT KEY, generated on first run.\n"
    "# NEVER use this file in production: supply your own key with ENCRYPTION_KEYS or\n"
    "# ENCRYPTION_KEY_FILE. Losing it makes every stored token unreadable.\n"
    "# Format: one 'keyid:base64key' per line, the primary key first.\n"
)


# The generated local key is recognised by its value, not its id: its fingerprint is written into the
# key file's header and into a marker file next to it, and production refuses any loaded key whose
# fingerprint is listed there (core.platform.config), whatever it was renamed to.
LOCAL_FINGERPRINT_LABEL = "local-key-fingerprint:"
LOCAL_KEY_MARKER_SUFFIX = ".local-fingerprints"


def local_key_marker(key_file: Path) -> Path:
    """The marker file next to a key file that lists the fingerprints of generated local keys."""
    return key_file.with_name(key_file.name + LOCAL_KEY_MARKER_SUFFIX)


def local_key_fingerprints(key_files: Iterable[Path]) -> set[str]:
    """Fingerprints of generated local keys, from the headers of these key files and their markers."""
    found: set[str] = set()
    for key_file in key_files:
        for path in (key_file, local_key_marker(key_file)):
            try:
                text = path.read_text()
            except (OSError, UnicodeDecodeError):
                continue
            for line in text.splitlines():
                label, _sep, value = line.lstrip("#").strip().partition(" ")
                if label == LOCAL_FINGERPRINT_LABEL and value.strip():
                    found.add(value.strip())
    return found


def ensure_local_key_file(key_file: Path) -> bool:
    """Create a local development key file (mode 0600) if none exists, and record the key's
    fingerprint (header and marker file) so production recognises it. Returns True if created."""
    if key_file.exists():
        return False
    private_dir(key_file.parent)
    kid = LOCAL_KEY_ID_PREFIX + datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    entry = new_key_entry(kid)
    marked = f"# {LOCAL_FINGERPRINT_LABEL} {Keyring.parse(entry).fingerprints()[kid]}\n"
    marker = os.open(local_key_marker(key_file), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with os.fdopen(marker, "w") as fh:  # first: a key never exists without its marker
        fh.write(marked)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(LOCAL_KEY_FILE_HEADER + marked + entry + "\n")
    return True


def key_file_header(key_file: Path) -> str:
    """The comment lines at the top of a key file (kept when the file is rewritten)."""
    try:
        lines = key_file.read_text().splitlines(keepends=True)
    except OSError:
        return ""
    header: list[str] = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line if line.endswith("\n") else line + "\n")
    return "".join(header)


def write_key_file(key_file: Path, entries: Iterable[str], header: str = "") -> None:
    """Atomically replace a key file, keeping mode 0600."""
    tmp = key_file.with_suffix(key_file.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(header + "".join(e + "\n" for e in entries))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, key_file)
