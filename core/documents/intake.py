"""Documents (Belege): intake, approval, deletion before approval, and the filtered list.

Intake validates each file (core.documents.validation) and stores it with its content in one transaction per
file, so a rejected file leaves nothing behind and never blocks the others. The GUID used for
DATEV's idempotent PUT is chosen here, before any attempt.

Content lives in the database (`document_content`): every dashboard and scheduler replica, on any
host, reaches it through the one PostgreSQL they share; no shared file system to mount, back up or
keep consistent with the rows. Files are at most 20 MB (DATEV) or 5 MiB (Lexware).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.documents.validation import IntakeRejected, validate_file
from core.platform import audit
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import (
    Company,
    Document,
    DocumentContent,
    DocumentStatus,
    DocumentTypeCache,
    Provider,
    utcnow,
)

STATUS_LABELS = {
    DocumentStatus.new: "neu", DocumentStatus.approved: "freigegeben",
    DocumentStatus.transferring: "in Übertragung", DocumentStatus.delivered: "übertragen",
    DocumentStatus.failed: "fehlgeschlagen", DocumentStatus.unresolved: "ungeklärt",
}


@dataclass(frozen=True)
class Rejected:
    name: str
    message: str


@dataclass(frozen=True)
class IntakeReport:
    accepted: list[Document]
    rejected: list[Rejected]


def known_document_types(engine: Engine, company_id: int) -> list[str]:
    with unit_of_work(engine) as session:
        return _known_document_types(session, company_id)


def _known_document_types(session: Session, company_id: int) -> list[str]:
    return list(session.exec(select(DocumentTypeCache.name).where(DocumentTypeCache.company_id == company_id)
                             .order_by(col(DocumentTypeCache.name))).all())


def intake(engine: Engine, *, company_id: int, files: Iterable[tuple[str, bytes]], actor: str,
           document_type: str = "", note: str = "", source: str = "upload") -> IntakeReport:
    """Validate and store each file on its own; report accepted documents and German rejections."""
    with unit_of_work(engine) as session:
        company = session.get(Company, company_id)
        if company is None or company.archived_at is not None:
            raise UserFacingError("Dieses Unternehmen gibt es nicht oder es ist archiviert.")
        provider = company.provider
        if provider is None:
            raise UserFacingError("Für dieses Unternehmen ist keine Schnittstelle eingerichtet.")
        known_types = _known_document_types(session, company_id)
        default_type = company.default_document_type or ""
    chosen_type = (document_type or default_type).strip()
    accepted: list[Document] = []
    rejected: list[Rejected] = []
    for name, content in files:
        try:
            if provider == Provider.datev and chosen_type and known_types and chosen_type not in known_types:
                raise IntakeRejected(f"„{name}“: Belegtyp „{chosen_type}“ ist für diesen Mandanten nicht "
                                     "eingerichtet.", code="document_type")
            checked = validate_file(name=name, content=content, provider=provider, note=note,
                                    document_type=chosen_type)
            accepted.append(_store(engine, company_id, checked, content, chosen_type, note.strip(), actor, source))
        except IntakeRejected as exc:
            rejected.append(Rejected(name, exc.message))
    return IntakeReport(accepted, rejected)


def _store(engine: Engine, company_id: int, checked, content: bytes, document_type: str, note: str,  # type: ignore[no-untyped-def]
           actor: str, source: str) -> Document:
    duplicate = IntakeRejected(f"„{checked.original_name}“ ist für dieses Unternehmen bereits vorhanden "
                               "(gleicher Inhalt).", code="duplicate")
    try:
        with unit_of_work(engine) as session:
            existing = session.exec(select(Document.id).where(Document.company_id == company_id,
                                                              Document.sha256 == checked.sha256)).first()
            if existing is not None:
                raise duplicate
            document = Document(
                company_id=company_id, guid=str(uuid.uuid4()), file_name=checked.clean_name,
                original_name=checked.original_name[:255], size=checked.size, sha256=checked.sha256,
                media_type=checked.media_type, document_type=document_type or None, note=note or None,
                source=source, uploaded_by=actor,
            )
            session.add(document)
            session.flush()
            session.add(DocumentContent(document_id=document.id, data=content))  # type: ignore[arg-type]
            audit.record(session, actor=actor, action="document.added", entity_type="document",
                         entity_id=document.id, after={"company_id": company_id, "file_name": document.file_name,
                                                       "sha256": document.sha256, "source": source})
            session.flush()
            session.expunge(document)
            return document
    except IntegrityError:  # a concurrent intake of the same content won
        raise duplicate from None


def approve(engine: Engine, *, document_ids: Sequence[int], actor: str) -> int:
    """Approve new documents (singly or in bulk). Returns how many changed; others are left alone."""
    now = utcnow()
    changed = 0
    with unit_of_work(engine) as session:
        for document in session.exec(select(Document).where(col(Document.id).in_(document_ids),
                                                             Document.status == DocumentStatus.new.value)).all():
            document.status = DocumentStatus.approved.value
            document.approved_at, document.approved_by, document.updated_at = now, actor, now
            session.add(document)
            audit.record(session, actor=actor, action="document.approved", entity_type="document",
                         entity_id=document.id, before={"status": "new"}, after={"status": "approved"})
            changed += 1
    return changed


def delete_unapproved(engine: Engine, *, document_id: int, actor: str) -> None:
    with unit_of_work(engine) as session:
        document = session.get(Document, document_id)
        if document is None:
            raise UserFacingError("Diesen Beleg gibt es nicht (mehr).")
        if document.status != DocumentStatus.new.value:
            raise UserFacingError("Nur Belege im Status „neu“ können gelöscht werden.")
        content = session.get(DocumentContent, document_id)
        if content is not None:
            session.delete(content)
        session.flush()
        session.delete(document)
        audit.record(session, actor=actor, action="document.deleted", entity_type="document", entity_id=document_id,
                     before={"file_name": document.file_name, "sha256": document.sha256})


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


def _filtered(query, f: DocumentFilter):  # type: ignore[no-untyped-def]
    if f.company_id is not None:
        query = query.where(Document.company_id == f.company_id)
    if f.statuses:
        query = query.where(col(Document.status).in_(f.statuses))
    if f.document_type:
        query = query.where(Document.document_type == f.document_type)
    if f.since is not None:
        query = query.where(col(Document.uploaded_at) >= f.since)
    if f.until is not None:
        query = query.where(col(Document.uploaded_at) < f.until)
    return query


def list_documents(engine: Engine, f: DocumentFilter, *, offset: int = 0, limit: int = 100) -> tuple[list[Document], int]:
    """One page of documents (newest first) and the total count, both computed in SQL."""
    with unit_of_work(engine) as session:
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
