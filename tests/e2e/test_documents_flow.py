"""Belege to DATEV in a real browser: the operator uploads a valid PDF and an empty file (German
rejection), sees the PDF drawn in the preview, approves it, transfers it on "Übertragen" with the
company's Langzeittoken and sees it delivered; the emulator received the document's GUID exactly
once. Real servers, real HTTP."""

from pathlib import Path

import pytest
import requests
from playwright.sync_api import FilePayload, Page, expect
from sqlmodel import select

from core.platform.config import Settings
from core.platform.db import make_engine, unit_of_work
from core.platform.models import AppUser, Company, Document
from core.platform.secret_store import get_keyring
from testkit.datev_user import log_in_at_datev
from testkit.rows import present
from testkit.samples import pdf
from tests.support.browser import choose, settled, sign_in
from tests.support.harness import DashboardServer, evidence_on_failure

pytestmark = pytest.mark.e2e


def request_long_term_token(db_url: str, emulator_url: str) -> int:
    """Through core against the emulator, before the dashboard starts (same database, same key)."""
    settings = Settings(_env_file=None, app_env="test", database_url=db_url, emulator_url=emulator_url)
    engine = make_engine(db_url)
    with unit_of_work(engine) as s:
        admin = s.exec(select(AppUser).where(AppUser.email == "admin@tokendesk.demo")).one()
        company_id = present(s.exec(select(Company.id).where(Company.name == "Musterfirma GmbH")).one())
        s.expunge(admin)
    outcome = log_in_at_datev(engine, settings, get_keyring(), company_id=company_id, user=admin)
    engine.dispose()
    assert outcome.ok, outcome.message
    return company_id


def test_operator_uploads_approves_and_transfers(page: Page, demo_db_url: str, emulator, tmp_path: Path) -> None:
    company_id = request_long_term_token(demo_db_url, emulator.base_url)
    with DashboardServer(tmp_path, demo_db_url, emulator.base_url) as server:
        with evidence_on_failure(page, server, tmp_path):
            sign_in(page, server.url, "operator")
            page.get_by_role("link", name="Belege").click()
            expect(page.get_by_role("heading", name="Belege", exact=True)).to_be_visible()

            choose(page, "Unternehmen", "Musterfirma GmbH")
            expect(page.get_by_text("Erlaubt: PDF, JPG, JPEG, PNG, GIF, TIF, TIFF, XML bis 20 MB je Datei (DATEV).")
                   ).to_be_visible()
            # the uploader of the chosen company (keyed per company), not a stale one still fading out
            uploader = page.locator(f".st-key-documents_files_{company_id} [data-testid='stFileUploaderDropzoneInput']")
            expect(uploader).to_have_count(1)
            for name, content, media_type in (("Rechnung Mai.pdf", pdf("Rechnung Mai"), "application/pdf"),
                                              ("leer.pdf", b"", "application/pdf"),
                                              ("notiz.txt", b"Einkauf", "text/plain")):
                # one file at a time, each confirmed by the server before the next (no sleeps); a .txt too:
                # the field takes every file, intake answers in German (the field's own filter said only
                # "text/plain files are not allowed" and dropped it without a word)
                with page.expect_response(lambda r: "/_stcore/upload_file/" in r.url and r.request.method == "PUT"):
                    uploader.set_input_files([FilePayload(name=name, mimeType=media_type, buffer=content)])
            page.get_by_role("button", name="Hochladen").click()
            expect(page.get_by_text("„Rechnung Mai.pdf“ angenommen")).to_be_visible()
            expect(page.get_by_text("Die Datei „leer.pdf“ ist leer (0 Byte).")).to_be_visible()
            expect(page.get_by_text("Die Datei „notiz.txt“ hat das Format .txt, das DATEV nicht annimmt.",
                                    exact=False)).to_be_visible()
            settled(page)

            # the preview before approval: pdf.js (st.pdf) draws the page, no browser PDF plug-in needed
            page.get_by_text("Vorschau", exact=True).click()
            rendered = page.locator("[class*='st-key-documents_preview_'] canvas")
            expect(rendered).to_be_visible()
            box = rendered.bounding_box()
            assert box is not None and box["width"] > 50 and box["height"] > 50, box

            page.get_by_role("button", name="Alle neuen dieser Seite auswählen").click()
            expect(page.get_by_text("Nr. 1 · Rechnung Mai.pdf (Musterfirma GmbH)")).to_be_visible()
            settled(page)
            page.get_by_role("button", name="Freigeben", exact=True).click()
            expect(page.get_by_text("1 Beleg freigegeben.")).to_be_visible()

            page.get_by_role("link", name="Übertragen", exact=True).click()
            expect(page.get_by_role("heading", name="Übertragen", exact=True)).to_be_visible()
            page.get_by_role("button", name="Alle auswählen").click()
            expect(page.get_by_text("1 von 1 ausgewählten Belegen werden gesendet.")).to_be_visible()
            settled(page)
            page.get_by_role("button", name="Übertragen", exact=True).click()
            expect(page.get_by_text("1 übertragen, 0 fehlgeschlagen, 0 ungeklärt.")).to_be_visible()
            expect(page.get_by_text("Fertig: 1 von 1 Belegen bearbeitet.")).to_be_visible()

    engine = make_engine(demo_db_url)
    with unit_of_work(engine) as s:
        [document] = s.exec(select(Document)).all()
        guid, status = document.guid, document.status
    engine.dispose()
    assert status == "delivered"
    data = requests.get(emulator.base_url + "/_admin/datev/uploads", timeout=5).json()
    received = [u["guid"].lower() for u in (data if isinstance(data, list) else data["uploads"])]
    assert received == [guid]
