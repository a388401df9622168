"""Markdown injection (issue 9, "Low — markdown injection") in a real browser: a company whose name is
Markdown, a Streamlit directive and an image pointing at a server of ours is shown as that text on every
page a viewer opens; no element renders as markup and the browser never fetches the image."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from sqlmodel import select

from core.demo import seed_demo
from core.platform.db import make_engine, unit_of_work
from core.platform.models import Company
from tests.support.browser import sign_in, wait_connected
from tests.support.harness import DashboardServer, evidence_on_failure

pytestmark = pytest.mark.e2e


class PixelServer:
    """Counts every request: an image the browser fetched from a company name would show up here."""

    def __init__(self) -> None:
        hits: list[str] = []
        self.hits = hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pixel() -> Iterator[PixelServer]:
    server = PixelServer()
    yield server
    server.close()


def test_a_company_named_like_markup_stays_text_on_every_page(browser: Browser, sqlite_url: str, emulator,
                                                               pixel: PixelServer, tmp_path: Path) -> None:
    hostile = (f"![p]({pixel.url}/pixel.png) **fett** :red[rot] [link]({pixel.url}/click) $x^2$ "
               f"<img src='{pixel.url}/onerror.png' onerror='alert(1)'>")
    engine = make_engine(sqlite_url)
    seed_demo(engine)
    with unit_of_work(engine) as s:
        company = s.exec(select(Company).where(Company.name == "Musterfirma GmbH")).one()
        company.name = hostile
        s.add(company)
        company_id = company.id
    engine.dispose()

    with DashboardServer(tmp_path, sqlite_url, emulator.base_url) as server:
        context = browser.new_context(locale="de-DE", timezone_id="Europe/Berlin", viewport={"width": 1280,
                                                                                            "height": 800})
        page = context.new_page()
        with evidence_on_failure(page, server, tmp_path):
            sign_in(page, server.url, "viewer")
            # the companies page shows the name only in its table (a canvas, safe by construction)
            for path, in_text in (("", True), ("/tokens", True), (f"/company?company={company_id}", True),
                                  ("/companies", False)):
                page.goto(server.url + path)
                wait_connected(page)
                body = page.locator("[data-testid='stMain']")
                expect(body.locator("h1").first).to_be_visible()
                if in_text:  # the stars are text
                    expect(body.get_by_text("**fett**", exact=False).first).to_be_visible()
                assert body.locator("img[src*='pixel']").count() == 0, path
                assert body.locator(f"a[href^='{pixel.url}']").count() == 0, path
                # our own bold may wrap the whole name; the name's stars must not make "fett" bold by itself
                assert body.locator("strong").filter(has_text=re.compile(r"^\s*fett\s*$")).count() == 0, path
                assert body.locator("[data-testid='stMarkdownContainer'] span[style*='red']").filter(
                    has_text=re.compile(r"^\s*rot\s*$")).count() == 0, path
                assert body.locator(".katex").count() == 0, path
        context.close()
    assert pixel.hits == []
