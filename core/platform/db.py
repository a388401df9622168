"""Engines and units of work, for SQLite and PostgreSQL alike.

SQLite is shared by the dashboard and the scheduler, so every connection gets WAL, a busy timeout
and foreign keys, and every transaction starts with `BEGIN IMMEDIATE` (docs/style.md §3.2: deferred
transactions lost updates or raised "database is locked" under two writers; IMMEDIATE gave 600 of
600). PostgreSQL goes through psycopg 3. Nothing happens at import time. A SQLite file (and its -wal and
-shm) is owner-only: created 0600, fixed with a warning if found wider (core.platform.files).

Rule for callers: keep write transactions short and never hold one across an HTTP call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlmodel import Session

from core.platform.files import protect_sqlite

SQLITE_BUSY_TIMEOUT_MS = 15_000
# The transfer engine holds one pooled connection per worker for a pass (2 × TRANSFER_CONCURRENCY,
# at most 64) next to the process's other work: the pool may open that many beyond its 5 kept ones
# (the extra ones are closed when given back) instead of making a worker wait for a connection.
POOL_MAX_OVERFLOW = 70

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def make_engine(url: str, **kwargs: object) -> Engine:
    """A new engine for `url` with the pragmas and transaction mode this product needs.

    `hide_parameters`: SQL errors and logs never show bound values (ciphertexts, document content,
    e-mail addresses), only the statement.
    """
    kwargs.setdefault("hide_parameters", True)
    if "poolclass" not in kwargs:
        kwargs.setdefault("max_overflow", POOL_MAX_OVERFLOW)
    if url.startswith("sqlite"):
        protect_sqlite(url)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            **kwargs,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so our BEGIN IMMEDIATE is the only BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")  # first: WAL switch can be BUSY
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for `url` (default: the configured DATABASE_URL), created once."""
    if url is None:
        from core.platform.config import get_settings

        url = get_settings().database_url
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
        return engine


def dispose_engines() -> None:
    """Close every cached engine (tests, and process shutdown)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """One short transaction: commits on success, rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
