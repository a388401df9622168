"""A company's DATEV document types (Belegtypen): fetched once per company and pass by the transfer
engine (or on request from the Belege page), cached in the database for the upload form."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from core.alarms.rules import raise_alarms_for
from core.connections import store
from core.connections.access import TokenUnavailable, get_valid_token
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import Company, DocumentTypeCache, Provider, clip, utcnow
from core.providers.datev import DatevApiError, get_document_types
from core.providers.http import CallContext

log = logging.getLogger(__name__)


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
    client_id = company.datev_client_id or ""  # the company's own data set
    try:
        token = get_valid_token(engine, connection.id, settings=settings, keyring=keyring)
        ctx = CallContext(provider="datev", purpose="document_types", company_id=company_id,
                          connection_id=connection.id)
        types = get_document_types(engine, ctx, settings, token.value, client_id)
    except TokenUnavailable as exc:
        if exc.newly_invalid:
            raise_alarms_for(engine, settings, company_id)
        raise UserFacingError(f"{company.name}: {exc.message}") from None
    except DatevApiError as exc:
        hint = f" Hilfe: {exc.help_uri}" if exc.help_uri and exc.status and 400 <= exc.status < 500 else ""
        raise UserFacingError(f"{company.name}: DATEV-Belegtypen konnten nicht geladen werden "
                              f"({exc.summary()}).{hint}") from None
    store_document_types(engine, company_id, types)
    return len(types)
