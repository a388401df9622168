"""Whether a company's approved documents can flow now, and why not: the one rule the transfer
engine, the dry run, the Belege list, the alarms and the overview share. Also the company's pause
(a provider refused access) and its cache of DATEV document types (Belegtypen).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from core.connections import store
from core.connections.access import TokenUnavailable, get_valid_token
from core.connections.health import USABLE, evaluate_health
from core.platform import audit
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import Company, Connection, DocumentTypeCache, Interface, Provider, clip, utcnow
from core.providers.datev import DatevApiError, get_document_types
from core.providers.http import CallContext

log = logging.getLogger(__name__)


def waiting_reason(company: Company, connection: Connection | None, settings: Settings, now: datetime) -> str | None:
    """Why approved documents of this company cannot flow now (None: they can)."""
    if company.archived_at is not None:
        return "Unternehmen archiviert"
    if company.interface == Interface.none.value:
        return "keine Schnittstelle eingerichtet"
    health = evaluate_health(connection, now, settings.token_expiry_warning_days)
    if health not in USABLE:
        return f"Token {health.value}"
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


def resume(engine: Engine, company_id: int, actor: str) -> None:
    with unit_of_work(engine) as session:
        company = session.get(Company, company_id)
        if company is None or company.paused_at is None:
            return
        before = {"paused_reason": company.paused_reason}
        company.paused_at = company.paused_reason = None
        company.updated_at = utcnow()
        session.add(company)
        audit.record(session, actor=actor, action="company.resumed", entity_type="company", entity_id=company_id,
                     before=before)


def store_document_types(engine: Engine, company_id: int, types: list[dict[str, Any]]) -> None:
    now = utcnow()
    seen: set[str] = set()
    try:
        with unit_of_work(engine) as session:
            session.exec(delete(DocumentTypeCache).where(col(DocumentTypeCache.company_id) == company_id))
            for item in types:
                name = clip(DocumentTypeCache.name, str(item.get("name", ""))) or ""
                if name and name not in seen:
                    seen.add(name)
                    session.add(DocumentTypeCache(company_id=company_id, name=name, fetched_at=now,
                                                  category=(item.get("category") or None),
                                                  debit_credit=(item.get("debit_credit_identifier") or None)))
    except IntegrityError:
        # Another pass (another scheduler, a manual transfer) stored the same list at the same moment;
        # on PostgreSQL our DELETE did not see its fresh rows. The cache is theirs; the pass goes on.
        log.info("document types of company %s were stored concurrently by another pass", company_id)


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


def refresh_document_types(engine: Engine, settings: Settings, keyring: Keyring, company_id: int) -> int:
    """Fetch a company's DATEV document types with its long-term token and cache them; the number
    fetched. Raises UserFacingError with the reason (German) when that is not possible."""
    with unit_of_work(engine) as session:
        company = session.get(Company, company_id)
        if company is None:
            raise UserFacingError("Dieses Unternehmen gibt es nicht (mehr).")
        session.expunge(company)
    connection = store.find(engine, company_id, Provider.datev)
    if connection is None or connection.id is None or not connection.has_token:
        raise UserFacingError(f"{company.name}: Kein Langzeittoken hinterlegt – Belegtypen können nicht geladen "
                              "werden.")
    client_id = connection.bound_client or company.datev_client_id or ""
    try:
        token = get_valid_token(engine, connection.id, settings=settings, keyring=keyring)
        ctx = CallContext(provider="datev", purpose="document_types", company_id=company_id,
                          connection_id=connection.id)
        types = get_document_types(engine, ctx, settings, token.value, client_id)
    except TokenUnavailable as exc:
        raise UserFacingError(f"{company.name}: {exc.message}") from None
    except DatevApiError as exc:
        hint = f" Hilfe: {exc.help_uri}" if exc.help_uri and exc.status and 400 <= exc.status < 500 else ""
        raise UserFacingError(f"{company.name}: DATEV-Belegtypen konnten nicht geladen werden "
                              f"({exc.summary()}).{hint}") from None
    store_document_types(engine, company_id, types)
    return len(types)
