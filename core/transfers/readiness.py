"""Whether a company's approved documents can flow now, and why not: the one rule the transfer
engine, the dry run, the Belege list, the alarms and the overview share. Also the company's pause
(a provider refused access) and its cache of DATEV document types (Belegtypen).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import col, select

from core.connections import store
from core.connections.health import USABLE, Binding, evaluate_binding, evaluate_health
from core.platform import audit
from core.platform.config import Settings
from core.platform.db import unit_of_work
from core.platform.models import Company, Connection, Interface, Role, clip, shown_data_set, utcnow
from core.users import Actor, authorize


def waiting_reason(company: Company, connection: Connection | None, settings: Settings, now: datetime) -> str | None:
    """Why approved documents of this company cannot flow now (None: they can)."""
    if company.archived_at is not None:
        return "Unternehmen archiviert"
    if company.interface == Interface.none.value:
        return "keine Schnittstelle eingerichtet"
    health = evaluate_health(connection, now, settings.token_expiry_warning_days)
    if health not in USABLE:  # Lexware Office has API keys, DATEV tokens (the card's words)
        return f"{'API-Schlüssel' if company.interface == Interface.lexware.value else 'Token'} {health.value}"
    if evaluate_binding(company, connection) == Binding.foreign:  # e.g. the Mandanten-Nr. was changed since
        # Derived, not a pause: it ends when a token for the company's own data set is stored, and
        # "Fortsetzen" could not end it (it did when the transfer engine paused the company for it).
        assert connection is not None
        return (f"Langzeittoken an den Datenbestand {shown_data_set(connection.bound_client, '?')} gebunden, das "
                f"Unternehmen hat {shown_data_set(company.datev_client_id, '?')}: bitte ein neues Langzeittoken anfordern")
    if company.paused_at is not None and (connection is None or connection.requested_at is None
                                          or connection.requested_at <= company.paused_at):
        return f"pausiert: {company.paused_reason or 'Zugriff verweigert'}"
    return None


def pause(engine: Engine, company_id: int, reason: str, actor: str) -> None:
    now = utcnow()
    with unit_of_work(engine) as session:
        company = session.get(Company, company_id)
        if company is None or company.paused_at is not None:
            return
        company.paused_at, company.paused_reason, company.updated_at = now, clip(Company.paused_reason, reason), now
        session.add(company)
        audit.record(session, actor=actor, action="company.paused", entity_type="company", entity_id=company_id,
                     after={"paused_reason": reason[:300]})


def resume(engine: Engine, company_id: int, actor: Actor) -> None:
    """End a pause (Bearbeiter and admins); the next pass checks again what caused it."""
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.operator)
        company = session.get(Company, company_id)
        if company is None or company.paused_at is None:
            return
        before = {"paused_reason": company.paused_reason}
        company.paused_at = company.paused_reason = None
        company.updated_at = utcnow()
        session.add(company)
        audit.record(session, actor=actor.name, action="company.resumed", entity_type="company", entity_id=company_id,
                     before=before)


def waiting_reasons(engine: Engine, settings: Settings, company_ids: Iterable[int],
                    slot: str = store.LONG_TERM_SLOT) -> dict[int, str | None]:
    """`waiting_reason` for several companies at once (company id → reason, None: can transfer)."""
    ids = set(company_ids)
    if not ids:
        return {}
    with unit_of_work(engine) as session:
        companies = session.exec(select(Company).where(col(Company.id).in_(ids))).all()
        session.expunge_all()
    connections = store.in_slot(engine, slot, ids)
    now = utcnow()
    reasons: dict[int, str | None] = {}
    for company in companies:
        assert company.id is not None
        provider = company.provider
        connection = connections.get((company.id, provider.value)) if provider is not None else None
        reasons[company.id] = waiting_reason(company, connection, settings, now)
    return reasons


