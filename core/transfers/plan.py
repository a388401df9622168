"""The dry run of a manual transfer: exactly what would be sent where, without any HTTP.

Mirrors the transfer engine's choices (core.transfers.engine): only approved and due documents are
sent; a company waits when its token is missing, invalid or expired, or when it is paused
(core.transfers.readiness.waiting_reason); DATEV gets `PUT /clients/{id}/documents/{guid}` with the
document's own GUID and its type and note as metadata, Lexware `POST /v1/files`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import col, select

from core.connections import store
from core.connections.health import datev_data_set
from core.documents.queries import STATUS_LABELS
from core.platform.config import Settings
from core.platform.db import unit_of_work
from core.platform.models import (
    PROVIDER_LABELS,
    Company,
    Connection,
    Document,
    DocumentStatus,
    Provider,
    utcnow,
)
from core.platform.timefmt import format_local
from core.transfers.readiness import waiting_reason


@dataclass(frozen=True)
class PlannedUpload:
    document_id: int
    company_id: int
    company_name: str
    provider: str  # "DATEV" | "Lexware Office" | ""
    target: str  # e.g. "Mandant 455148-1 (Musterfirma GmbH)"
    method: str
    path: str
    document_type: str
    note: str
    file_name: str  # as DATEV / Lexware will store it (sanitised at intake)
    size: int
    media_type: str
    waits: str | None  # None: would be sent now

    @property
    def will_send(self) -> bool:
        return self.waits is None


def plan(engine: Engine, settings: Settings, document_ids: Sequence[int],
         connection_slot: str = store.LONG_TERM_SLOT) -> list[PlannedUpload]:
    """One line per requested document (in id order); unknown ids are left out."""
    now = utcnow()
    with unit_of_work(engine) as session:
        documents = list(session.exec(select(Document).where(col(Document.id).in_(list(document_ids)))
                                      .order_by(col(Document.id))).all())
        company_ids = {d.company_id for d in documents}
        companies = {c.id: c for c in session.exec(select(Company).where(col(Company.id).in_(company_ids))).all()}
        session.expunge_all()
    connections = store.in_slot(engine, connection_slot, company_ids)
    reasons: dict[int, str | None] = {}
    planned = []
    for document in documents:
        company: Company = companies[document.company_id]
        provider = company.provider
        connection = connections.get((document.company_id, provider.value)) if provider else None
        if document.company_id not in reasons:
            reasons[document.company_id] = waiting_reason(company, connection, settings, now)
        planned.append(_line(document, company, provider, connection, reasons[document.company_id], now))
    return planned


def _line(document: Document, company: Company, provider: Provider | None, connection: Connection | None,
          company_reason: str | None, now: datetime) -> PlannedUpload:
    if provider == Provider.datev:
        client = datev_data_set(company) or "?"  # where the engine sends it, whatever the token names
        target = f"Mandant {client} ({company.name})"
        method, path = "PUT", f"/clients/{client}/documents/{document.guid}"
    elif provider == Provider.lexware:
        target = f"Lexware Office ({company.name})"
        method, path = "POST", "/v1/files"
    else:
        target, method, path = "–", "–", "–"
    waits = company_reason
    if document.status != DocumentStatus.approved.value:
        waits = f"nicht freigegeben (Status „{STATUS_LABELS.get(DocumentStatus(document.status), document.status)}“)"
    elif document.next_attempt_at is not None and document.next_attempt_at > now:
        waits = waits or f"nächster Versuch ab {format_local(document.next_attempt_at)}"
    assert document.id is not None
    return PlannedUpload(
        document_id=document.id, company_id=document.company_id, company_name=company.name,
        provider=PROVIDER_LABELS[provider] if provider else "", target=target, method=method, path=path,
        document_type=document.document_type or "", note=document.note or "", file_name=document.file_name,
        size=document.size, media_type=document.media_type, waits=waits)
