"""The one writer of a document's state machine: `Document.status` and its claim fields
(`lease_owner`, `lease_until`, `attempts`, `next_attempt_at`) change only here.

    new ──approve──► approved ──claim──► transferring ──record_attempt──► delivered
     │                 ▲   ▲                 │   │                     ► failed ──retry_failed──► approved
     └─delete (gone)   │   └─ requeue, ──────┘   └─────────────────────► unresolved (Lexware)
                       │      retry later,                                  │
                       │      release                                       │
                       └────────── resolve_unresolved (send again) ◄────────┘
                                   resolve_unresolved (delivered) ──► delivered

`TRANSITIONS` lists every legal move and `_move` refuses any other, so a new code path cannot
invent one. Every move is a conditional UPDATE whose WHERE clause names the source state (and, for
a claim, the lease owner): rowcount 1 wins, so two processes never both move one document.

A claim is a lease: `claim` sets `transferring`, the owner and `lease_until` and counts the
attempt, committed at once. A crashed worker's claim is taken over by the next `claim` once its
lease has run out (the transfer engine decides what that means per provider);
`release_abandoned_claims` (housekeeping) does the same for claims nobody took over.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Engine,
    TextClause,
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    text,
    update,
)
from sqlalchemy import select as core_select
from sqlmodel import col, select

from core.platform import audit
from core.platform.db import Prepared, unit_of_work
from core.platform.errors import NotFound, UserFacingError, ValidationFailed
from core.platform.models import (
    CLAIMABLE_STATUSES,
    Company,
    Document,
    DocumentContent,
    DocumentStatus,
    HttpLogEntry,
    Interface,
    Provider,
    Role,
    TransferAttempt,
    clip,
    utcnow,
)
from core.providers.outcome import Outcome
from core.users import Actor, authorize

S = DocumentStatus
TRANSITIONS: dict[DocumentStatus, frozenset[DocumentStatus]] = {
    S.new: frozenset({S.approved}),  # and deletion before approval
    S.approved: frozenset({S.transferring}),
    # an attempt's outcome; `transferring` again when an expired claim is taken over
    S.transferring: frozenset({S.delivered, S.failed, S.unresolved, S.approved, S.transferring}),
    S.failed: frozenset({S.approved}),  # an operator sends it again
    S.unresolved: frozenset({S.delivered, S.approved}),  # an operator checked Lexware
    S.delivered: frozenset(),
}
BATCH = 500
MAX_REASON_CHARS = 400
DECISIONS = {"delivered": "in Lexware vorhanden: als übertragen markiert",
             "send_again": "nicht angekommen: erneut senden"}
LEXWARE_INTERRUPTED = ("Die Übertragung an Lexware Office wurde unterbrochen; ob der Beleg angekommen ist, ist "
                       "unklar. Bitte in Lexware prüfen.")


class IllegalTransition(RuntimeError):
    """A code path asked for a move the state machine does not have (a bug, never user input)."""


def is_legal(source: DocumentStatus, target: DocumentStatus) -> bool:
    return target in TRANSITIONS[source]


def _move(sources: Sequence[DocumentStatus], target: DocumentStatus, *where: ColumnElement[bool],
          **values: Any) -> Any:
    """The UPDATE for a legal move from any of `sources` to `target` (the WHERE names the sources)."""
    for source in sources:
        if not is_legal(source, target):
            raise IllegalTransition(f"document status {source.value} → {target.value} is not a transition")
    # `=` / OR rather than IN: no expanding parameter to render again at every execution of a built statement
    return update(Document).where(or_(*(col(Document.status) == s.value for s in sources)), *where).values(
        status=target.value, **values)


# --- before the transfer ------------------------------------------------------------------------


def approve(engine: Engine, *, document_ids: Sequence[int], actor: Actor) -> int:
    """Approve new documents, singly or in bulk (Bearbeiter and admins). Returns how many changed;
    others are left alone."""
    now = utcnow()
    changed = 0
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.operator)
        ids = session.exec(select(Document.id).where(col(Document.id).in_(document_ids),
                                                     Document.status == S.new.value)).all()
        for document_id in ids:
            moved = session.exec(_move([S.new], S.approved, col(Document.id) == document_id,
                                       approved_at=now, approved_by=actor.name, updated_at=now)).rowcount
            if moved != 1:
                continue
            audit.record(session, actor=actor.name, action="document.approved", entity_type="document",
                         entity_id=document_id, before={"status": "new"}, after={"status": "approved"})
            changed += 1
    return changed


def delete_unapproved(engine: Engine, *, document_id: int, actor: Actor) -> None:
    """Delete a document that was never approved (Bearbeiter and admins)."""
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.operator)
        document = session.get(Document, document_id)
        if document is None:
            raise UserFacingError("Diesen Beleg gibt es nicht (mehr).")
        if document.status != S.new.value:
            raise UserFacingError("Nur Belege im Status „neu“ können gelöscht werden.")
        content = session.get(DocumentContent, document_id)
        if content is not None:
            session.delete(content)
        session.flush()
        session.delete(document)
        audit.record(session, actor=actor.name, action="document.deleted", entity_type="document", entity_id=document_id,
                     before={"file_name": document.file_name, "sha256": document.sha256})


# --- claims -----------------------------------------------------------------------------------


def _claimable() -> TextClause:
    """The statuses `due` can match, as a literal term of its own: the partial index ix_document_claimable
    (company_id, approved_at, id) covers exactly these rows, so a claim reads the company's backlog in
    approval order, never its delivered history (`due` alone, an OR with bound values, matches no index
    that well)."""
    return text(f"document.{CLAIMABLE_STATUSES}")


def due(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """Documents a worker may claim now: approved and due, or in transfer with an expired lease."""
    return or_(
        and_(col(Document.status) == S.approved.value,
             or_(col(Document.next_attempt_at).is_(None), col(Document.next_attempt_at) <= now)),
        and_(col(Document.status) == S.transferring.value, col(Document.lease_until) < now),
    )


# --- the hot path: statements built once, run on a Connection -------------------------------------
#
# A pass claims and records hundreds of documents a second. Building a statement costs far more CPU
# than running it (coercions, cache keys), so the claim and the outcome are Core statements built
# once per shape with bind parameters and compiled once per dialect (`Prepared`: run through the
# driver). They run on the caller's Connection (the transfer engine holds one per worker for the
# pass) or on a connection of their own when given the Engine.

Bind = Engine | Connection
_statements: dict[tuple[object, ...], Any] = {}  # shape → built statement (a race only builds one twice)


_COLUMNS = Document.__table__.c  # type: ignore[attr-defined]  # SQLModel types __table__ loosely


def _param(name: str, column: str) -> BindParameter[Any]:
    """A bind parameter typed like the document's `column` (so SQLite gets its datetime format)."""
    return bindparam(name, type_=_COLUMNS[column].type)


