"""Übertragen and the Übersicht's company table in a real browser at 1280×800: the dry run's reason column
is on screen without scrolling sideways; a one-off DATEV login started on Übertragen comes back there with
the company and the chosen documents; selecting a row of the all-companies table opens the company page.
Real servers, real HTTP.

`st.dataframe` draws on a canvas (glide-data-grid). Its cells are not laid out in the DOM, but the grid
keeps an accessible <table role="grid"> inside the canvas that holds exactly the columns it draws
(glide's getEffectiveColumns: every column that starts inside the grid's visible width, from the
horizontal scroll position on). That table is what these tests read; the canvas's own box gives the
geometry."""

from pathlib import Path

import pytest
import requests
from playwright.sync_api import Locator, Page, ViewportSize, expect
from sqlmodel import select

from core.documents import intake, lifecycle
from core.platform.db import make_engine, unit_of_work
from core.platform.models import Company, Document
from core.users import process
from testkit.rows import id_of, ids_of
from testkit.samples import pdf
from tests.support.browser import choose, log_in_and_consent_at_datev, open_page, settled, sign_in, wait_connected
from tests.support.harness import DashboardServer, evidence_on_failure

pytestmark = pytest.mark.e2e
WIDTH = 1280
VIEWPORT: ViewportSize = {"width": WIDTH, "height": 800}
OPERATOR = "operator@tokendesk.demo"


def company_ids(db_url: str) -> dict[str, int]:
    engine = make_engine(db_url)
    with unit_of_work(engine) as s:
        found = {c.name: id_of(c) for c in s.exec(select(Company)).all()}
    engine.dispose()
    return found


def approved_documents(db_url: str, company_id: int, *names: str) -> list[int]:
    """Documents approved for transfer, through core, before the dashboard starts."""
    engine = make_engine(db_url)
    report = intake.intake(engine, company_id=company_id, actor=process(OPERATOR),
                           files=[(name, pdf(name)) for name in names])
    assert not report.rejected, report.rejected
    ids = ids_of(report.accepted)
    assert lifecycle.approve(engine, document_ids=ids, actor=process(OPERATOR)) == len(ids)
    engine.dispose()
    return ids


def grid_of(container: Locator) -> Locator:
    """The drawn grid (the canvas) of the one st.dataframe in `container`."""
    grid = container.get_by_test_id("data-grid-canvas")
    expect(grid).to_have_count(1)
    return grid


def drawn_headers(grid: Locator) -> list[str]:
    """The column titles the grid draws now, left to right (its accessible table lists no others)."""
    return [text.strip() for text in grid.locator("th[role='columnheader']").all_text_contents()]


def horizontal_scroll(grid: Locator) -> float:
    """How far the grid is scrolled sideways (0: its first column starts at its left edge)."""
    offsets = grid.evaluate("canvas => [...canvas.closest('[data-testid=\"stDataFrame\"]')"
                            ".querySelectorAll('.dvn-scroller')].map(scroller => scroller.scrollLeft)")
    assert isinstance(offsets, list) and len(offsets) == 1, offsets  # the grid's one scrolling element
    return float(offsets[0])


def test_dry_run_reason_is_visible_without_scrolling_sideways(page: Page, demo_db_url: str, emulator,
                                                              tmp_path: Path) -> None:
    # Musterfirma GmbH has no token: its approved document cannot be sent, and the dry run says why.
    approved_documents(demo_db_url, company_ids(demo_db_url)["Musterfirma GmbH"], "Rechnung 7.pdf")
    page.set_viewport_size(VIEWPORT)
    with DashboardServer(tmp_path, demo_db_url, emulator.base_url) as server, \
            evidence_on_failure(page, server, tmp_path):
        sign_in(page, server.url, "operator")
        open_page(page, "Übertragen")
        page.get_by_role("button", name="Alle auswählen").click()
        expect(page.get_by_text("0 von 1 ausgewählten Belegen werden gesendet. Warum nicht: Token fehlt.",
                                exact=True)).to_be_visible()
        settled(page)

        plan = page.locator("[data-testid='stDataFrame']").filter(
            has=page.locator("th[role='columnheader']", has_text="Hinweis"))
        grid = grid_of(plan)
        expect(grid).to_be_visible()
        reason = grid.locator("td[role='gridcell'][aria-colindex='2']")  # waits until the grid has drawn
        expect(reason).to_have_text(["wartet: Token fehlt"])
        headers = drawn_headers(grid)
        assert headers[:2] == ["Beleg", "Hinweis"], headers  # the reason right after the document's name
        # The grid starts unscrolled and still draws a column after "Hinweis": "Hinweis" ends inside the
        # grid's visible width, so the whole reason is on screen without scrolling sideways.
        assert horizontal_scroll(grid) == 0
        assert len(headers) > 2, headers
        box = grid.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, box
        # ... and the page itself needs no sideways scrolling either.
        assert page.evaluate("document.scrollingElement.scrollWidth") <= WIDTH
        assert page.evaluate("window.scrollX") == 0


