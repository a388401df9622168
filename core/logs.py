"""The audit trail and the HTTP log as the admin pages read them: filters (time, company, who, action or
purpose, result) and German names for the stored codes. Read-only; the codes themselves stay as they are
stored (the CSV-like raw view keeps them in a column of their own)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Engine, and_, or_
from sqlmodel import col, select

from core.platform.db import unit_of_work
from core.platform.models import AuditEvent, Connection, HttpLogEntry

ACTION_LABELS = {
    "alarm.test_sent": "Test-Alarm gesendet",
    "company.archived": "Unternehmen archiviert", "company.restored": "Unternehmen reaktiviert",
    "company.created": "Unternehmen angelegt", "company.updated": "Unternehmen geändert",
    "company.paused": "Übertragung pausiert", "company.resumed": "Übertragung fortgesetzt",
    "document.added": "Beleg hochgeladen", "document.approved": "Beleg freigegeben",
    "document.claim_released": "Übertragung abgebrochen (Beleg wieder frei)", "document.deleted": "Beleg gelöscht",
    "document.resolved": "Ungeklärter Beleg entschieden", "document.retry": "Beleg erneut freigegeben",
    "request_link.created": "Anforderungslink erstellt", "request_link.expired": "Anforderungslink abgelaufen",
    "request_link.mailed": "Anforderungslink versendet", "request_link.refused": "Anforderungslink abgelehnt",
    "request_link.succeeded": "Zugriff über Anforderungslink erteilt", "request_link.used": "Anforderungslink geöffnet",
    "request_link.withdrawn": "Anforderungslink zurückgezogen",
    "token.deleted": "Token gelöscht", "token.invalid": "Token ungültig",
    "token.one_off_expired": "Einmalige Anmeldung verworfen", "token.refresh_unclear": "Erneuerung unklar",
    "token.refresh_unclear_decided": "Erneuerung unklar: entschieden", "token.refreshed": "Langzeittoken erneuert",
    "token.refused": "Anmeldung abgelehnt", "token.requested": "Token hinterlegt",
    "token.revoke_failed": "Widerruf bei DATEV nicht bestätigt", "token.test": "Verbindung getestet",
    "user.bootstrap_admin": "Erste Administratorin / erster Administrator", "user.first_sign_in": "Erste Anmeldung",
    "user.identity_refused": "Anmeldung mit fremder Identität abgewiesen", "user.role_set": "Rolle geändert",
}
PURPOSE_LABELS = {
    "code_exchange": "Anmeldung abschließen", "connection_test": "Verbindungstest", "discovery": "DATEV-Dienste abfragen",
    "document_types": "Belegtypen abrufen", "permission_check": "Berechtigung prüfen",
    "refresh_check": "Erneuerung prüfen", "revoke": "Zugriff widerrufen", "token_refresh": "Token erneuern",
    "upload": "Beleg senden",
}
ENTITY_LABELS = {"company": "Unternehmen", "connection": "Verbindung", "document": "Beleg", "user": "Benutzer",
                 "request_link": "Anforderungslink", "alarm": "Alarm"}


def action_label(action: str) -> str:
    return ACTION_LABELS.get(action, action)


def purpose_label(purpose: str | None) -> str:
    return PURPOSE_LABELS.get(purpose or "", purpose or "–")


def _company_condition(company_id: int, connection_ids: list[str]) -> ColumnElement[bool]:
    return or_(and_(col(AuditEvent.entity_type) == "company", col(AuditEvent.entity_id) == str(company_id)),
               and_(col(AuditEvent.entity_type) == "connection", col(AuditEvent.entity_id).in_(connection_ids)))


@dataclass(frozen=True)
class AuditFilter:
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    company_id: int | None = None  # the company and its connections
    actor: str = ""  # part of the actor (e-mail address or process name), case-insensitive
    actions: tuple[str, ...] = ()


def audit_events(engine: Engine, f: AuditFilter, *, limit: int = 200) -> list[AuditEvent]:
    """The newest matching audit events first."""
    query = select(AuditEvent)
    if f.since is not None:
        query = query.where(col(AuditEvent.at) >= f.since)
    if f.until is not None:
        query = query.where(col(AuditEvent.at) < f.until)
    if f.actor.strip():
        query = query.where(col(AuditEvent.actor).ilike(f"%{f.actor.strip()}%"))
    if f.actions:
        query = query.where(col(AuditEvent.action).in_(f.actions))
    with unit_of_work(engine) as session:
        if f.company_id is not None:
            ids = [str(i) for i in session.exec(select(Connection.id).where(
                col(Connection.company_id) == f.company_id)).all()]
            query = query.where(_company_condition(f.company_id, ids))
        return list(session.exec(query.order_by(col(AuditEvent.id).desc()).limit(limit)).all())


RESULTS = {"ok": "erfolgreich (2xx/3xx)", "error": "Fehler (4xx/5xx oder keine Antwort)"}


@dataclass(frozen=True)
class HttpFilter:
    since: datetime | None = None
    until: datetime | None = None
    company_id: int | None = None
    provider: str | None = None
    purposes: tuple[str, ...] = ()
    result: str | None = None  # "ok" | "error" (RESULTS)


def http_entries(engine: Engine, f: HttpFilter, *, limit: int = 200) -> list[HttpLogEntry]:
    """The newest matching HTTP log lines first."""
    query = select(HttpLogEntry)
    if f.since is not None:
        query = query.where(col(HttpLogEntry.at) >= f.since)
    if f.until is not None:
        query = query.where(col(HttpLogEntry.at) < f.until)
    if f.company_id is not None:
        query = query.where(col(HttpLogEntry.company_id) == f.company_id)
    if f.provider:
        query = query.where(col(HttpLogEntry.provider) == f.provider)
    if f.purposes:
        query = query.where(col(HttpLogEntry.purpose).in_(f.purposes))
    if f.result == "ok":
        query = query.where(col(HttpLogEntry.status) < 400, col(HttpLogEntry.error).is_(None))
    elif f.result == "error":
        query = query.where(or_(col(HttpLogEntry.status).is_(None), col(HttpLogEntry.status) >= 400,
                                col(HttpLogEntry.error).is_not(None)))
    with unit_of_work(engine) as session:
        return list(session.exec(query.order_by(col(HttpLogEntry.id).desc()).limit(limit)).all())
