"""Demo data for the embedded default: users for each role and companies that match the emulator.

Seeded only into an empty database (no companies and no users), so it never touches real data.
"""

from __future__ import annotations

import io

from pypdf import PdfWriter
from sqlalchemy import Engine
from sqlmodel import col, select

from core import companies, users
from core.documents import intake
from core.platform.db import unit_of_work
from core.platform.models import AppUser, Company, Interface, Role
from core.users import process

DEMO_ACTOR = "system:demo-seed"

# The e-mail addresses match the emulator's local identity provider (docs/emulator.md).
DEMO_USERS = (
    ("admin@tokendesk.demo", "Anna Admin", Role.admin),
    ("operator@tokendesk.demo", "Otto Operator", Role.operator),
    ("viewer@tokendesk.demo", "Vera Viewer", Role.viewer),
)

# DATEV sandbox-style data sets (consultant 455148) that the emulator knows.
DEMO_COMPANIES = (
    companies.CompanyInput("Musterfirma GmbH", "455148", "1", Interface.datev.value, True, "Rechnungseingang"),
    companies.CompanyInput("Beispiel Handel KG", "455148", "2", Interface.datev.value, False, "Rechnungseingang"),
    companies.CompanyInput("Demo Bau AG", "455148", "3", Interface.datev.value, False, ""),
    companies.CompanyInput("Lexware Demo GmbH", "", "", Interface.lexware.value, False, ""),
)


def is_empty(engine: Engine) -> bool:
    with unit_of_work(engine) as session:
        return session.exec(select(Company.id)).first() is None and session.exec(select(AppUser.id)).first() is None


def seed_demo(engine: Engine, *, with_documents: bool = False) -> bool:
    """Seed the demo data if the database is empty. Returns True if it seeded.

    `with_documents` adds three generated sample PDFs (new, not yet approved) for the first company, so
    a newcomer has Belege to approve once the Langzeittoken is there. Not approved on purpose: approved
    Belege without a token would raise "Belege warten" before anyone did anything.
    """
    if not is_empty(engine):
        return False
    # One transaction for the whole seed (the modules' in-transaction helpers): a seed that fails
    # half-way leaves the database empty, so the next start seeds again instead of skipping.
    with unit_of_work(engine) as session:
        for email, name, role in DEMO_USERS:
            users._set_role(session, actor=DEMO_ACTOR, email=email, role=role, display_name=name)
        for data in DEMO_COMPANIES:
            companies._create_company(session, actor=DEMO_ACTOR, data=data)
        first_company_id = session.exec(select(Company.id).order_by(col(Company.id))).first()
    if with_documents and first_company_id is not None:
        _seed_documents(engine, first_company_id)
    return True


def _sample_pdf(title: str) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.add_metadata({"/Title": title, "/Producer": "Token Desk demo"})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _seed_documents(engine: Engine, company_id: int) -> None:
    names = ("Rechnung 2026-101 Büromaterial.pdf", "Rechnung 2026-102 Reisekosten.pdf", "Quittung Taxi 14.11.pdf")
    intake.intake(engine, company_id=company_id, actor=process(DEMO_ACTOR), source="demo",
                  files=[(name, _sample_pdf(name)) for name in names])
