"""The Anforderungslink in a real browser, signed out, against the emulator's DATEV pages: the account
holder opens the link, goes to DATEV, logs in and consents, and lands on the German result page; the
token is stored exactly like an admin's, marked as requested via the link. From that browser the link
is used up and every other page of the dashboard still asks for sign-in. A login whose authorization
request was edited to another data set (the #8 attack) stores nothing and leaves no grant at DATEV."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from playwright.sync_api import Browser, Page, expect
from sqlmodel import col, select

from core.connections import request_links
from core.platform.db import make_engine, unit_of_work
from core.platform.models import AppUser, Company, Connection, RequestLink
from tests.support import TEST_KEY_ENTRY
from tests.support.browser import log_in_and_consent_at_datev, wait_connected
from tests.support.harness import DashboardServer, evidence_on_failure
from ui.navigation import PAGE_TABLE

pytestmark = pytest.mark.e2e

COMPANY = "Musterfirma GmbH"


def create_link(settings_for, db_url: str, public_url: str, recipient: str = "stb@kanzlei.example") -> tuple[str, int]:
    """As the admin's panel does (its page test: tests/app/test_request_link_page.py)."""
    from core.platform.crypto import Keyring

    settings = settings_for(db_url).model_copy(update={"public_url": public_url})
    engine = make_engine(db_url)
    with unit_of_work(engine) as s:
        admin = s.exec(select(AppUser).where(AppUser.email == "admin@tokendesk.demo")).one()
        company_id = s.exec(select(Company).where(Company.name == COMPANY)).one().id
        s.expunge(admin)
    assert company_id is not None
    created = request_links.create_link(engine, settings, Keyring.parse(TEST_KEY_ENTRY), company_id=company_id,
                                        actor=admin, recipient=recipient)
    engine.dispose()
    return created.url, company_id


def start(page: Page, link_url: str) -> str:
    """Open the link, check the facts, press "Weiter"; the DATEV login URL the page offers."""
    page.goto(link_url)
    wait_connected(page)
    expect(page.get_by_role("heading", name="Dauerhaften DATEV-Zugriff freigeben")).to_be_visible()
    expect(page.get_by_role("button", name="Weiter zur DATEV-Anmeldung")).to_be_visible()  # the last element
    body = page.locator("body").inner_text()
    assert "455148–1" in body and "Anna Admin" in body
    assert "stb@kanzlei.example" not in body  # the recipient is not shown: the link may have been forwarded
    assert page.locator("[data-testid='stSidebar']").count() == 0  # no menu, no sidebar
    page.get_by_role("button", name="Weiter zur DATEV-Anmeldung").click()
    anchor = page.locator("[data-testid='request-link-datev']")
    expect(anchor).to_be_visible()
    href = anchor.get_attribute("href")
    assert href
    return href


def grants(emulator_url: str) -> list[dict]:
    found: list[dict] = requests.get(emulator_url + "/_admin/datev/grants", timeout=5).json()
    return found


def register_redirect(emulator_url: str, server: DashboardServer) -> None:
    requests.post(f"{emulator_url}/_admin/datev/clients", json={"redirect_uris": [f"{server.url}/anforderung",
                                                                               f"{server.url}/datev_callback"]},
                  timeout=5).raise_for_status()


def test_account_holder_grants_the_token_through_the_link(browser: Browser, demo_db_url: str, emulator, settings_for,
                                                          tmp_path: Path) -> None:
    with DashboardServer(tmp_path, demo_db_url, emulator.base_url) as server:
        register_redirect(emulator.base_url, server)
        link_url, company_id = create_link(settings_for, demo_db_url, server.url)
        context = browser.new_context(locale="de-DE", timezone_id="Europe/Berlin")  # nobody signed in
        page = context.new_page()
        with evidence_on_failure(page, server, tmp_path):
            page.goto(start(page, link_url))
            log_in_and_consent_at_datev(page, emulator.base_url)
            page.wait_for_url(f"{server.url}/anforderung**")
            wait_connected(page)
            expect(page.get_by_text("Der dauerhafte Zugriff ist eingerichtet")).to_be_visible()
            expect(page.get_by_text("Angemeldet als: Max Mustermann")).to_be_visible()
            expect(page.get_by_text("Gültig bis:")).to_be_visible()
            assert "code=" not in page.url and "state=" not in page.url
            assert page.locator("button").filter(has_text="Weiter").count() == 0  # it offers nothing more

            # the same link again, in this browser: used up, one message
            page.goto(link_url)
            wait_connected(page)
            expect(page.get_by_text(request_links.REFUSED)).to_be_visible()
            assert page.get_by_role("button", name="Weiter zur DATEV-Anmeldung").count() == 0

            # every other page from this browser still asks for sign-in and shows no data
            for spec in PAGE_TABLE:
                page.goto(f"{server.url}/{spec.url_path}")
                wait_connected(page)
                expect(page.get_by_text("Bitte melden Sie sich an.")).to_be_visible()
                other = page.locator("body").inner_text()
                assert "Musterfirma GmbH" not in other and "admin@tokendesk.demo" not in other, spec.url_path
                assert page.locator("[data-testid='stSidebarNav']").count() == 0
        context.close()

    engine = make_engine(demo_db_url)
    with unit_of_work(engine) as s:
        row = s.exec(select(Connection).where(Connection.company_id == company_id)).one()
        link = s.exec(select(RequestLink)).one()
        assert row.has_token and row.grantor_name == "Max Mustermann" and row.bound_client == "455148-1"
        assert row.requested_by == "admin@tokendesk.demo"
        assert row.requested_via == "Anforderungslink für stb@kanzlei.example"
        assert link.succeeded is True and link.started_at is not None and link.grantor_name == "Max Mustermann"
    engine.dispose()