def _run(conn: Connection, statement: Any, values: dict[str, Any]) -> Any:
    """A prepared statement through the driver; one with an expanding IN (a claim by ids) through SQLAlchemy."""
    return statement.run(conn, values) if isinstance(statement, Prepared) else conn.execute(statement, values)


def worker_connection(engine: Engine) -> Connection:
    """The connection a transfer worker holds for a pass, for its `claim`s and `record_attempt`s; give it
    back with `close_worker_connection`.

    PostgreSQL: in autocommit. There each of the two is one statement (the claim's UPDATE from a
    `FOR UPDATE SKIP LOCKED` CTE, the outcome's UPDATE with the attempt row and the log lines as CTEs),
    atomic by itself, so a COMMIT round trip per statement is saved. A change that gives either of them a
    second statement on PostgreSQL must give this up. And with `enable_sort = off`: the claim's order is one
    that only ix_document_claimable gives, but with statistics older than the backlog (autovacuum analyzes a
    table only after a tenth of it changed) the planner believed the company had one due document and
    read all of them through ix_document_company_status to sort them, for every claim (EXPLAIN ANALYZE with
    400 due: 49 buffers instead of 10, and it grows with the backlog). These connections run nothing else.
    SQLite: an ordinary connection (each of the two is a `BEGIN IMMEDIATE` transaction of several
    statements; SQLite's planner takes the index's order for an ORDER BY with LIMIT)."""
    conn = engine.connect()
    if conn.dialect.name == "postgresql":
        try:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("SET enable_sort = off")
            conn.commit()  # ends SQLAlchemy's implicit begin (in autocommit nothing waits on the server)
        except BaseException:
            conn.invalidate()  # never back to the pool half set up
            conn.close()
            raise
    return conn


