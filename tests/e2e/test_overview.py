"""The Übersicht in a real browser at 1280×800: "Heute zu tun" and a broken token with its reason above
the fold; a viewer on an admin page's URL gets the German "Keine Berechtigung" page. Real servers, real
HTTP; the token is requested at the emulator through core and then found invalid."""

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect
from sqlmodel import select

from core.connections import store
from core.documents import intake, lifecycle
from core.platform.config import Settings
from core.platform.db import make_engine, unit_of_work
from core.platform.models import AppUser, Company, Connection
from core.platform.secret_store import get_keyring
from core.users import process
from testkit.datev_user import log_in_at_datev
from testkit.rows import id_of, ids_of
from testkit.samples import pdf
from tests.support.browser import settled, sign_in, wait_connected
from tests.support.harness import DashboardServer, evidence_on_failure

pytestmark = pytest.mark.e2e
FOLD = 800


def broken_token_with_a_waiting_document(db_url: str, settings: Settings) -> int:
    """Musterfirma GmbH: a long-term token from DATEV (the emulator), one approved document, then the token
    found invalid (as a refresh answered invalid_grant)."""
    engine = make_engine(db_url)
    with unit_of_work(engine) as s:
        company_id = id_of(s.exec(select(Company).where(Company.name == "Musterfirma GmbH")).one())
        admin = s.exec(select(AppUser).where(AppUser.email == "admin@tokendesk.demo")).one()
        s.expunge(admin)
    assert log_in_at_datev(engine, settings, get_keyring(), company_id=company_id, user=admin).ok
    report = intake.intake(engine, company_id=company_id, actor=process("operator@tokendesk.demo"),
                           files=[("Rechnung 1.pdf", pdf("Rechnung 1"))])
    lifecycle.approve(engine, document_ids=ids_of(report.accepted), actor=process("operator@tokendesk.demo"))
    with unit_of_work(engine) as s:
        connection = s.exec(select(Connection).where(Connection.company_id == company_id)).one()
        s.expunge(connection)
    assert store.mark_invalid(engine, id_of(connection), expected_version=connection.version, reason="invalid_grant")
    engine.dispose()
    return company_id


def test_today_and_the_broken_token_are_above_the_fold(page: Page, demo_db_url: str, emulator, settings_for,
                                                         tmp_path: Path) -> None:
    company_id = broken_token_with_a_waiting_document(demo_db_url, settings_for(demo_db_url))
    page.set_viewport_size({"width": 1280, "height": FOLD})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    with DashboardServer(tmp_path, demo_db_url, emulator.base_url) as server, \
            evidence_on_failure(page, server, tmp_path):
        sign_in(page, server.url, "viewer")
        heading = page.get_by_role("heading", name="Heute zu tun")
        expect(heading).to_be_visible()
        item = page.locator(f".st-key-todo_{company_id}")
        expect(item).to_contain_text("Musterfirma GmbH")
        expect(item).to_contain_text("Token ungültig")
        expect(item).to_contain_text("1 Beleg wartet")
        expect(page.get_by_text("Belege wartend")).to_be_visible()  # the tiles above have their final size
        expect(page.locator(".st-key-overview_table")).to_be_visible()  # the whole run has rendered
        settled(page)
        for element in (heading, item):
            box = element.bounding_box()
            assert box is not None and box["y"] + box["height"] <= FOLD, box  # no scrolling needed
        assert page.evaluate("window.scrollY") == 0
        # An internal tool: nothing is fetched from elsewhere (Streamlit takes a :material/…: page icon from
        # fonts.gstatic.com), not even the tab's icon.
        favicon = page.evaluate("document.querySelector(\"link[rel='shortcut icon']\").href")
        assert urlsplit(favicon).scheme == "data" or local(favicon), favicon

        # the same browser, an admin page's URL: the German page, naming whom to ask
        page.goto(f"{server.url}/users")
        expect(page.get_by_role("heading", name="Keine Berechtigung")).to_be_visible()
        expect(page.get_by_text("Anna Admin (admin@tokendesk.demo)")).to_be_visible()
        assert page.locator("[data-testid='stDataFrame']").count() == 0
        assert "Page not found" not in page.locator("body").inner_text()
    assert requested and [url for url in requested if not local(url)] == []


def local(url: str) -> bool:
    """Served by this machine (the dashboard, the emulator's sign-in) or carried inline (data:, blob:)."""
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob") or parts.hostname in ("127.0.0.1", "localhost")


def test_a_deep_link_survives_the_sign_in(page: Page, demo_db_url: str, emulator, tmp_path: Path) -> None:
    engine = make_engine(demo_db_url)
    with unit_of_work(engine) as s:
        company_id = id_of(s.exec(select(Company).where(Company.name == "Demo Bau AG")).one())
    engine.dispose()
    page.set_viewport_size({"width": 1280, "height": FOLD})
    with DashboardServer(tmp_path, demo_db_url, emulator.base_url) as server, \
            evidence_on_failure(page, server, tmp_path):
        page.goto(f"{server.url}/company?company={company_id}")
        wait_connected(page)
        expect(page.get_by_text("Bitte melden Sie sich an.")).to_be_visible()
        body = page.locator("body").inner_text()
        assert "Demo Bau AG" not in body and "Page not found" not in body
        assert page.locator("[data-testid='stSidebar'] a").count() == 0  # no page list before sign-in
        page.get_by_role("button", name="Anmelden").click()
        page.locator("[data-testid='login-viewer']").click()
        expect(page.get_by_role("heading", name="Demo Bau AG", exact=True)).to_be_visible()  # not the Übersicht
        assert page.url.startswith(f"{server.url}/company") and f"company={company_id}" in page.url
