"""The transfer history (Übertragungsprotokoll): filtered, paged reads, CSV export, the detail of
one attempt with its HTTP log lines, and the operator's decisions on failed and unresolved documents.

Speed at a million rows: every query orders by (started_at DESC, id DESC), which the indexes
ix_attempt_started, ix_attempt_company_started and ix_attempt_outcome_started serve directly (id
is the tie-breaker; attempts are written in start order, so this is also the id order in practice).
A page joins company and document by primary key for its 50 rows only. The count is capped
(COUNT over a LIMITed subquery): past COUNT_CAP rows the screen says "more than …" instead of
scanning the whole table. The CSV export walks the filtered rows with keyset paging (no OFFSET),
so each batch costs the same however deep it is.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, and_, func, or_
from sqlalchemy.sql import Select
from sqlmodel import col, select
from sqlmodel.sql.expression import Select as SelectOfRows

from core.platform.db import unit_of_work
from core.platform.errors import NotFound
from core.platform.models import (
    PROVIDER_LABELS,
    Company,
    Document,
    HttpLogEntry,
    Provider,
    TransferAttempt,
)
from core.platform.timefmt import format_local
from core.providers.outcome import Outcome

# A query of any shape (the filters only add WHERE clauses).
RowsQuery = SelectOfRows[TransferAttempt, str, str, str]
Q = TypeVar("Q", bound=Select[*tuple[Any, ...]])

COUNT_CAP = 10_000
EXPORT_BATCH = 1_000

OUTCOME_LABELS = {
    Outcome.delivered.value: "übertragen", Outcome.retry.value: "wird wiederholt",
    Outcome.failed.value: "fehlgeschlagen", Outcome.unresolved.value: "ungeklärt",
    Outcome.waiting.value: "fehlgeschlagen – wartet",
}
TRIGGER_LABELS = {"scheduler": "automatisch", "manual": "manuell"}


@dataclass(frozen=True)
class HistoryFilter:
    company_id: int | None = None
    outcomes: tuple[str, ...] = ()
    provider: str | None = None
    trigger: str | None = None
    since: datetime | None = None  # inclusive, on started_at
    until: datetime | None = None  # exclusive


@dataclass(frozen=True)
class HistoryRow:
    id: int
    started_at: datetime
    finished_at: datetime
    company_id: int
    company_name: str
    document_id: int
    file_name: str
    document_status: str
    provider: str
    trigger: str
    triggered_by: str
    attempt_no: int
    outcome: str
    http_status: int | None
    error_code: str | None
    error_text: str | None
    help_uri: str | None
    global_transaction_id: str | None
    request_id: str | None
    remote_id: str | None
    correlation_id: str


@dataclass(frozen=True)
class HistoryPage:
    rows: list[HistoryRow]
    total: int  # exact unless `capped`
    capped: bool  # True: there are more than `total` (= COUNT_CAP) matching rows
    page: int  # 1-based
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def _where(query: Q, f: HistoryFilter) -> Q:
    if f.company_id is not None:
        query = query.where(col(TransferAttempt.company_id) == f.company_id)
    if f.outcomes:
        query = query.where(col(TransferAttempt.outcome).in_(f.outcomes))
    if f.provider:
        query = query.where(col(TransferAttempt.provider) == f.provider)
    if f.trigger:
        query = query.where(col(TransferAttempt.trigger) == f.trigger)
    if f.since is not None:
        query = query.where(col(TransferAttempt.started_at) >= f.since)
    if f.until is not None:
        query = query.where(col(TransferAttempt.started_at) < f.until)
    return query


def _rows_query(f: HistoryFilter) -> RowsQuery:
    query = (select(TransferAttempt, Company.name, Document.file_name, Document.status)
             .join(Company, col(Company.id) == col(TransferAttempt.company_id))
             .join(Document, col(Document.id) == col(TransferAttempt.document_id)))
    return _where(query, f).order_by(col(TransferAttempt.started_at).desc(), col(TransferAttempt.id).desc())


def _row(attempt: TransferAttempt, company_name: str, file_name: str, document_status: str) -> HistoryRow:
    assert attempt.id is not None
    return HistoryRow(
        id=attempt.id, started_at=attempt.started_at, finished_at=attempt.finished_at,
        company_id=attempt.company_id, company_name=company_name, document_id=attempt.document_id,
        file_name=file_name, document_status=document_status, provider=attempt.provider, trigger=attempt.trigger,
        triggered_by=attempt.triggered_by, attempt_no=attempt.attempt_no, outcome=attempt.outcome,
        http_status=attempt.http_status, error_code=attempt.error_code, error_text=attempt.error_text,
        help_uri=attempt.help_uri, global_transaction_id=attempt.global_transaction_id,
        request_id=attempt.request_id, remote_id=attempt.remote_id, correlation_id=attempt.correlation_id)


def count(engine: Engine, f: HistoryFilter, *, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """Matching rows, counted up to `cap` (returns (cap, True) when there are more)."""
    inner = _where(select(TransferAttempt.id), f).limit(cap + 1).subquery()
    with unit_of_work(engine) as session:
        found = int(session.exec(select(func.count()).select_from(inner)).one())
    return (cap, True) if found > cap else (found, False)


def history_page(engine: Engine, f: HistoryFilter, *, page: int = 1, page_size: int = 50,
                 counted: tuple[int, bool] | None = None) -> HistoryPage:
    """One page (1-based, newest first) and the capped count, both in SQL (`counted`: reuse a count)."""
    page = max(1, page)
    total, capped = counted or count(engine, f)
    with unit_of_work(engine) as session:
        rows = session.exec(_rows_query(f).offset((page - 1) * page_size).limit(page_size)).all()
        session.expunge_all()
    return HistoryPage([_row(*r) for r in rows], total, capped, page, page_size)


def iter_rows(engine: Engine, f: HistoryFilter, *, batch: int = EXPORT_BATCH) -> Iterator[HistoryRow]:
    """Every matching row, newest first, in keyset-paged batches (one short transaction each)."""
    after: tuple[datetime, int] | None = None
    while True:
        query = _rows_query(f)
        if after is not None:
            started, attempt_id = after
            query = query.where(or_(col(TransferAttempt.started_at) < started,
                                    and_(col(TransferAttempt.started_at) == started,
                                         col(TransferAttempt.id) < attempt_id)))
        with unit_of_work(engine) as session:
            rows = session.exec(query.limit(batch)).all()
            session.expunge_all()
        for r in rows:
            yield _row(*r)
        if len(rows) < batch:
            return
        last = rows[-1][0]
        assert last.id is not None
        after = (last.started_at, last.id)


CSV_HEADERS = ("Nr.", "Beginn", "Ende", "Unternehmen", "Beleg-Nr.", "Datei", "Schnittstelle", "Auslöser",
               "Ausgelöst von", "Versuch", "Ergebnis", "HTTP-Status", "Fehlercode", "Meldung", "Hilfe-Link",
               "Global-Transaction-ID", "Request-ID", "Remote-ID")


def _cell(value: object) -> str:
    """Text for a CSV cell; a leading = + - @ would start a formula in Excel, so it is quoted away."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def provider_label(provider: str) -> str:
    try:
        return PROVIDER_LABELS[Provider(provider)]
    except ValueError:
        return provider


