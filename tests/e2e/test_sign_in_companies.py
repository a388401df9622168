"""Fresh database -> sign in at the local identity provider -> admin creates, edits, archives a
company; the viewer sees the same page read-only. Real st.login, real browser, real HTTP."""

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlmodel import select

from core.platform.db import make_engine, unit_of_work
from core.platform.models import AuditEvent, Company
from tests.support.browser import choose, open_page, settled, sign_in
from tests.support.harness import DashboardServer, evidence_on_failure

pytestmark = pytest.mark.e2e


def field(page: Page, label: str, nth: int = 0):
    return page.get_by_label(label, exact=True).nth(nth)


def fill(page: Page, label: str, value: str, nth: int = 0) -> None:
    """Type into a field and make sure the value is there before anything is submitted."""
    field(page, label, nth).fill(value)
    expect(field(page, label, nth)).to_have_value(value)


def test_admin_manages_companies_and_viewer_reads(page: Page, demo_db_url: str, emulator, tmp_path: Path) -> None:
    with DashboardServer(tmp_path, demo_db_url, emulator.base_url) as server:
        with evidence_on_failure(page, server, tmp_path):
            sign_in(page, server.url, "admin")
            open_page(page, "Unternehmen")
            # the page's last element: the whole script has rendered, no input gets replaced while typing
            expect(page.get_by_role("button", name="Archivieren")).to_be_visible()

            # create (the first form on the page is "Neues Unternehmen")
            fill(page, "Name", "Browser Test GmbH")
            fill(page, "Berater-Nr.", "29098")
            fill(page, "Mandanten-Nr.", "55")
            page.get_by_role("button", name="Anlegen").click()
            expect(page.get_by_text("„Browser Test GmbH“ angelegt")).to_be_visible()
            settled(page)

            # invalid input: German message, nothing stored
            fill(page, "Name", "Ungültig GmbH")
            fill(page, "Berater-Nr.", "12")
            fill(page, "Mandanten-Nr.", "1")
            page.get_by_role("button", name="Anlegen").click()
            expect(page.get_by_text("Die Berater-Nr. besteht aus 4 bis 7 Ziffern").first).to_be_visible()
            settled(page)

            # edit + archive "Browser Test GmbH" (choose it in the edit select box)
            choose(page, "Unternehmen auswählen", "Browser Test GmbH")
            expect(field(page, "Name", 1)).to_have_value("Browser Test GmbH")  # the edit form re-rendered
            settled(page)
            fill(page, "Name", "Browser Test AG", 1)
            page.get_by_role("button", name="Speichern").click()
            expect(page.get_by_text("Änderungen an „Browser Test AG“ gespeichert")).to_be_visible()
            settled(page)
            page.get_by_role("button", name="Archivieren").click()  # asks first (a popover)
            page.get_by_role("button", name="Ja, archivieren").click()
            expect(page.get_by_text("„Browser Test AG“ archiviert")).to_be_visible()

            page.context.clear_cookies()
            sign_in(page, server.url, "viewer")
            open_page(page, "Unternehmen")
            expect(page.get_by_text("Nur Administratoren können Unternehmen anlegen und ändern.")).to_be_visible()
            assert page.get_by_role("button", name="Anlegen").count() == 0
            assert page.locator("[data-testid='stTextInput']").count() == 0

    engine = make_engine(demo_db_url)
    with unit_of_work(engine) as s:
        stored = s.exec(select(Company).where(Company.consultant_number == 29098)).one()
        actions = [e.action for e in s.exec(select(AuditEvent).where(AuditEvent.entity_id == str(stored.id)))]
        assert s.exec(select(Company).where(Company.name == "Ungültig GmbH")).first() is None
    engine.dispose()
    assert stored.name == "Browser Test AG" and stored.archived_at is not None
    assert actions == ["company.created", "company.updated", "company.archived"]
