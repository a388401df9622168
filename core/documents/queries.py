"""Reading documents (Belege): the filtered, paged list, single documents, their content, and the
German status labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, func
from sqlalchemy.sql import Select
from sqlmodel import col, select

from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import Document, DocumentContent, DocumentStatus

# A query of any shape (the filters only add WHERE clauses).
Q = TypeVar("Q", bound=Select[*tuple[Any, ...]])

STATUS_LABELS = {
    DocumentStatus.new: "neu", DocumentStatus.approved: "freigegeben",
    DocumentStatus.transferring: "in Übertragung", DocumentStatus.delivered: "übertragen",
    DocumentStatus.failed: "fehlgeschlagen", DocumentStatus.unresolved: "ungeklärt",
}


def content_of(engine: Engine, document_id: int) -> bytes:
    with unit_of_work(engine) as session:
        row = session.get(DocumentContent, document_id)
        if row is None:
            raise UserFacingError("Der Inhalt dieses Belegs fehlt.")
        return bytes(row.data)


@dataclass(frozen=True)
class DocumentFilter:
    company_id: int | None = None
    statuses: tuple[str, ...] = ()
    document_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filtered(query: Q, f: DocumentFilter) -> Q:
    if f.company_id is not None:
        query = query.where(col(Document.company_id) == f.company_id)
    if f.statuses:
        query = query.where(col(Document.status).in_(f.statuses))
    if f.document_type:
        query = query.where(col(Document.document_type) == f.document_type)
    if f.since is not None:
        query = query.where(col(Document.uploaded_at) >= f.since)
    if f.until is not None:
        query = query.where(col(Document.uploaded_at) < f.until)
    return query


def count_documents(engine: Engine, f: DocumentFilter) -> int:
    with unit_of_work(engine) as session:
        return int(session.exec(_filtered(select(func.count()).select_from(Document), f)).one())


def list_documents(engine: Engine, f: DocumentFilter, *, offset: int = 0, limit: int = 100,
                   total: int | None = None) -> tuple[list[Document], int]:
    """One page of documents (newest first) and the total count, both computed in SQL (`total`: already
    counted by the caller, not counted again)."""
    with unit_of_work(engine) as session:
        if total is None:
            total = session.exec(_filtered(select(func.count()).select_from(Document), f)).one()
        rows = session.exec(_filtered(select(Document), f).order_by(col(Document.id).desc())
                            .offset(offset).limit(limit)).all()
        session.expunge_all()
        return list(rows), int(total)


def get_documents(engine: Engine, document_ids: Sequence[int]) -> list[Document]:
    with unit_of_work(engine) as session:
        rows = session.exec(select(Document).where(col(Document.id).in_(document_ids))
                            .order_by(col(Document.id))).all()
        session.expunge_all()
        return list(rows)