def close_worker_connection(conn: Connection) -> None:
    """Back to the pool as it came (the setting reset); a connection that cannot be reset is discarded."""
    try:
        if conn.dialect.name == "postgresql" and not conn.invalidated and not conn.closed:
            try:
                conn.exec_driver_sql("RESET enable_sort")
            except Exception:  # noqa: BLE001  (a broken connection: it must not go back to the pool)
                conn.invalidate()
    finally:
        conn.close()


_sqlite_writers: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_sqlite_writers_guard = threading.Lock()


def _sqlite_writer(engine: Engine) -> threading.Lock:
    """The process's turn to write to this SQLite database, for claims and outcomes.

    SQLite lets one writer at a time anyway (`BEGIN IMMEDIATE`); a pass's 8 to 16 workers waiting for it in
    SQLite's busy handler sleep 1, 2, 5, 10 … ms and try again, so a worker could sleep past its turn.
    Queued on a lock they are woken when it is free (a pass of 600 uploads, concurrency 8, 50 ms: 123–142 →
    140–149 documents/s, engine CPU 1.96–2.35 → 1.76–2.08 ms per upload; bench/README.md). Other processes
    still meet at SQLite's lock."""
    with _sqlite_writers_guard:
        lock = _sqlite_writers.get(engine)
        if lock is None:
            lock = _sqlite_writers[engine] = threading.Lock()
        return lock


@contextmanager
def _transaction(bind: Bind) -> Iterator[Connection]:
    """One short transaction on the caller's connection, or on one of our own (BEGIN IMMEDIATE on SQLite,
    after this process's other writers of claims and outcomes)."""
    engine = bind if isinstance(bind, Engine) else bind.engine
    with _sqlite_writer(engine) if engine.dialect.name == "sqlite" else contextlib.nullcontext():
        if isinstance(bind, Engine):
            with bind.begin() as conn:
                yield conn
        else:
            with bind.begin():
                yield bind


@dataclass(frozen=True)
class ClaimedDocument:
    """What a claimed document's upload and outcome need (read with the claim; no ORM object)."""

    id: int
    company_id: int
    guid: str
    file_name: str
    media_type: str
    document_type: str | None
    note: str | None
    attempts: int  # counting this claim
    lease_owner: str
    lease_until: datetime


@dataclass(frozen=True)
class Claimed:
    document: ClaimedDocument
    content: bytes
    taken_over: bool  # the claim of a worker that crashed or stalled had expired


# Oldest approval first. Only ix_document_claimable (company_id, approved_at, id) gives this order, so the
# database reads the company's first due document from it and stops: ordered by id alone, PostgreSQL could
# take the primary key instead and filter out the whole delivered history ahead of it (migration 0010).
_CLAIM_ORDER = (col(Document.approved_at), col(Document.id))
_ONE: ColumnElement[int] = literal_column("1")  # LIMIT 1 in the SQL, not a parameter: a cached generic plan knows it takes one row

_CLAIMED_COLUMNS = ("id", "status", "company_id", "guid", "file_name", "media_type", "document_type", "note",
                    "attempts")


