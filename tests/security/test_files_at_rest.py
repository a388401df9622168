"""Files at rest (issue 9, "data/tokendesk.db is 0644"): the SQLite database with its -wal and -shm,
`data/` and the files in it (key file, emulator state) are owner-only, also when they were created
wider before (warned about and fixed at start). Runs under the usual umask 022."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from core import cli
from core.platform import crypto, files
from core.platform.config import Settings
from core.platform.db import make_engine
from core.platform.migrate import upgrade_to_head


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """umask 022, as on a stock Debian: without our care SQLite creates 0644 files."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_new_database_and_its_wal_and_shm_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "tokendesk.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_to_head(engine)
    with engine.connect() as conn:  # while a connection is open, -wal and -shm exist
        conn.execute(text("SELECT count(*) FROM company"))
        present = sorted(p.name for p in tmp_path.iterdir())
        modes = {p.name: mode(p) for p in tmp_path.iterdir()}
    engine.dispose()
    assert present == ["tokendesk.db", "tokendesk.db-shm", "tokendesk.db-wal"]
    assert modes == dict.fromkeys(present, 0o600)


def test_a_database_left_readable_by_others_is_fixed_with_a_warning(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokendesk.db"
    old = sqlite3.connect(path)  # as an older version left it: 0644, WAL files 0644 too
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE t (x TEXT)")
    old.execute("INSERT INTO t VALUES ('Beleg')")
    old.commit()
    companions = [tmp_path / "tokendesk.db-wal", tmp_path / "tokendesk.db-shm"]
    assert {mode(p) for p in [path, *companions]} == {0o644}

    with caplog.at_level(logging.WARNING, logger="core.platform.files"):
        engine = make_engine(f"sqlite:///{path}")

    assert {p.name: mode(p) for p in [path, *companions]} == {p.name: 0o600 for p in [path, *companions]}
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 3 and all("owner-only" in m and "0644" in m for m in warned), warned
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalar_one() == "Beleg"  # still works
    engine.dispose()
    old.close()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `data/` as an older version left it: 0755, every file 0644 (the real data/ is never touched)."""
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    for name in ("tokendesk.db", "emulator-state.json", "encryption.keys"):
        (data / name).write_bytes(b"")
        (data / name).chmod(0o644)
    monkeypatch.setattr(files, "DATA_DIR", data)
    return data


def test_data_dir_and_its_files_are_fixed_when_a_process_opens_the_database(data_dir: Path) -> None:
    """The scheduler's and dashboard's start: the engine on the default SQLite file in data/."""
    make_engine(f"sqlite:///{data_dir / 'tokendesk.db'}").dispose()
    assert mode(data_dir) == 0o700
    assert {p.name: mode(p) for p in data_dir.iterdir()} == {
        "tokendesk.db": 0o600, "emulator-state.json": 0o600, "encryption.keys": 0o600}


def test_bootstraps_data_sweep_fixes_the_emulator_state(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`make run` (scripts/run_local.py, core.cli bootstrap) sweeps data/ before starting anything."""
    with caplog.at_level(logging.WARNING, logger="core.platform.files"):
        files.secure_data_dir(create=True)
    assert mode(data_dir) == 0o700 and mode(data_dir / "emulator-state.json") == 0o600
    assert any("emulator-state.json" in r.getMessage() for r in caplog.records)


def test_migrate_creates_the_database_folder_owner_only(tmp_path: Path) -> None:
    database = tmp_path / "neu" / "tokendesk.db"
    settings = Settings(_env_file=None, app_env="test", database_url=f"sqlite:///{database}")
    assert cli.cmd_migrate(settings, cli.build_parser().parse_args(["migrate"])) == 0
    assert mode(database.parent) == 0o700 and mode(database) == 0o600


def test_the_local_key_folder_is_created_owner_only(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "encryption.keys"
    assert crypto.ensure_local_key_file(key_file)
    assert mode(key_file.parent) == 0o700 and mode(key_file) == 0o600