def test_a_login_edited_to_another_data_set_stores_nothing(browser: Browser, demo_db_url: str, emulator, settings_for,
                                                           tmp_path: Path) -> None:
    with DashboardServer(tmp_path, demo_db_url, emulator.base_url) as server:
        register_redirect(emulator.base_url, server)
        before = {g["id"] for g in grants(emulator.base_url)}
        link_url, company_id = create_link(settings_for, demo_db_url, server.url, recipient="")
        context = browser.new_context(locale="de-DE", timezone_id="Europe/Berlin")
        page = context.new_page()
        with evidence_on_failure(page, server, tmp_path):
            login_url = start(page, link_url)
            scope = parse_qs(urlsplit(login_url).query)["scope"][0]
            assert "datev:iam:client:455148-1" in scope
            page.goto(login_url.replace("455148-1", "455148-2"))  # the visitor edits the data set
            log_in_and_consent_at_datev(page, emulator.base_url)
            page.wait_for_url(f"{server.url}/anforderung**")
            wait_connected(page)
            expect(page.locator("[data-testid='stAlertContentError']")).to_be_visible()
            assert "455148" in page.locator("[data-testid='stAlertContentError']").inner_text()
        context.close()

    issued = [g for g in grants(emulator.base_url) if g["id"] not in before]
    assert issued and all(g["revoked"] for g in issued)  # DATEV issued the grant; the desk revoked it at once
    engine = make_engine(demo_db_url)
    with unit_of_work(engine) as s:
        row = s.exec(select(Connection).where(Connection.company_id == company_id)).first()
        link = s.exec(select(RequestLink)).one()
        assert row is None or not row.has_token
        assert link.succeeded is False
    engine.dispose()


def test_withdrawn_and_expired_links_are_refused_with_the_one_message(browser: Browser, demo_db_url: str, emulator,
                                                                    settings_for, tmp_path: Path) -> None:
    with DashboardServer(tmp_path, demo_db_url, emulator.base_url) as server:
        withdrawn_url, _ = create_link(settings_for, demo_db_url, server.url, recipient="")
        expired_url, _ = create_link(settings_for, demo_db_url, server.url, recipient="")
        engine = make_engine(demo_db_url)
        with unit_of_work(engine) as s:
            admin = s.exec(select(AppUser).where(AppUser.email == "admin@tokendesk.demo")).one()
            s.expunge(admin)
            links = s.exec(select(RequestLink).order_by(col(RequestLink.id))).all()
            first, second = links[0].id, links[1].id
        assert first is not None and second is not None
        assert request_links.withdraw_link(engine, link_id=first, actor=admin)
        with unit_of_work(engine) as s:
            link = s.get(RequestLink, second)
            assert link is not None
            link.expires_at = link.created_at  # its time is over
            s.add(link)
        engine.dispose()

        context = browser.new_context(locale="de-DE", timezone_id="Europe/Berlin")
        page = context.new_page()
        with evidence_on_failure(page, server, tmp_path):
            for url in (withdrawn_url, expired_url):
                page.goto(url)
                wait_connected(page)
                expect(page.get_by_text(request_links.REFUSED)).to_be_visible()
                body = page.locator("body").inner_text()
                assert "Musterfirma GmbH" not in body and "Anna Admin" not in body  # nothing about the link
                assert page.get_by_role("button", name="Weiter zur DATEV-Anmeldung").count() == 0
        context.close()