def _claim_statements(postgres: bool, by_ids: bool) -> tuple[Any, Any]:
    """SQLite: the read (document and content) and the move, run in one `BEGIN IMMEDIATE` transaction.
    PostgreSQL: one statement, the move of the row a `FOR UPDATE SKIP LOCKED` CTE picked,
    returning the document, its status before and its content (the read is `None`)."""
    key = ("claim", postgres, by_ids)
    built = _statements.get(key)
    if built is None:
        now = _param("p_now", "lease_until")
        values = {"lease_owner": bindparam("p_owner"), "lease_until": _param("p_lease_until", "lease_until"),
                  "attempts": col(Document.attempts) + 1, "updated_at": now}
        if postgres:
            pick = (core_select(col(Document.id), col(Document.status))
                    .where(col(Document.company_id) == bindparam("p_company_id"), _claimable(), due(now))
                    .limit(_ONE).with_for_update(skip_locked=True))
            if by_ids:  # a user's few chosen documents: found by primary key, in id order (no sort either)
                pick = pick.where(col(Document.id).in_(bindparam("p_ids", expanding=True))).order_by(col(Document.id))
            else:
                pick = pick.order_by(*_CLAIM_ORDER)
            # A CTE, materialized: PostgreSQL runs it once. As a sub-select in FROM it may be run again per
            # row of the UPDATE, and then moved every due document at once (measured: 3 of 3).
            picked = pick.cte("pick").prefix_with("MATERIALIZED")
            content = (core_select(col(DocumentContent.data))
                       .where(col(DocumentContent.document_id) == col(Document.id)).scalar_subquery())
            take = (_move([S.approved, S.transferring], S.transferring, col(Document.id) == picked.c.id, due(now),
                          **values)
                    .returning(*(_COLUMNS[name] for name in _CLAIMED_COLUMNS if name != "status"),
                               picked.c.status.label("was"), content.label("data")))
            built = _statements[key] = (None, take if by_ids else Prepared(take))
        else:
            read = (core_select(*(_COLUMNS[name] for name in _CLAIMED_COLUMNS), col(DocumentContent.data))
                    .join(DocumentContent, col(DocumentContent.document_id) == col(Document.id))
                    .where(col(Document.company_id) == bindparam("p_company_id"), _claimable(), due(now))
                    .limit(_ONE))
            if by_ids:  # as on PostgreSQL
                read = read.where(col(Document.id).in_(bindparam("p_ids", expanding=True))).order_by(col(Document.id))
            else:
                read = read.order_by(*_CLAIM_ORDER)
            move = _move([S.approved, S.transferring], S.transferring, col(Document.id) == bindparam("p_id"), due(now),
                         **values)
            built = _statements[key] = (read, move) if by_ids else (Prepared(read), Prepared(move))
    return built


def claim(bind: Bind, company_id: int, owner: str, lease_seconds: int,
          document_ids: Sequence[int] | None = None) -> Claimed | None:
    """Claim one due document of the company (lease), the oldest approval first (of `document_ids`, if
    given: the lowest id), and read it with its content, committed at once. PostgreSQL: one statement
    (`FOR UPDATE SKIP LOCKED`: concurrent claims take other rows); SQLite: a read and a conditional move
    in one `BEGIN IMMEDIATE` transaction (writers serialised).

    One document per claim: a claimed document must start its upload well within its lease.
    Claiming several at once made the later ones wait (behind the upload slots) while their
    leases ran, and with short leases another scheduler took them over (measured in tests/proof:
    claimed twice, delivered once thanks to the GUID, but a wasted upload each time).
    """
    postgres = (bind.engine if isinstance(bind, Connection) else bind).dialect.name == "postgresql"
    read, move = _claim_statements(postgres, document_ids is not None)
    params: dict[str, Any] = {"p_company_id": company_id, "p_owner": owner}
    if document_ids is not None:
        params["p_ids"] = list(document_ids)
    for _ in range(3):  # SQLite: lost to another claim between the read and the move (not under the lock)
        now = utcnow()
        params |= {"p_now": now, "p_lease_until": now + timedelta(seconds=lease_seconds)}
        with _transaction(bind) as conn:
            if read is None:
                row = _run(conn, move, params).first()
                if row is None:
                    return None
                attempts, was = row.attempts, row.was  # RETURNING gives the row after the move
            else:
                row = _run(conn, read, params).first()
                if row is None:
                    return None
                if _run(conn, move, {**params, "p_id": row.id}).rowcount != 1:
                    continue
                attempts, was = row.attempts + 1, row.status
        document = ClaimedDocument(row.id, row.company_id, row.guid, row.file_name, row.media_type,
                                   row.document_type, row.note, attempts, owner, params["p_lease_until"])
        return Claimed(document, bytes(row.data), was == S.transferring.value)
    return None