def csv_lines(rows: Iterator[HistoryRow]) -> Iterator[bytes]:
    """The CSV as German Excel opens it: UTF-8 with BOM, semicolons, CRLF; times in Europe/Berlin."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")

    def flush() -> bytes:
        data = buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
        return data

    writer.writerow(CSV_HEADERS)
    yield b"\xef\xbb\xbf" + flush()
    for r in rows:
        writer.writerow([_cell(v) for v in (
            r.id, format_local(r.started_at, ""), format_local(r.finished_at, ""), r.company_name, r.document_id,
            r.file_name, provider_label(r.provider), TRIGGER_LABELS.get(r.trigger, r.trigger), r.triggered_by,
            r.attempt_no, OUTCOME_LABELS.get(r.outcome, r.outcome), r.http_status, r.error_code, r.error_text,
            r.help_uri, r.global_transaction_id, r.request_id, r.remote_id)])
        yield flush()


def iter_csv(engine: Engine, f: HistoryFilter) -> Iterator[bytes]:
    return csv_lines(iter_rows(engine, f))


def csv_export(engine: Engine, f: HistoryFilter) -> bytes:
    """All filtered rows as one CSV file (built from the streamed chunks)."""
    return b"".join(iter_csv(engine, f))


@dataclass(frozen=True)
class AttemptDetail:
    row: HistoryRow
    http_lines: list[HttpLogEntry]


def attempt_detail(engine: Engine, attempt_id: int) -> AttemptDetail:
    """One attempt with the HTTP log lines of its upload (same correlation id), oldest first."""
    with unit_of_work(engine) as session:
        found = session.exec(_rows_query(HistoryFilter()).where(col(TransferAttempt.id) == attempt_id)).first()
        if found is None:
            raise NotFound("Diesen Übertragungsversuch gibt es nicht.")
        lines = list(session.exec(select(HttpLogEntry).where(HttpLogEntry.correlation_id == found[0].correlation_id)
                                  .order_by(col(HttpLogEntry.id)).limit(200)).all())
        session.expunge_all()
    return AttemptDetail(_row(*found), lines)


