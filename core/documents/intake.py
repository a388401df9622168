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
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.documents.validation import AcceptedFile, IntakeRejected, validate_file
from core.platform import audit
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import (
    Company,
    Document,
    DocumentContent,
    DocumentTypeCache,
    Provider,
    Role,
    clip,
)
from core.users import Actor, authorize


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


def intake(engine: Engine, *, company_id: int, files: Iterable[tuple[str, bytes]], actor: Actor,
           document_type: str = "", note: str = "", source: str = "upload") -> IntakeReport:
    """Validate and store each file on its own (Bearbeiter and admins; the inbox import as a process);
    report accepted documents and German rejections."""
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.operator)
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
            accepted.append(_store(engine, company_id, checked, content, chosen_type, note.strip(), actor.name,
                                   source))
        except IntakeRejected as exc:
            rejected.append(Rejected(name, exc.message))
    return IntakeReport(accepted, rejected)


def _store(engine: Engine, company_id: int, checked: AcceptedFile, content: bytes, document_type: str, note: str,
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
                original_name=clip(Document.original_name, checked.original_name) or "", size=checked.size, sha256=checked.sha256,
                media_type=checked.media_type, document_type=document_type or None, note=note or None,
                source=source, uploaded_by=actor,
            )
            session.add(document)
            session.flush()
            assert document.id is not None
            session.add(DocumentContent(document_id=document.id, data=content))
            audit.record(session, actor=actor, action="document.added", entity_type="document",
                         entity_id=document.id, after={"company_id": company_id, "file_name": document.file_name,
                                                       "sha256": document.sha256, "source": source})
            session.flush()
            session.expunge(document)
            return document
    except IntegrityError:  # a concurrent intake of the same content won
        raise duplicate from None


