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
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
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


class DriverResult:
    """What a `Prepared` statement's execution gives back: `rowcount`, and `first()`, the first row with its
    columns as attributes (a named tuple per statement), or None."""

    __slots__ = ("_cursor", "_row_type")

    def __init__(self, cursor: Any, row_type: Callable[[Sequence[str]], Any]) -> None:
        self._cursor, self._row_type = cursor, row_type

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    def first(self) -> Any:
        """The first row; the cursor is closed after it, as SQLAlchemy's `first()` does (a statement left
        half-read would otherwise stay open until the cursor is collected)."""
        try:
            row = self._cursor.fetchone()
            if row is None:
                return None
            return self._row_type([column[0] for column in self._cursor.description])._make(row)
        finally:
            self._cursor.close()


class Prepared:
    """A statement compiled once per dialect and run straight on the driver's cursor.

    For the few statements a transfer pass runs per document: SQLAlchemy's execution of a built statement
    costs about 90 µs of CPU before the driver sees it, and `exec_driver_sql` still about 50 (measured on
    SQLite and PostgreSQL); this keeps the compiled SQL, the literal values it carries and the bind
    processors of its parameter types (SQLite's datetime text), and only fills in the values. It runs in
    the caller's transaction on the caller's Connection (`BEGIN IMMEDIATE`, commit and rollback stay
    SQLAlchemy's); a driver error is raised as SQLAlchemy would raise it (`DBAPIError`, parameters hidden)
    and a lost connection is invalidated, as SQLAlchemy does. Rows come back as the driver gives them (no
    result processing: return no datetimes), and the statement must not have expanding (IN) parameters.
    `values` must name every bind parameter of the statement.
    """

    def __init__(self, statement: Any, column_keys: Sequence[str] | None = None) -> None:
        self.statement = statement  # an INSERT without values takes its columns from `column_keys`
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._compiled: dict[str, tuple[str, dict[str, Any], dict[str, Any], tuple[str, ...] | None]] = {}
        self._row_types: dict[tuple[str, ...], Any] = {}

    def _row_type(self, names: Sequence[str]) -> Any:
        key = tuple(names)
        found = self._row_types.get(key)
        if found is None:
            found = self._row_types[key] = namedtuple("Row", key, rename=True)
        return found

    def _for(self, dialect: Any) -> tuple[str, dict[str, Any], dict[str, Any], tuple[str, ...] | None]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect, column_keys=self.column_keys)
            binds = list(compiled.binds.values())
            # the values the statement carries itself (e.g. the target status); ours are filled in per run
            literals = compiled.construct_params({bind.key: None for bind in binds if bind.required})
            processors = {}
            for bind in binds:
                processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    processors[bind.key] = processor
            order = tuple(compiled.positiontup) if compiled.positional else None
            found = self._compiled[dialect.name] = (str(compiled), literals, processors, order)
        return found

    def _parameters(self, conn: Connection, values: dict[str, Any]) -> tuple[str, Any]:
        sql, literals, processors, order = self._for(conn.dialect)
        merged = {**literals, **values}
        for name, processor in processors.items():
            value = merged.get(name)
            if value is not None:
                merged[name] = processor(value)
        return sql, (tuple(merged[name] for name in order) if order is not None else merged)

    def run(self, conn: Connection, values: dict[str, Any]) -> DriverResult:
        """Execute once."""
        sql, parameters = self._parameters(conn, values)
        return DriverResult(_on_driver(conn, sql, lambda cursor: cursor.execute(sql, parameters)), self._row_type)

    def run_many(self, conn: Connection, rows: list[dict[str, Any]]) -> DriverResult:
        """Execute for several rows (executemany)."""
        sql = self._for(conn.dialect)[0]
        parameters = [self._parameters(conn, row)[1] for row in rows]
        return DriverResult(_on_driver(conn, sql, lambda cursor: cursor.executemany(sql, parameters)), self._row_type)


def _on_driver(conn: Connection, sql: str, execute: Callable[[Any], object]) -> Any:
    """Run `execute(cursor)` on a new cursor of the connection's driver connection; returns the cursor.
    A driver error becomes SQLAlchemy's `DBAPIError` (parameters hidden); a lost connection is invalidated
    (the caller's transaction rolls back; the Connection reconnects on its next use)."""
    dialect = conn.dialect
    pooled = conn.connection
    driver = pooled.driver_connection
    assert driver is not None  # None only once closed
    cursor = None
    try:
        cursor = driver.cursor()
        execute(cursor)
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, pooled.dbapi_connection, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True,
                                  connection_invalidated=lost, dialect=dialect) from exc
    return cursor