def lease_still_ours(engine: Engine, claimed: Claimed, owner: str, *, needed: timedelta, extend_by: timedelta) -> bool:
    """Before the upload: the lease must be ours with `needed` time left; else it is extended.

    A claimed document may wait for an upload slot. If its lease ran short meanwhile it is renewed;
    if another worker already took it over, this worker must not upload it.
    """
    now = utcnow()
    if claimed.document.lease_until - now > needed:
        return True
    with unit_of_work(engine) as session:
        return bool(session.exec(update(Document).where(
            col(Document.id) == claimed.document.id, col(Document.lease_owner) == owner,
            col(Document.status) == S.transferring.value).values(
            lease_until=now + max(needed, extend_by))).rowcount == 1)


def release(engine: Engine, claims: Sequence[Claimed], owner: str) -> None:
    """Hand unstarted claims back: due again at once, the claim not counted as an attempt.

    A claim taken over from a crashed worker stays `transferring` (its lease ends now), so the
    engine's take-over rule applies again to whoever claims it next.
    """
    if not claims:
        return
    now = utcnow()
    with unit_of_work(engine) as session:
        for claimed in claims:
            target = S.transferring if claimed.taken_over else S.approved
            session.exec(_move(
                [S.transferring], target, col(Document.id) == claimed.document.id,
                col(Document.lease_owner) == owner, lease_owner=None, lease_until=now,
                attempts=claimed.document.attempts - 1, updated_at=now))


def release_claims(engine: Engine, owner: str) -> int:
    """On shutdown: make this process's unfinished claims available at once (lease expired now)."""
    now = utcnow()
    with unit_of_work(engine) as session:
        return session.exec(
            update(Document).where(col(Document.status) == S.transferring.value,
                                   col(Document.lease_owner) == owner)
            .values(lease_until=now)
        ).rowcount or 0


# --- the outcome of an attempt ------------------------------------------------------------------


class AfterAttempt(StrEnum):
    """What an attempt does to the document (the engine decides, this module writes)."""

    delivered = "delivered"
    failed = "failed"
    unresolved = "unresolved"
    retry_later = "retry_later"  # back to approved, due at next_attempt_at
    requeue = "requeue"  # back to approved at once; the attempt does not count (not the document's fault)


@dataclass(frozen=True)
class AttemptRecord:
    """One row of the transfer history (TransferAttempt), written with the document's new state."""

    provider: str
    trigger: str
    triggered_by: str
    started_at: datetime
    outcome: Outcome
    correlation_id: str
    http_status: int | None = None
    error_code: str | None = None
    error_text: str | None = None
    help_uri: str | None = None
    global_transaction_id: str | None = None
    request_id: str | None = None
    remote_id: str | None = None


def answered_retries(engine: Engine, document_id: int) -> int:
    """Attempts of this document that ended in "retry" (a crashed worker's claim is not among them)."""
    with unit_of_work(engine) as session:
        return int(session.exec(select(func.count()).select_from(TransferAttempt).where(
            col(TransferAttempt.document_id) == document_id,
            col(TransferAttempt.outcome) == Outcome.retry.value)).one())


_OUTCOME_TARGETS = {AfterAttempt.delivered: S.delivered, AfterAttempt.unresolved: S.unresolved,
                    AfterAttempt.failed: S.failed, AfterAttempt.requeue: S.approved,
                    AfterAttempt.retry_later: S.approved}