def test_one_off_login_returns_to_transfer_with_company_and_documents(page: Page, demo_db_url: str, emulator,
                                                                      tmp_path: Path) -> None:
    companies = company_ids(demo_db_url)
    musterfirma = companies["Musterfirma GmbH"]
    chosen, other = approved_documents(demo_db_url, musterfirma, "Rechnung zurück.pdf", "Rechnung bleibt.pdf")
    [elsewhere] = approved_documents(demo_db_url, companies["Demo Bau AG"], "Rechnung Bau.pdf")
    chosen_label = f"Nr. {chosen} · Rechnung zurück.pdf (Musterfirma GmbH)"
    page.set_viewport_size(VIEWPORT)
    with DashboardServer(tmp_path, demo_db_url, emulator.base_url) as server, \
            evidence_on_failure(page, server, tmp_path):
        requests.post(f"{emulator.base_url}/_admin/datev/clients",
                      json={"redirect_uris": [f"{server.url}/datev_callback"]}, timeout=5).raise_for_status()
        sign_in(page, server.url, "operator")
        open_page(page, "Übertragen")
        choose(page, "Unternehmen", "Musterfirma GmbH")
        expect(page.get_by_text("Bitte wählen Sie die Belege aus, die übertragen werden sollen.")).to_be_visible()
        settled(page)
        choose(page, "Belege auswählen", chosen_label)
        expect(page.get_by_text("0 von 1 ausgewählten Belegen werden gesendet. Warum nicht: Token fehlt.",
                                exact=True)).to_be_visible()
        page.keyboard.press("Escape")  # close the list of the multiselect
        settled(page)
        page.get_by_text("Mit einmaliger DATEV-Anmeldung (ohne Langzeittoken)", exact=True).click()
        start = page.get_by_role("button", name="Einmalig bei DATEV anmelden: Musterfirma GmbH")
        expect(start).to_be_visible()
        settled(page)
        start.click()
        expect(page.get_by_text("Danach kommen Sie hierher zurück.", exact=False)).to_be_visible()
        link = page.locator("[data-testid='auth-link']")
        expect(link).to_have_text("Weiter zur einmaligen DATEV-Anmeldung (Musterfirma GmbH)")
        link.click()

        log_in_and_consent_at_datev(page, emulator.base_url, long_term=False)

        # back in Token Desk: on Übertragen, with the company, the one document and the one-off mode
        page.wait_for_url(f"{server.url}/transfer**")
        wait_connected(page)
        expect(page.get_by_role("heading", name="Übertragen", exact=True)).to_be_visible()
        expect(page.get_by_text("Musterfirma GmbH: einmalige DATEV-Anmeldung liegt vor.")).to_be_visible()
        expect(page.get_by_text("1 von 1 ausgewählten Belegen werden gesendet.", exact=True)).to_be_visible()
        settled(page)
        assert page.url.rstrip("/") == f"{server.url}/transfer"  # no code, state or documents left in the URL
        expect(page.get_by_role("combobox", name="Unternehmen")).to_have_value("Musterfirma GmbH")
        selected = page.locator(".st-key-transfer_chosen").get_by_role("group", name="Selected values")
        expect(selected.get_by_role("button")).to_have_count(1)  # one chip, each with its remove button
        expect(selected).to_have_text(chosen_label)
        expect(page.get_by_role("radio", name="Mit einmaliger DATEV-Anmeldung (ohne Langzeittoken)")).to_be_checked()

        # the restored selection is the one that is sent: only the chosen document
        page.get_by_role("button", name="Mit einmaliger DATEV-Anmeldung übertragen").click()
        expect(page.get_by_text("1 übertragen, 0 fehlgeschlagen, 0 ungeklärt.")).to_be_visible()

    engine = make_engine(demo_db_url)
    with unit_of_work(engine) as s:
        status = {id_of(d): d.status for d in s.exec(select(Document)).all()}
    engine.dispose()
    assert status == {chosen: "delivered", other: "approved", elsewhere: "approved"}


def test_selecting_a_row_of_the_overview_opens_the_company(page: Page, demo_db_url: str, emulator,
                                                          tmp_path: Path) -> None:
    demo_bau = company_ids(demo_db_url)["Demo Bau AG"]
    page.set_viewport_size(VIEWPORT)
    with DashboardServer(tmp_path, demo_db_url, emulator.base_url) as server, \
            evidence_on_failure(page, server, tmp_path):
        sign_in(page, server.url, "viewer")
        expect(page.get_by_role("heading", name="Übersicht", exact=True)).to_be_visible()
        expect(page.get_by_text("4 von 4 Unternehmen", exact=False)).to_be_visible()
        settled(page)
        grid = grid_of(page.locator(".st-key-overview_table"))
        grid.scroll_into_view_if_needed()
        expect(grid).to_be_visible()
        names = grid.locator("td[role='gridcell'][aria-colindex='1']")
        expect(names).to_have_count(4)  # every row drawn (the selection column is the grid's own, not listed)
        row = names.all_text_contents().index("Demo Bau AG")

        # A person ticks the box in front of the row. The header and each row are equally tall (all rows
        # are drawn), so the row's middle follows from the canvas's height; the box sits at its left end.
        box = grid.bounding_box()
        assert box is not None
        row_height = box["height"] / (len(names.all_text_contents()) + 1)
        page.mouse.click(box["x"] + row_height / 2, box["y"] + row_height * (row + 1.5))

        page.wait_for_url(f"{server.url}/company?company={demo_bau}")
        expect(page.get_by_role("heading", name="Demo Bau AG", exact=True)).to_be_visible()
        expect(page.get_by_text("Zur Übersicht")).to_be_visible()
