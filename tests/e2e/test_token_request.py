"""The Langzeittoken request in a real browser: sign in at the local identity provider, request the
token for Musterfirma GmbH, log in and consent at the emulator's DATEV pages, land back on the
dashboard and see the card; then delete it (revoked at DATEV). Real servers, real HTTP."""

from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect
from sqlmodel import col, select

from core.platform.db import make_engine, unit_of_work
from core.platform.models import AuditEvent, Company, Connection, StoredSecret
from testkit.rows import id_of
from tests.support.browser import log_in_and_consent_at_datev, settled, sign_in, wait_connected
from tests.support.harness import DashboardServer, evidence_on_failure

pytestmark = pytest.mark.e2e


def company_id(db_url: str, name: str) -> int:
    engine = make_engine(db_url)
    with unit_of_work(engine) as s:
        found = id_of(s.exec(select(Company).where(Company.name == name)).one())
    engine.dispose()
    return found


def test_admin_requests_and_deletes_a_long_term_token(page: Page, demo_db_url: str, emulator, tmp_path: Path) -> None:
    musterfirma = company_id(demo_db_url, "Musterfirma GmbH")
    with DashboardServer(tmp_path, demo_db_url, emulator.base_url) as server:
        callback_uri = f"{server.url}/datev_callback"
        requests.post(f"{emulator.base_url}/_admin/datev/clients", json={"redirect_uris": [callback_uri]},
                      timeout=5).raise_for_status()
        with evidence_on_failure(page, server, tmp_path):
            sign_in(page, server.url, "admin")
            page.get_by_role("link", name="Langzeittoken", exact=True).click()  # from the menu (the Übersicht links "Langzeittoken anfordern")
            expect(page.get_by_role("heading", name="Langzeittoken", exact=True)).to_be_visible()
            card = page.locator(f".st-key-request_{musterfirma}")
            card.get_by_role("button", name="Langzeittoken anfordern").click()
            link = page.locator("[data-testid='auth-link']")
            expect(link).to_have_text("Weiter zur DATEV-Anmeldung (Langzeittoken)")
            link.click()

            log_in_and_consent_at_datev(page, emulator.base_url)

            # back on the dashboard: the callback stored the token and showed the tokens page
            page.wait_for_url(f"{server.url}/**")
            wait_connected(page)
            expect(page.get_by_text("Langzeittoken gespeichert (DATEV-Benutzer: Max Mustermann)")).to_be_visible()
            expect(page.get_by_text("Zugriff auf Mandant 455148-1 (Musterfirma GmbH) bestätigt").first).to_be_visible()
            assert "code=" not in page.url and "state=" not in page.url
            card = page.locator("div").filter(has=page.get_by_role("heading", name="Musterfirma GmbH · DATEV")).filter(
                has_text="Status:").last  # the innermost block that holds the card
            expect(card.locator("[data-testid='stMarkdownContainer']").filter(has_text="Status:")).to_contain_text("aktiv")
            expect(page.get_by_text("DATEV-Benutzer: Max Mustermann", exact=True)).to_be_visible()
            expect(page.get_by_text("Datenbestand (Berater-Nr.–Mandanten-Nr.): gebunden an 455148–1", exact=True)).to_be_visible()
            expect(card.get_by_role("button", name="Neu anfordern")).to_be_visible()
            settled(page)

            # delete: revoke at DATEV and erase here
            page.get_by_role("button", name="Langzeittoken löschen").click()
            expect(page.get_by_role("button", name="Endgültig löschen")).to_be_visible()
            settled(page)
            page.get_by_role("button", name="Endgültig löschen").click()
            expect(page.get_by_text("Musterfirma GmbH: Langzeittoken gelöscht und bei DATEV widerrufen.")).to_be_visible()
            expect(card.locator("[data-testid='stMarkdownContainer']").filter(has_text="Status:")).to_contain_text(
                "widerrufen")
            expect(page.get_by_text("DATEV-Benutzer: Max Mustermann", exact=True)).to_have_count(0)

    engine = make_engine(demo_db_url)
    with unit_of_work(engine) as s:
        row = s.exec(select(Connection).where(Connection.company_id == musterfirma)).one()
        actions = [e.action for e in s.exec(select(AuditEvent).where(AuditEvent.entity_type == "connection")
                                            .order_by(col(AuditEvent.id)))]
        leftover = s.exec(select(StoredSecret)).all()
    engine.dispose()
    assert not row.has_token and row.deleted_by == "admin@tokendesk.demo" and row.grantor_name == "Max Mustermann"
    assert actions == ["token.requested", "token.test", "token.deleted"] and leftover == []
    grants = requests.get(f"{emulator.base_url}/_admin/datev/grants", timeout=5).json()
    grants = grants if isinstance(grants, list) else grants["grants"]
    assert len(grants) == 1 and grants[0]["revoked"]
