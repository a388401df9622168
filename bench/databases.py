"""Throw-away databases for the benchmarks: a SQLite file in a temporary folder, and a PostgreSQL
database created for the run and dropped afterwards (BENCH_POSTGRES_URL, else TEST_POSTGRES_URL,
else postgres@127.0.0.1:5432)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))


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
    except Exception as exc:  # noqa: BLE001
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