_OUTCOME_COLUMNS = {  # what each outcome sets besides the status and the released lease
    AfterAttempt.delivered: ("delivered_at", "remote_id", "last_error", "last_error_code", "last_help_uri",
                             "next_attempt_at"),
    AfterAttempt.unresolved: ("last_error",),
    AfterAttempt.failed: ("last_error", "last_error_code", "last_help_uri"),
    AfterAttempt.requeue: ("attempts", "last_error", "next_attempt_at"),
    AfterAttempt.retry_later: ("next_attempt_at", "last_error", "last_error_code"),
}


def _outcome_update(after: AfterAttempt) -> Any:
    values = {name: _param(f"p_{name}", name)
              for name in ("lease_owner", "lease_until", "updated_at", *_OUTCOME_COLUMNS[after])}
    return _move([S.transferring], _OUTCOME_TARGETS[after], col(Document.id) == bindparam("p_id"),
                 col(Document.lease_owner) == bindparam("p_owner"), **values)


def _outcome_statement(after: AfterAttempt) -> Prepared:
    key = ("outcome", after)
    built: Prepared | None = _statements.get(key)
    if built is None:
        built = _statements[key] = Prepared(_outcome_update(after))
    return built


def _typed_values(model: Any, prefix: str, columns: Sequence[str]) -> dict[str, BindParameter[Any]]:
    table = model.__table__.c
    return {name: bindparam(f"{prefix}{name}", type_=table[name].type) for name in columns}


def _outcome_in_one_statement(after: AfterAttempt, attempt_columns: Sequence[str], log_columns: Sequence[str],
                              log_lines: int) -> Prepared:
    """PostgreSQL: the move, the attempt row and the log lines as one statement (data-modifying CTEs run
    once each, in the statement's transaction): `WITH moved AS (UPDATE …), attempt AS (INSERT …)
    INSERT INTO http_log …`. Parameters: p_… (the move), a_… (the attempt), l<n>_… (log line n)."""
    key = ("outcome-one", after, tuple(attempt_columns), tuple(log_columns), log_lines)
    built: Prepared | None = _statements.get(key)
    if built is None:
        moved = _outcome_update(after).returning(col(Document.id)).cte("moved")
        attempt = insert(TransferAttempt).values(_typed_values(TransferAttempt, "a_", attempt_columns))
        if log_lines:
            lines = insert(HttpLogEntry).values([_typed_values(HttpLogEntry, f"l{n}_", log_columns)
                                                 for n in range(log_lines)])
            statement = lines.add_cte(moved, attempt.returning(col(TransferAttempt.id)).cte("attempt"))
        else:
            statement = attempt.add_cte(moved)
        built = _statements[key] = Prepared(statement)
    return built


def _insert_statement(model: Any, columns: Sequence[str]) -> Prepared:
    key = ("insert", model, tuple(columns))
    built: Prepared | None = _statements.get(key)
    if built is None:
        built = _statements[key] = Prepared(insert(model), column_keys=columns)
    return built


