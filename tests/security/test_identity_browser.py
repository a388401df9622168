"""Sign-in identity in a real browser (issue 9, "High — the sign-in identity is never bound"): the first
sign-in binds the identity provider's `sub` once, however many pages are opened afterwards; another
subject presenting a bound user's address gets "Kein Zugriff" and one audit event, through st.login and
the router, not only the function (tests/security/test_identity.py covers the AppTest path)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from sqlmodel import select

from core.platform.db import make_engine, unit_of_work
from core.platform.models import AppUser, AuditEvent
from tests.support.browser import sign_in, wait_connected
from tests.support.harness import DashboardServer, evidence_on_failure

pytestmark = pytest.mark.e2e


def events(db_url: str, action: str) -> list[AuditEvent]:
    engine = make_engine(db_url)
    with unit_of_work(engine) as s:
        found = list(s.exec(select(AuditEvent).where(AuditEvent.action == action)).all())
        s.expunge_all()
    engine.dispose()
    return found


def test_the_first_sign_in_binds_once_and_a_foreign_subject_is_refused(browser: Browser, demo_db_url: str,
                                                                       emulator, tmp_path: Path) -> None:
    engine = make_engine(demo_db_url)
    with unit_of_work(engine) as s:  # the viewer's address is already bound to another subject
        viewer = s.exec(select(AppUser).where(AppUser.email == "viewer@tokendesk.demo")).one()
        viewer.sub = "another-subject"
        s.add(viewer)
    engine.dispose()

    with DashboardServer(tmp_path, demo_db_url, emulator.base_url) as server:
        context = browser.new_context(locale="de-DE", timezone_id="Europe/Berlin")
        page = context.new_page()
        with evidence_on_failure(page, server, tmp_path):
            sign_in(page, server.url, "admin")
            for path in ("/tokens", "/companies", "/documents", "/"):
                page.goto(server.url + path)
                wait_connected(page)
                expect(page.get_by_text("Anna Admin")).to_be_visible()
        context.close()

        context = browser.new_context(locale="de-DE", timezone_id="Europe/Berlin")
        page = context.new_page()
        with evidence_on_failure(page, server, tmp_path):
            page.goto(server.url)
            wait_connected(page)
            page.get_by_role("button", name="Anmelden").click()
            page.locator("[data-testid='login-viewer']").click()
            page.wait_for_url(f"{server.url}/**")
            wait_connected(page)
            expect(page.get_by_role("heading", name="Kein Zugriff")).to_be_visible()
            page.reload()
            wait_connected(page)
            expect(page.get_by_role("heading", name="Kein Zugriff")).to_be_visible()
            assert "Vera Viewer" not in page.locator("body").inner_text()
        context.close()

    bound = [e for e in events(demo_db_url, "user.first_sign_in") if e.actor == "admin@tokendesk.demo"]
    assert len(bound) == 1  # one binding, not one per page run
    refused = events(demo_db_url, "user.identity_refused")
    assert len(refused) == 1 and "demo-viewer" not in str(refused[0].detail)  # a fingerprint, not the subject
    engine = make_engine(demo_db_url)
    with unit_of_work(engine) as s:
        admin = s.exec(select(AppUser).where(AppUser.email == "admin@tokendesk.demo")).one()
        viewer = s.exec(select(AppUser).where(AppUser.email == "viewer@tokendesk.demo")).one()
        assert admin.sub == "demo-admin" and viewer.sub == "another-subject"
    engine.dispose()
