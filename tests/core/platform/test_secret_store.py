"""Stored secrets on SQLite and PostgreSQL: binding, start-up key check, rotation round trip."""

import pytest
from sqlalchemy import Engine, text
from sqlmodel import select

from core.platform.crypto import KeyConfigurationError, Keyring, SecretDecryptionError, new_key_entry
from core.platform.db import unit_of_work
from core.platform.models import StoredSecret
from core.platform.secret_store import erase_secret, get_secret, put_secret, reencrypt_all, verify_keyring
from testkit.workers import run_together
from tests.support import TEST_KEY_ENTRY


def _put(engine: Engine, keyring: Keyring, owner_id: int, value: str, purpose: str = "datev_refresh_token") -> None:
    with unit_of_work(engine) as s:
        put_secret(s, keyring, owner_type="company", owner_id=owner_id, purpose=purpose, value=value)


def _get(engine: Engine, keyring: Keyring, owner_id: int, purpose: str = "datev_refresh_token") -> str | None:
    with unit_of_work(engine) as s:
        return get_secret(s, keyring, owner_type="company", owner_id=owner_id, purpose=purpose)


def test_secret_is_stored_encrypted_and_read_back(engine: Engine, keyring: Keyring) -> None:
    _put(engine, keyring, 1, "rt-secret-value-1")
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT ciphertext, fingerprint FROM stored_secret")).one()
    assert "rt-secret-value-1" not in raw[0]
    assert raw[0].startswith("tdv1:test-k1:")
    assert _get(engine, keyring, 1) == "rt-secret-value-1"


def test_replacing_a_secret_keeps_one_row(engine: Engine, keyring: Keyring) -> None:
    _put(engine, keyring, 1, "first")
    _put(engine, keyring, 1, "second")
    assert _get(engine, keyring, 1) == "second"
    with unit_of_work(engine) as s:
        assert len(s.exec(select(StoredSecret)).all()) == 1


def test_swapped_ciphertext_between_companies_fails_to_decrypt(engine: Engine, keyring: Keyring) -> None:
    _put(engine, keyring, 1, "token-of-company-1")
    _put(engine, keyring, 2, "token-of-company-2")
    with engine.begin() as conn:
        c1 = conn.execute(text("SELECT ciphertext FROM stored_secret WHERE owner_id = 1")).scalar_one()
        conn.execute(text("UPDATE stored_secret SET ciphertext = :c WHERE owner_id = 2"), {"c": c1})
    with pytest.raises(SecretDecryptionError) as info:
        _get(engine, keyring, 2)
    assert "token-of-company" not in str(info.value)
    assert _get(engine, keyring, 1) == "token-of-company-1"


def test_erase_removes_the_secret(engine: Engine, keyring: Keyring) -> None:
    _put(engine, keyring, 1, "v")
    with unit_of_work(engine) as s:
        assert erase_secret(s, owner_type="company", owner_id=1, purpose="datev_refresh_token")
    assert _get(engine, keyring, 1) is None


def test_start_check_rejects_a_different_key_with_the_same_id(engine: Engine, keyring: Keyring) -> None:
    verify_keyring(engine, keyring)  # writes the canary
    impostor = Keyring.parse("test-k1:" + "B" * 43)
    with pytest.raises(KeyConfigurationError, match="not the key this database was written with"):
        verify_keyring(engine, impostor)


def test_start_check_rejects_a_missing_key(engine: Engine, keyring: Keyring) -> None:
    _put(engine, keyring, 1, "v")
    other = Keyring.parse(new_key_entry("other"))
    with pytest.raises(KeyConfigurationError, match="use key\\(s\\) test-k1, which are not loaded"):
        verify_keyring(engine, other)


def test_rotation_round_trip(engine: Engine, keyring: Keyring) -> None:
    values = {i: f"secret-{i}" for i in range(1, 8)}
    for owner, value in values.items():
        _put(engine, keyring, owner, value)
    verify_keyring(engine, keyring)
    rotated = Keyring.parse(new_key_entry("k2") + "," + TEST_KEY_ENTRY)
    verify_keyring(engine, rotated)
    assert reencrypt_all(engine, rotated, batch_size=3) == 7
    assert reencrypt_all(engine, rotated) == 0  # idempotent
    report = verify_keyring(engine, rotated)
    assert report.key_ids_in_use == ("k2",)
    only_new = Keyring(tuple(k for k in rotated.keys if k[0] == "k2"))
    verify_keyring(engine, only_new)  # the old key can now be removed
    for owner, value in values.items():
        assert _get(engine, only_new, owner) == value


def test_processes_starting_together_all_pass_the_key_check(engine: Engine, database_url: str) -> None:
    results = run_together("tests.support.keycheck_worker", [[database_url]] * 4, timeout=60)
    assert [r.returncode for r in results] == [0] * 4, [r.stderr[-1500:] for r in results]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM key_check")).scalar_one() == 1