def record_attempt(bind: Bind, claimed: Claimed, owner: str, after: AfterAttempt, attempt: AttemptRecord, *,
                   last_error: str | None = None, next_attempt_at: datetime | None = None,
                   log_entries: Sequence[Mapping[str, Any]] = ()) -> None:
    """Store the attempt's effect on the document (if we still hold its lease), the attempt row and
    the upload's HTTP log lines (column values, see core.providers.http), in one short transaction."""
    document = claimed.document
    now = utcnow()
    error = clip(Document.last_error, last_error)
    candidates: dict[str, Any] = {
        "p_id": document.id, "p_owner": owner, "p_lease_owner": None, "p_lease_until": None, "p_updated_at": now,
        "p_delivered_at": now, "p_remote_id": attempt.remote_id, "p_last_error": error,
        "p_last_error_code": attempt.error_code, "p_last_help_uri": attempt.help_uri,
        "p_next_attempt_at": next_attempt_at, "p_attempts": max(0, document.attempts - 1)}
    if after == AfterAttempt.delivered:
        candidates |= {"p_last_error": None, "p_last_error_code": None, "p_last_help_uri": None,
                       "p_next_attempt_at": None}
    elif after == AfterAttempt.requeue:
        candidates["p_next_attempt_at"] = None
    names = ("p_id", "p_owner", "p_lease_owner", "p_lease_until", "p_updated_at",
             *(f"p_{name}" for name in _OUTCOME_COLUMNS[after]))
    row = {
        "document_id": document.id, "company_id": document.company_id, "provider": attempt.provider,
        "trigger": attempt.trigger, "triggered_by": clip(TransferAttempt.triggered_by, attempt.triggered_by),
        "attempt_no": document.attempts, "started_at": attempt.started_at, "finished_at": now,
        "outcome": attempt.outcome.value, "http_status": attempt.http_status, "error_code": attempt.error_code,
        "error_text": clip(TransferAttempt.error_text, attempt.error_text), "help_uri": attempt.help_uri,
        "global_transaction_id": attempt.global_transaction_id, "request_id": attempt.request_id,
        "remote_id": attempt.remote_id, "next_retry_at": next_attempt_at, "correlation_id": attempt.correlation_id}
    move = {name: candidates[name] for name in names}
    with _transaction(bind) as conn:
        if conn.dialect.name == "postgresql":
            entries = [dict(entry) for entry in log_entries]
            values = {**move, **{f"a_{name}": value for name, value in row.items()}}
            for n, entry in enumerate(entries):
                values |= {f"l{n}_{name}": value for name, value in entry.items()}
            _outcome_in_one_statement(after, list(row), list(entries[0]) if entries else [], len(entries)).run(
                conn, values)
            return
        _outcome_statement(after).run(conn, move)
        _insert_statement(TransferAttempt, list(row)).run(conn, row)
        if log_entries:
            entries = [dict(entry) for entry in log_entries]
            _insert_statement(HttpLogEntry, list(entries[0])).run_many(conn, entries)


def release_abandoned_claims(engine: Engine, now: datetime, *, lease_seconds: int, actor: str) -> int:
    """Documents left "in Übertragung" by a worker that died (lease run out).

    DATEV documents go back to "freigegeben" and are claimable again (the PUT with the fixed GUID makes
    a repeat harmless). A Lexware upload may have arrived and Lexware has no idempotency, so such a
    document becomes "ungeklärt" (never re-sent automatically), exactly as the transfer engine does
    when it takes over such a claim.
    """
    with unit_of_work(engine) as session:
        rows = session.exec(
            select(Document, Company.interface).join(Company, col(Company.id) == col(Document.company_id))
            .where(col(Document.status) == S.transferring.value, col(Document.lease_until) < now)
            .limit(BATCH)).all()
        session.expunge_all()
    released = 0
    for document, interface in rows:
        document_id, lease_until, attempts, company_id = (document.id, document.lease_until, document.attempts,
                                                          document.company_id)
        lexware = interface == Interface.lexware.value
        values: dict[str, Any] = {"lease_owner": None, "lease_until": None, "updated_at": now}
        if lexware:
            target = S.unresolved
            values["last_error"] = LEXWARE_INTERRUPTED
        else:
            target = S.approved
            values["next_attempt_at"] = None
        with unit_of_work(engine) as session:
            changed = session.exec(_move(
                [S.transferring], target, col(Document.id) == document_id, col(Document.lease_until) < now,
                **values)).rowcount
            if changed != 1:  # claimed or finished meanwhile
                continue
            if lexware:
                assert lease_until is not None
                session.exec(insert(TransferAttempt).values(
                    document_id=document_id, company_id=company_id, provider=Provider.lexware.value,
                    trigger="scheduler", triggered_by=clip(TransferAttempt.triggered_by, actor), attempt_no=attempts,
                    started_at=lease_until - timedelta(seconds=lease_seconds), finished_at=now,
                    outcome=Outcome.unresolved.value, error_text=LEXWARE_INTERRUPTED,
                    correlation_id=f"housekeeping-{document_id}"))
            audit.record(session, actor=actor, action="document.claim_released", entity_type="document",
                         entity_id=document_id, after={"status": target.value})
            released += 1
    return released


