"""Key rotation while processes run (issue 9, "key rotation breaks a running process"), on SQLite and
PostgreSQL.

A process that seals uses the current primary key: its keyring follows the key file (and the
settings' ENCRYPTION_KEYS), `put_secret` checks the primary that `rotate-keys` recorded in the
database and reloads or refuses (a value that cannot be fetched again is kept, sealed with the key
the process holds), and `remove-key` refuses while a secret or a live process could still use the
key. The last test rotates and removes a key while a scheduler-like process refreshes DATEV tokens.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlmodel import col, select

from core import cli, heartbeat
from core.connections import store
from core.connections.access import get_valid_token
from core.platform import crypto
from core.platform.config import Settings, get_settings
from core.platform.crypto import KeyConfigurationError, Keyring
from core.platform.db import make_engine, unit_of_work
from core.platform.models import Company, Connection, SchedulerHeartbeat, StoredSecret, utcnow
from core.platform.secret_store import (
    KeyRotationPending,
    get_keyring,
    get_secret,
    keyring_from_settings,
    put_secret,
    record_primary,
    reencrypt_all,
    verify_keyring,
)
from emulator.server import EmulatorServer
from testkit.workers import ROOT
from tests.support.fleet import wait_until
from tests.support.world import World, make_world

K1 = crypto.new_key_entry("k1-alt")
K2 = crypto.new_key_entry("k2-neu")


def kid(entry: str) -> str:
    return entry.split(":", 1)[0]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "encryption.keys"
    crypto.write_key_file(path, [K1])
    return path


def file_settings(database_url: str, key_file: Path) -> Settings:
    return Settings(_env_file=None, app_env="test", database_url=database_url, encryption_keys=None,
                    encryption_key_file=key_file)


def run(command: Callable[[Settings, argparse.Namespace], int], settings: Settings, *argv: str) -> int:
    return command(settings, cli.build_parser().parse_args(list(argv)))


def secret_keys(engine: Engine) -> set[str]:
    with unit_of_work(engine) as session:
        return set(session.exec(select(StoredSecret.key_id)).all())


def put(engine: Engine, keyring: Keyring, value: str, *, owner_type: str = "test", purpose: str = "value",
        owner_id: int = 1) -> str:
    """Seal a secret in its own transaction; returns the key id it was sealed with."""
    with unit_of_work(engine) as session:
        return put_secret(session, keyring, owner_type=owner_type, owner_id=owner_id, purpose=purpose,
                          value=value).key_id


def read(engine: Engine, keyring: Keyring, *, owner_type: str = "test", purpose: str = "value",
         owner_id: int = 1) -> str | None:
    with unit_of_work(engine) as session:
        return get_secret(session, keyring, owner_type=owner_type, owner_id=owner_id, purpose=purpose)


# --- the process-wide keyring follows its source ------------------------------------------------


@pytest.fixture
def process_keys_from_file(monkeypatch: pytest.MonkeyPatch, key_file: Path) -> Path:
    monkeypatch.delenv("ENCRYPTION_KEYS", raising=False)
    monkeypatch.setenv("ENCRYPTION_KEY_FILE", str(key_file))
    get_settings.cache_clear()
    get_keyring.cache_clear()
    return key_file


def test_get_keyring_returns_a_fresh_keyring_when_the_key_file_changed(process_keys_from_file: Path) -> None:
    first = get_keyring()
    assert first.primary_id == kid(K1)
    assert get_keyring() is first  # unchanged file: the loaded keyring, no read

    crypto.write_key_file(process_keys_from_file, [K2, K1])  # what rotate-keys does

    fresh = get_keyring()
    assert fresh.key_ids == (kid(K2), kid(K1))
    assert first.source is not None and crypto.KeySource.current(first.source).primary_id == kid(K2)


def test_get_keyring_follows_the_encryption_keys_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCRYPTION_KEYS", K1)
    get_settings.cache_clear()
    get_keyring.cache_clear()
    assert get_keyring().primary_id == kid(K1)
    monkeypatch.setenv("ENCRYPTION_KEYS", f"{K2},{K1}")
    assert get_keyring().key_ids == (kid(K2), kid(K1))


def test_a_broken_key_file_keeps_the_loaded_keys(process_keys_from_file: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    assert get_keyring().primary_id == kid(K1)
    process_keys_from_file.write_text("halb geschrieben:")
    with caplog.at_level(logging.ERROR, logger="core.platform.crypto"):
        assert get_keyring().primary_id == kid(K1)
    assert "cannot be loaded" in caplog.text
    assert K1.split(":", 1)[1] not in caplog.text


# --- sealing uses the current primary -----------------------------------------------------------


def test_a_process_started_before_rotate_keys_seals_with_the_new_primary(engine: Engine, database_url: str,
                                                                         key_file: Path) -> None:
    settings = file_settings(database_url, key_file)
    held = keyring_from_settings(settings)  # loaded at start and kept, as the scheduler's JobContext does
    verify_keyring(engine, held)
    assert put(engine, held, "vorher") == kid(K1)

    assert run(cli.cmd_rotate_keys, settings, "rotate-keys") == 0
    new_primary = keyring_from_settings(settings).primary_id

    assert put(engine, held, "nachher", owner_id=2) == new_primary  # not the old key
    assert read(engine, held) == "vorher" and read(engine, held, owner_id=2) == "nachher"  # re-sealed rows too
    assert secret_keys(engine) == {new_primary}


def test_a_process_that_cannot_reload_refuses_to_seal(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Keys from an environment that a running process cannot re-read (no source to reload from)."""
    old = Keyring.parse(K1)
    verify_keyring(engine, old)
    rotated = Keyring.parse(f"{K2},{K1}")
    verify_keyring(engine, rotated)
    assert record_primary(engine, rotated)  # rotate-keys --reencrypt-only after a restart elsewhere

    with caplog.at_level(logging.ERROR, logger="core.platform.secret_store"), \
            pytest.raises(KeyRotationPending) as info:
        put(engine, old, "pkce-verifier-value", owner_type="pending_authorization", purpose="pkce_verifier")

    assert "bitte später erneut versuchen" in info.value.message  # German, for the page
    assert secret_keys(engine) == set()  # nothing sealed with the old key
    assert "refusing to seal" in caplog.text and f"'{kid(K2)}'" in caplog.text
    assert "pkce-verifier-value" not in caplog.text


