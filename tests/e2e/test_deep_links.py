"""On a fresh server, a deep link to any page without a signed-in user renders nothing protected.

Each page gets its own fresh server: a folder named pages/ starts Streamlit's legacy multipage
mode, where a deep link runs the page file without the router until some session has run
st.navigation (docs/style.md §3.1 rule 1). The page's own guard must hold on its own.
"""

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.browser import wait_connected
from tests.support.harness import DashboardServer
from ui.navigation import PAGE_TABLE

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("spec", PAGE_TABLE, ids=lambda s: s.url_path)
def test_deep_link_without_sign_in_shows_only_sign_in(spec, page: Page, demo_db_url: str, emulator, tmp_path: Path):
    with DashboardServer(tmp_path, demo_db_url, emulator.base_url) as server:
        try:
            for _visit in range(2):  # first and second visit, as in the observed leak
                page.goto(f"{server.url}/{spec.url_path}")
                wait_connected(page)
                expect(page.get_by_text("Bitte melden Sie sich an.")).to_be_visible()
                body = page.locator("body").inner_text()
                assert spec.title not in [line.strip() for line in body.splitlines()]
                assert "Musterfirma GmbH" not in body and "admin@tokendesk.demo" not in body
                assert page.locator("[data-testid='stDataFrame']").count() == 0
                assert page.locator("[data-testid='stTextInput']").count() == 0
        except Exception:
            print(server.log())
            raise