# --- an operator's decisions afterwards -----------------------------------------------------------


def _reason(reason: str, *, required: bool) -> str:
    text = (reason or "").strip()
    if required and not text:
        raise ValidationFailed({"reason": "Bitte geben Sie einen Grund an (er steht im Audit-Protokoll)."})
    if len(text) > MAX_REASON_CHARS:
        raise ValidationFailed({"reason": f"Der Grund darf höchstens {MAX_REASON_CHARS} Zeichen lang sein."})
    return text


def retry_failed(engine: Engine, *, document_id: int, actor: Actor, reason: str = "") -> None:
    """A failed document goes back to `freigegeben` with its attempts reset (the next pass sends it);
    Bearbeiter and admins."""
    text = _reason(reason, required=False)
    now = utcnow()
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.operator)
        document = session.get(Document, document_id)
        if document is None:
            raise NotFound("Diesen Beleg gibt es nicht (mehr).")
        before = {"status": document.status, "attempts": document.attempts, "last_error": document.last_error}
        changed = session.exec(_move(
            [S.failed], S.approved, col(Document.id) == document_id, attempts=0, next_attempt_at=None,
            updated_at=now)).rowcount
        if changed != 1:
            raise UserFacingError("Nur fehlgeschlagene Belege können erneut übertragen werden.")
        audit.record(session, actor=actor.name, action="document.retry", entity_type="document", entity_id=document_id,
                     before=before, after={"status": S.approved.value, "attempts": 0, "reason": text},
                     detail=text or None)


def retry_failed_of_company(engine: Engine, *, company_id: int, actor: Actor) -> int:
    """Every failed document of one company back to `freigegeben` ("Erneut senden" on the overview), each
    through `retry_failed` (its own audit event). Returns how many went back; a document the pass or another
    person moved meanwhile is skipped. Bearbeiter and admins."""
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.operator)
        ids = session.exec(select(Document.id).where(col(Document.company_id) == company_id,
                                                     col(Document.status) == S.failed.value)
                           .order_by(col(Document.id))).all()
    moved = 0
    for document_id in ids:
        if document_id is None:
            continue
        try:
            retry_failed(engine, document_id=document_id, actor=actor)
            moved += 1
        except UserFacingError:  # NotFound included
            continue
    return moved


def resolve_unresolved(engine: Engine, *, document_id: int, actor: Actor, decision: str, reason: str) -> None:
    """A Bearbeiter or admin checked Lexware: mark the document delivered, or send it again. Reason required."""
    errors: dict[str, str] = {}
    if decision not in DECISIONS:
        errors["decision"] = "Bitte wählen Sie, ob der Beleg angekommen ist oder erneut gesendet wird."
    try:
        text = _reason(reason, required=True)
    except ValidationFailed as failure:
        errors |= failure.field_errors
    if errors:
        raise ValidationFailed(errors)
    now = utcnow()
    values: dict[str, Any]
    if decision == "delivered":
        target, values = S.delivered, {"delivered_at": now, "next_attempt_at": None}
    else:
        target, values = S.approved, {"attempts": 0, "next_attempt_at": None}
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.operator)
        document = session.get(Document, document_id)
        if document is None:
            raise NotFound("Diesen Beleg gibt es nicht (mehr).")
        before = {"status": document.status, "last_error": document.last_error}
        changed = session.exec(_move(
            [S.unresolved], target, col(Document.id) == document_id, **values, updated_at=now)).rowcount
        if changed != 1:
            raise UserFacingError("Nur ungeklärte Belege können so entschieden werden.")
        audit.record(session, actor=actor.name, action="document.resolved", entity_type="document",
                     entity_id=document_id, before=before,
                     after={"status": target.value, "decision": decision, "reason": text},
                     detail=f"{DECISIONS[decision]}: {text}")