def test_a_freshly_rotated_token_is_never_dropped(engine: Engine, database_url: str, key_file: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A DATEV refresh token cannot be fetched again: it is kept (with the held key), and that key stays."""
    old = Keyring.parse(K1)
    verify_keyring(engine, old)
    rotated = Keyring.parse(f"{K2},{K1}")
    verify_keyring(engine, rotated)
    record_primary(engine, rotated)

    with caplog.at_level(logging.ERROR, logger="core.platform.secret_store"):
        assert put(engine, old, "neues-refresh-token", owner_type="connection", purpose="refresh_token") == kid(K1)
    assert read(engine, rotated, owner_type="connection", purpose="refresh_token") == "neues-refresh-token"
    assert "cannot be fetched again" in caplog.text and "neues-refresh-token" not in caplog.text

    crypto.write_key_file(key_file, rotated.entries())
    settings = file_settings(database_url, key_file)
    assert run(cli.cmd_remove_key, settings, "remove-key", kid(K1), "--force") == 1  # a secret uses it: never
    assert run(cli.cmd_rotate_keys, settings, "rotate-keys", "--reencrypt-only") == 0
    assert secret_keys(engine) == {kid(K2)}


def test_a_process_started_with_an_outdated_key_set_refuses_to_start(engine: Engine) -> None:
    rotated = Keyring.parse(f"{K2},{K1}")
    verify_keyring(engine, rotated)
    record_primary(engine, rotated)
    with pytest.raises(KeyConfigurationError, match=f"primary encryption key is '{kid(K2)}'"):
        verify_keyring(engine, Keyring.parse(f"{K1},{K2}"))


# --- remove-key ----------------------------------------------------------------------------------


def test_remove_key_refuses_while_an_old_process_lives(engine: Engine, database_url: str, key_file: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    settings = file_settings(database_url, key_file)
    verify_keyring(engine, keyring_from_settings(settings))
    heartbeat.start(engine, "scheduler-alt", key_ids=[kid(K1)])  # started before the rotation, never reloaded
    heartbeat.beat_dashboard(engine, [kid(K1)])  # a dashboard process too
    assert run(cli.cmd_rotate_keys, settings, "rotate-keys") == 0
    capsys.readouterr()

    assert run(cli.cmd_remove_key, settings, "remove-key", kid(K1)) == 1
    said = capsys.readouterr().out
    assert "scheduler scheduler-alt" in said and "dashboard dashboard-" in said and f"'{kid(K1)}'" in said
    assert kid(K1) in keyring_from_settings(settings).key_ids  # still there

    heartbeat.tick(engine, "scheduler-alt", key_ids=[kid(K2), kid(K1)])  # reloaded (or restarted)
    heartbeat.beat_dashboard(engine, [kid(K2), kid(K1)])
    assert run(cli.cmd_remove_key, settings, "remove-key", kid(K1)) == 0
    assert keyring_from_settings(settings).key_ids == (keyring_from_settings(settings).primary_id,)


def test_remove_key_ignores_stopped_and_stale_processes_and_force_overrides(
        engine: Engine, database_url: str, key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = file_settings(database_url, key_file)
    verify_keyring(engine, keyring_from_settings(settings))
    for name in ("gestoppt", "abgestuerzt", "lebt"):
        heartbeat.start(engine, name, key_ids=[kid(K1)])
    heartbeat.stop(engine, "gestoppt")
    with unit_of_work(engine) as session:
        session.exec(update(SchedulerHeartbeat).where(col(SchedulerHeartbeat.instance_id) == "abgestuerzt")
                     .values(last_tick_at=utcnow() - heartbeat.LIVE_WINDOW - timedelta(seconds=1)))
    assert run(cli.cmd_rotate_keys, settings, "rotate-keys") == 0
    capsys.readouterr()

    assert run(cli.cmd_remove_key, settings, "remove-key", kid(K1)) == 1
    said = capsys.readouterr().out
    assert "lebt" in said and "gestoppt" not in said and "abgestuerzt" not in said
    assert run(cli.cmd_remove_key, settings, "remove-key", kid(K1), "--force") == 0
    assert "--force" in capsys.readouterr().out


def test_every_dashboard_page_run_reports_the_processes_key_set(sqlite_url: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from ui.services import services

    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("ENCRYPTION_KEYS", K1)
    get_settings.cache_clear()
    get_keyring.cache_clear()
    _settings, engine, _keyring = services()  # what every page calls first
    [row] = heartbeat.live_processes(engine)
    assert (row.kind, row.pid, heartbeat.held_key_ids(row)) == ("dashboard", os.getpid(), (kid(K1),))

    monkeypatch.setenv("ENCRYPTION_KEYS", f"{K2},{K1}")  # the process's keys changed: reported at once
    services()
    [row] = heartbeat.live_processes(engine)
    assert heartbeat.held_key_ids(row) == (kid(K2), kid(K1))


def test_the_scheduler_status_counts_no_dashboard(engine: Engine) -> None:
    heartbeat.beat_dashboard(engine, [kid(K1)])
    assert not heartbeat.status(engine, stale_after=timedelta(minutes=1)).is_running
    assert [row.kind for row in heartbeat.live_processes(engine)] == ["dashboard"]


# --- while a scheduler refreshes tokens ---------------------------------------------------------


class Worker:
    """tests/support/rotation_worker.py as a process (released with "go", stopped with "stop")."""

    def __init__(self, database_url: str, instance_id: str, mode: str, env: dict[str, str], log: Path) -> None:
        self.instance_id = instance_id
        self._log = open(log, "w")  # closed in finish()/kill()
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.rotation_worker", database_url,
                                      instance_id, mode], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.log_path = log
        assert self.proc.stdout is not None and self.proc.stdin is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", f"{line!r}: {log.read_text()[-3000:]}"
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        out, _ = self.proc.communicate(timeout=120)
        self._log.close()
        assert self.proc.returncode == 0, self.log_path.read_text()[-3000:]
        summary: dict = json.loads(out.strip().splitlines()[-1])
        return summary

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.kill()


def versions(engine: Engine) -> dict[int, int]:
    with unit_of_work(engine) as session:
        rows = session.exec(select(Connection.id, Connection.version).where(col(Connection.has_token).is_(True))).all()
    return {cid: version for cid, version in rows if cid is not None}


def primary_of(engine: Engine, instance_id: str) -> str | None:
    with unit_of_work(engine) as session:
        row = session.get(SchedulerHeartbeat, instance_id)
        keys = heartbeat.held_key_ids(row) if row is not None else None
    return keys[0] if keys else None


@pytest.mark.slow
def test_rotate_and_remove_a_key_while_a_scheduler_refreshes_tokens(
        engine: Engine, database_url: str, key_file: Path, tmp_path: Path, settings_for: Callable[..., Settings],
        emulator: EmulatorServer, workers: list[Worker], capsys: pytest.CaptureFixture[str]) -> None:
    settings = settings_for(database_url, encryption_keys=None, encryption_key_file=key_file)
    keyring = keyring_from_settings(settings)
    world: World = make_world(engine, database_url, keyring, settings, emulator.base_url)
    with unit_of_work(engine) as session:
        other = session.exec(select(Company).where(Company.client_number == 2)).one()  # Beispiel Handel KG
    assert other.id is not None
    assert world.request_token().ok and replace(world, company_id=other.id).request_token().ok
    verify_keyring(engine, keyring)
    assert secret_keys(engine) == {kid(K1)}

    base = {k: v for k, v in os.environ.items() if k not in ("ENCRYPTION_KEYS", "ENCRYPTION_KEY_FILE")}
    common = {**base, "APP_ENV": "test", "DATABASE_URL": database_url, "EMULATOR_URL": emulator.base_url}
    scheduler = Worker(database_url, "scheduler-1", "refresh", {**common, "ENCRYPTION_KEY_FILE": str(key_file)},
                       tmp_path / "scheduler-1.log")
    workers.append(scheduler)
    old_process = Worker(database_url, "alt-env", "idle", {**common, "ENCRYPTION_KEYS": K1}, tmp_path / "alt.log")
    workers.append(old_process)
    start = versions(engine)
    wait_until(lambda: all(v >= start[c] + 3 for c, v in versions(engine).items()), timeout=60,
               what="a few refreshes of every token before the rotation")

    assert run(cli.cmd_rotate_keys, settings, "rotate-keys") == 0  # while the scheduler refreshes
    new = keyring_from_settings(settings).primary_id
    wait_until(lambda: primary_of(engine, "scheduler-1") == new, timeout=60,
               what="the scheduler to pick up the new key")
    mid = versions(engine)
    wait_until(lambda: all(v >= mid[c] + 3 for c, v in versions(engine).items()), timeout=60,
               what="refreshes after the rotation")
    capsys.readouterr()

    # An old process (keys from its environment, started before the rotation) still lives: refused.
    assert run(cli.cmd_remove_key, settings, "remove-key", kid(K1)) == 1
    assert "alt-env" in capsys.readouterr().out
    assert old_process.finish()["errors"] == []

    assert run(cli.cmd_rotate_keys, settings, "rotate-keys", "--reencrypt-only") == 0  # a seal that raced it
    assert run(cli.cmd_remove_key, settings, "remove-key", kid(K1)) == 0  # the scheduler is still refreshing
    after = versions(engine)
    wait_until(lambda: all(v >= after[c] + 3 for c, v in versions(engine).items()), timeout=60,
               what="refreshes after the removal")
    summary = scheduler.finish()

    assert summary["errors"] == [] and summary["refreshes"] >= 18, summary
    assert "refusing to seal" not in scheduler.log_path.read_text()
    assert secret_keys(engine) == {new}  # no secret sealed with the removed key
    current = keyring_from_settings(settings)
    assert current.key_ids == (new,)
    verify_keyring(engine, current)
    for connection_id in versions(engine):  # nothing lost: every stored refresh token still works at DATEV
        row = store.get(engine, connection_id)
        assert row is not None and row.invalid_at is None
        token = get_valid_token(engine, connection_id, settings=settings, keyring=current,
                                stale_version=row.version)
        assert token.version == row.version + 1


@dataclass(frozen=True)
class _RefreshDuringReseal(Keyring):
    """A keyring whose reseal lets a concurrent process store a new value first (a token refresh that
    commits while rotate-keys holds the row's old ciphertext)."""

    concurrent: Callable[[], None] = lambda: None

    def reseal(self, sealed: str, context: str) -> str:
        resealed = super().reseal(sealed, context)
        self.concurrent()
        return resealed


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite serialises the two writers
def test_reencrypting_never_writes_back_a_value_replaced_meanwhile(engine: Engine) -> None:
    old = Keyring.parse(K1)
    put(engine, old, "refresh-token-1", owner_type="connection", purpose="refresh_token")
    rotated = Keyring.parse(f"{K2},{K1}")

    def refresh_commits_meanwhile() -> None:
        put(engine, rotated, "refresh-token-2", owner_type="connection", purpose="refresh_token")

    racing = _RefreshDuringReseal(rotated.keys, concurrent=refresh_commits_meanwhile)
    reencrypt_all(engine, racing)

    assert read(engine, rotated, owner_type="connection", purpose="refresh_token") == "refresh-token-2"
    assert secret_keys(engine) == {kid(K2)}


# --- scheduler.py itself ------------------------------------------------------------------------


def run_scheduler_once(database_url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("ENCRYPTION_KEYS", "ENCRYPTION_KEY_FILE")}
    return subprocess.run([sys.executable, "scheduler.py", "--once", "--instance-id", "einmal"], cwd=ROOT,
                          env={**base, "APP_ENV": "test", "DATABASE_URL": database_url, **env},
                          capture_output=True, text=True, timeout=120)


def test_the_scheduler_reports_its_key_set_and_refuses_an_outdated_one(sqlite_url: str, key_file: Path) -> None:
    done = run_scheduler_once(sqlite_url, {"ENCRYPTION_KEY_FILE": str(key_file)})
    assert done.returncode == 0, done.stderr[-3000:]
    engine = make_engine(sqlite_url)
    with unit_of_work(engine) as session:
        row = session.get(SchedulerHeartbeat, "einmal")
        assert row is not None and (row.kind, row.key_ids) == ("scheduler", kid(K1))

    rotated = Keyring.parse(f"{K2},{K1}")
    verify_keyring(engine, rotated)
    record_primary(engine, rotated)
    engine.dispose()
    outdated = run_scheduler_once(sqlite_url, {"ENCRYPTION_KEYS": K1})
    assert outdated.returncode == 2
    assert f"The primary encryption key is '{kid(K2)}'" in outdated.stderr
    assert K1.split(":", 1)[1] not in outdated.stderr + outdated.stdout
