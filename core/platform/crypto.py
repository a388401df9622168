"""Authenticated encryption of every secret the product stores.

AES-256-GCM with versioned keys. A sealed value reads `tdv1:<key id>:<base64url(nonce || ciphertext)>`:
the key id travels with the ciphertext, so several keys can be loaded at once and rotated. The
associated data binds each ciphertext to its owner and purpose (for example
`company:7:datev_refresh_token`): a ciphertext copied into another row fails to decrypt.

Keys come from `ENCRYPTION_KEYS` or a key file (`kid:base64key` entries, primary first), never
from the database. There is no plaintext fallback anywhere: a missing or wrong key is an error.
Error messages name key ids and owners, never values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
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
    """Loaded keys, primary (used for new ciphertexts) first."""

    keys: tuple[tuple[str, bytes], ...]

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
        kid = key_id_of(sealed)
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


def load_keyring(encryption_keys: str | None, key_file: Path) -> Keyring:
    """Keys from the environment value if set, else from the key file. Never a silent fallback."""
    if encryption_keys:
        return Keyring.parse(encryption_keys, "ENCRYPTION_KEYS")
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
