"""What both benchmarks set up: throw-away databases (a SQLite file in a temporary folder, a
PostgreSQL database created for the run and dropped afterwards: BENCH_POSTGRES_URL, else
TEST_POSTGRES_URL, else postgres@127.0.0.1:5432), migrated with the demo data under a throw-away
key, and the percentile used in the tables."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

from core.demo import seed_demo
from core.platform.config import Settings
from core.platform.crypto import Keyring, new_key_entry
from core.platform.db import make_engine
from core.platform.migrate import upgrade_to_head

POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
KEY_ENTRY = new_key_entry("bench-k1")  # a throw-away key for this run only


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def demo_database(database_url: str, emulator_url: str) -> tuple[Engine, Settings, Keyring]:
    """The database migrated and seeded with the demo data; settings for it and the emulator."""
    engine = make_engine(database_url)
    upgrade_to_head(engine)
    seed_demo(engine)
    settings = Settings(_env_file=None, app_env="test", database_url=database_url, emulator_url=emulator_url,
                        encryption_keys=KEY_ENTRY)
    return engine, settings, Keyring.parse(KEY_ENTRY)


@contextmanager
def sqlite_database(label: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{label}-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.db'}"


def postgres_reachable() -> bool:
    """True if the PostgreSQL server answers; otherwise says so (the benchmark leaves it out)."""
    probe = create_engine(POSTGRES_ADMIN_URL)
    try:
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception as exc:  # noqa: BLE001  (any failure means: no PostgreSQL for this run)
        print(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL} ({type(exc).__name__}): left out")
        return False
    finally:
        probe.dispose()


@contextmanager
def postgres_database(label: str) -> Iterator[str]:
    """A new database on the server, dropped afterwards (also when the benchmark fails)."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"bench_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}".replace("-", "_")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
