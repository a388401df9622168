"""Secrets at rest: authenticated encryption, versioned keys, owner binding, clear errors."""

from pathlib import Path

import pytest

from core.platform.crypto import (
    KeyConfigurationError,
    Keyring,
    SecretDecryptionError,
    ensure_local_key_file,
    fingerprint,
    load_keyring,
    new_key_entry,
)


def test_round_trip_and_key_id_travels_in_ciphertext(keyring: Keyring) -> None:
    sealed = keyring.seal("refresh-token-value", "company:1:datev_refresh_token")
    assert sealed.startswith("tdv1:test-k1:")
    assert "refresh-token-value" not in sealed
    assert keyring.open(sealed, "company:1:datev_refresh_token") == "refresh-token-value"


def test_same_value_encrypts_differently_each_time(keyring: Keyring) -> None:
    assert keyring.seal("x", "c") != keyring.seal("x", "c")


def test_ciphertext_bound_to_owner_fails_for_another_owner(keyring: Keyring) -> None:
    sealed = keyring.seal("token-of-company-1", "company:1:datev_refresh_token")
    with pytest.raises(SecretDecryptionError) as info:
        keyring.open(sealed, "company:2:datev_refresh_token")
    assert "token-of-company-1" not in str(info.value)


def test_ciphertext_bound_to_purpose(keyring: Keyring) -> None:
    sealed = keyring.seal("v", "company:1:lexware_api_key")
    with pytest.raises(SecretDecryptionError):
        keyring.open(sealed, "company:1:datev_refresh_token")


def test_tampered_ciphertext_is_rejected(keyring: Keyring) -> None:
    sealed = keyring.seal("value", "c")
    head, payload = sealed.rsplit(":", 1)
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    with pytest.raises(SecretDecryptionError):
        keyring.open(f"{head}:{flipped}", "c")


def test_old_key_still_decrypts_after_new_primary_is_added(keyring: Keyring) -> None:
    sealed = keyring.seal("value", "c")
    rotated = Keyring.parse(new_key_entry("k2") + "," + "test-k1:" + "A" * 43)
    assert rotated.primary_id == "k2"
    assert rotated.open(sealed, "c") == "value"
    resealed = rotated.reseal(sealed, "c")
    assert resealed.startswith("tdv1:k2:")
    with pytest.raises(SecretDecryptionError, match="key 'k2', which is not loaded"):
        keyring.open(resealed, "c")


def test_wrong_key_with_same_id_fails(keyring: Keyring) -> None:
    sealed = keyring.seal("value", "c")
    impostor = Keyring.parse("test-k1:" + "B" * 43)
    with pytest.raises(SecretDecryptionError):
        impostor.open(sealed, "c")


def test_plaintext_in_the_column_is_never_accepted(keyring: Keyring) -> None:
    with pytest.raises(SecretDecryptionError, match="not a Token Desk ciphertext"):
        keyring.open("plain-refresh-token", "c")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "No encryption key"),
        ("nocolon", "not of the form"),
        ("k1:!!notbase64!!", "not valid base64"),
        ("k1:" + "A" * 10, "32 are required"),
        ("k1:" + "A" * 43 + ",k1:" + "B" * 43, "appears twice"),
    ],
)
def test_malformed_keys_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(KeyConfigurationError, match=message):
        Keyring.parse(text)


def test_missing_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigurationError, match="does not exist"):
        load_keyring(None, tmp_path / "missing.keys")


def test_local_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "data" / "encryption.keys"
    assert ensure_local_key_file(path) is True
    assert path.stat().st_mode & 0o777 == 0o600
    first = path.read_text()
    assert "NEVER use this file in production" in first
    assert ensure_local_key_file(path) is False
    assert path.read_text() == first
    assert load_keyring(None, path).primary_id.startswith("local-")


def test_fingerprint_is_short_stable_and_not_the_value() -> None:
    assert fingerprint("abc") == fingerprint("abc")
    assert fingerprint("abc") != fingerprint("abd")
    assert len(fingerprint("abc")) == 10 and "abc" not in fingerprint("abc")
