"""Shared helpers for the Belege, Übertragen and Übertragungsprotokoll page tests: a seeded
dashboard database, the emulator for DATEV, and documents taken in through core."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select
from streamlit.testing.v1 import AppTest

from core.documents import intake, lifecycle
from core.platform.config import Settings, get_settings
from core.platform.db import get_engine, unit_of_work
from core.platform.models import (
    AppUser,
    AuditEvent,
    Company,
    Connection,
    ConnectionKind,
    Document,
    PendingAuthorization,
)
from core.platform.secret_store import get_keyring
from core.users import process
from testkit.datev_user import log_in_at_datev
from testkit.rows import id_of, ids_of, present
from testkit.samples import pdf

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")


@dataclass
class Desk:
    engine: Engine
    settings: Settings
    companies: dict[str, int]

    def user(self, email: str) -> AppUser:
        with unit_of_work(self.engine) as s:
            user = s.exec(select(AppUser).where(AppUser.email == email)).one()
            s.expunge(user)
            return user

    def request_token(self, company: str = "Musterfirma GmbH", who: str = "admin@tokendesk.demo",
                      kind: ConnectionKind = ConnectionKind.long_term) -> None:
        outcome = log_in_at_datev(self.engine, self.settings, get_keyring(), company_id=self.companies[company],
                                  user=self.user(who), kind=kind)
        assert outcome.ok, outcome.message

    def intake(self, *names: str, company: str = "Musterfirma GmbH", approve: bool = False,
               document_type: str = "") -> list[int]:
        report = intake.intake(self.engine, company_id=self.companies[company], actor=process("operator@tokendesk.demo"),
                                  files=[(n, PNG if n.endswith(".png") else pdf(n)) for n in names],
                                  document_type=document_type)
        assert not report.rejected, report.rejected
        ids = ids_of(report.accepted)
        if approve:
            assert lifecycle.approve(self.engine, document_ids=ids, actor=process("operator@tokendesk.demo")) == len(ids)
        return ids

    def document(self, document_id: int) -> Document:
        """A document the test expects to exist."""
        return present(self.find_document(document_id), f"document {document_id}")

    def find_document(self, document_id: int) -> Document | None:
        with unit_of_work(self.engine) as s:
            doc = s.get(Document, document_id)
            if doc is not None:
                s.expunge(doc)
            return doc

    def documents(self) -> list[Document]:
        with unit_of_work(self.engine) as s:
            rows = list(s.exec(select(Document).order_by(col(Document.id))).all())
            s.expunge_all()
            return rows

    def connection(self, company: str = "Musterfirma GmbH") -> Connection:
        """The company's connection, which the test expects to exist."""
        return present(self.find_connection(company), f"connection of {company}")

    def find_connection(self, company: str = "Musterfirma GmbH") -> Connection | None:
        with unit_of_work(self.engine) as s:
            row = s.exec(select(Connection).where(Connection.company_id == self.companies[company])).first()
            if row is not None:
                s.expunge(row)
            return row

    def pending(self) -> list[PendingAuthorization]:
        with unit_of_work(self.engine) as s:
            return list(s.exec(select(PendingAuthorization)).all())

    def audit_actions(self) -> list[tuple[str, str]]:
        with unit_of_work(self.engine) as s:
            return [(e.action, e.actor) for e in s.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all()
                    if e.action.startswith("document.")]


def make_desk(app_db: str, emulator, monkeypatch: pytest.MonkeyPatch) -> Desk:
    """The dashboard's settings point at the test emulator (the pages read them from the environment)."""
    monkeypatch.setenv("EMULATOR_URL", emulator.base_url)
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.emulator_url == emulator.base_url and settings.database_url == app_db
    engine = get_engine(app_db)
    with unit_of_work(engine) as s:
        companies = {c.name: id_of(c) for c in s.exec(select(Company)).all()}
    return Desk(engine, settings, companies)








def table(at: AppTest, column: str) -> list[dict]:
    """The rows of the first dataframe that has this column."""
    for frame in at.dataframe:
        data = frame.value
        if column in data.columns:
            return data.to_dict("records")
    raise AssertionError(f"no dataframe with a column {column!r}")


def run_page(app: Callable[..., AppTest], who: str, page: str) -> AppTest:
    """Run `page` as `who` (the `app` fixture) and make sure it rendered without an exception."""
    at = app(who, page).run()
    assert not at.exception, at.exception
    return at


ROOT = Path(__file__).resolve().parent.parent.parent


IDENTITIES: dict[str, dict[str, Any]] = {
    "admin": {"is_logged_in": True, "sub": "demo-admin", "email": "admin@tokendesk.demo", "name": "Anna Admin"},
    "operator": {"is_logged_in": True, "sub": "demo-operator", "email": "operator@tokendesk.demo"},
    "viewer": {"is_logged_in": True, "sub": "demo-viewer", "email": "viewer@tokendesk.demo"},
    "nobody": {"is_logged_in": True, "sub": "demo-nobody", "email": "nobody@tokendesk.demo"},
    "signed_out": {"is_logged_in": False},
}
