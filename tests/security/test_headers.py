"""Headers (issue 9, "no CSP / X-Frame-Options"): Streamlit's XSRF protection and CORS stay on, and the
README's reverse-proxy example sets TLS, HSTS, a Content-Security-Policy, X-Frame-Options: DENY and
passes the WebSocket through. The policy's script hash must fit the installed Streamlit."""

from __future__ import annotations

import base64
import hashlib
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit
from playwright.sync_api import Browser, FilePayload, Page, Route, expect
from sqlmodel import select

from core.demo import seed_demo
from core.platform.db import make_engine, unit_of_work
from core.platform.models import Company
from emulator.server import EmulatorServer
from testkit.samples import pdf
from tests.support.browser import choose, open_page, settled, sign_in
from tests.support.harness import CHROMIUM_ARGS, DashboardServer, evidence_on_failure, require_chromium

ROOT = Path(__file__).resolve().parents[2]
expect.set_options(timeout=20_000)


def nginx_example() -> str:
    readme = (ROOT / "README.md").read_text()
    blocks: list[str] = re.findall(r"```nginx\n(.*?)```", readme, re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_xsrf_protection_and_cors_stay_on() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"]["enableCORS"] is True


def test_the_proxy_example_sets_the_security_headers_and_passes_the_websocket() -> None:
    nginx = nginx_example()
    assert re.search(r"listen 443 ssl;", nginx) and "ssl_certificate " in nginx and "return 301 https://" in nginx
    assert re.search(r'add_header Strict-Transport-Security "max-age=\d{8,}[^"]*" always;', nginx)
    assert 'add_header X-Frame-Options "DENY" always;' in nginx
    assert 'add_header X-Content-Type-Options "nosniff" always;' in nginx
    [csp] = re.findall(r'add_header Content-Security-Policy "([^"]+)" always;', nginx)
    directives = {part.split()[0]: part.split()[1:] for part in csp.split("; ")}
    assert directives["default-src"] == ["'self'"] and directives["frame-ancestors"] == ["'none'"]
    assert directives["object-src"] == ["'none'"] and directives["base-uri"] == ["'self'"]
    assert "'unsafe-eval'" not in directives["script-src"] and "'unsafe-inline'" not in directives["script-src"]
    assert "proxy_set_header Upgrade $http_upgrade;" in nginx
    assert "proxy_set_header Connection $connection_upgrade;" in nginx and "default upgrade;" in nginx
    assert "proxy_http_version 1.1;" in nginx and "proxy_set_header Host $host;" in nginx


def test_the_policys_script_hash_fits_the_installed_streamlit() -> None:
    """The one inline script of Streamlit's index.html is allowed by its hash; an upgrade that changes it
    must update the README (else the browser refuses it and logs it)."""
    index = (Path(streamlit.__file__).parent / "static" / "index.html").read_text()
    inline = re.findall(r"<script>(.*?)</script>", index, re.S)
    hashes = {"'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'" for s in inline}
    [csp] = re.findall(r'add_header Content-Security-Policy "([^"]+)" always;', nginx_example())
    allowed = {token for token in csp.split("script-src", 1)[1].split(";", 1)[0].split() if token.startswith("'sha256-")}
    assert hashes == allowed


# --- the policy in a real browser ---------------------------------------------------------------


def policy_for(origin: str) -> str:
    """The README's policy, with the example host replaced by the test server (plain ws: here)."""
    policies: list[str] = re.findall(r'add_header Content-Security-Policy "([^"]+)" always;', nginx_example())
    assert len(policies) == 1
    return policies[0].replace("wss://desk.example.de", origin.replace("http://", "ws://"))


# Responses fulfilled by Playwright's interception lose their local address space, so Chromium's Local
# Network Access checks would block the page's WebSocket to localhost (a real proxy has no such issue).
LNA_OFF = "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests"


@pytest.fixture
def chromium(browser: Browser) -> Iterator[Browser]:
    """A second Chromium of the session's Playwright (tests/conftest.py), with those checks off."""
    own = browser.browser_type.launch(executable_path=str(require_chromium()), args=[*CHROMIUM_ARGS, LNA_OFF],
                                      headless=True)
    yield own
    own.close()


def browse_with_policy(browser: Browser, server: DashboardServer, policy: str) -> tuple[Page, list[str]]:
    """A page whose every response from the dashboard carries `policy` and X-Frame-Options (as the proxy
    adds them); returns it with the list that collects every CSP refusal the browser reports."""
    context = browser.new_context(locale="de-DE", timezone_id="Europe/Berlin")
    refused: list[str] = []

    def add_headers(route: Route) -> None:
        response = route.fetch(max_redirects=0)  # the browser follows redirects itself (st.login)
        route.fulfill(response=response, headers={**response.headers, "content-security-policy": policy,
                                                  "x-frame-options": "DENY"})

    context.route(f"{server.url}/**", add_headers)
    page = context.new_page()
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.on("worker", lambda worker: worker.on("console", lambda message: refused.append(message.text)
                                                if "Content Security Policy" in message.text else None))
    return page, refused


@pytest.mark.e2e
def test_the_readme_policy_keeps_the_dashboard_and_the_pdf_preview_working(
        chromium: Browser, sqlite_url: str, emulator: EmulatorServer, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    seed_demo(engine)
    with unit_of_work(engine) as session:
        company_id = session.exec(select(Company.id).where(Company.name == "Musterfirma GmbH")).one()
    engine.dispose()
    with DashboardServer(tmp_path, sqlite_url, emulator.base_url) as server:
        # the check itself can fail: a policy without inline styles is refused at once
        strict, _ = browse_with_policy(chromium, server, policy_for(server.url).replace(
            "style-src 'self' 'unsafe-inline'", "style-src 'self'"))
        with strict.expect_console_message(lambda message: "Content Security Policy" in message.text) as seen:
            strict.goto(server.url)
        assert "style-src" in seen.value.text
        strict.context.unroute_all(behavior="ignoreErrors")
        strict.context.close()

        page, refused = browse_with_policy(chromium, server, policy_for(server.url))
        with evidence_on_failure(page, server, tmp_path):
            sign_in(page, server.url, "operator")  # the WebSocket, st.login's redirects, the sidebar
            page.get_by_role("link", name="Belege").click()
            expect(page.get_by_role("heading", name="Belege", exact=True)).to_be_visible()
            choose(page, "Unternehmen", "Musterfirma GmbH")
            uploader = page.locator(f".st-key-documents_files_{company_id} [data-testid='stFileUploaderDropzoneInput']")
            expect(uploader).to_have_count(1)
            with page.expect_response(lambda r: "/_stcore/upload_file/" in r.url and r.request.method == "PUT"):
                uploader.set_input_files(FilePayload(name="Rechnung.pdf", mimeType="application/pdf", buffer=pdf("CSP")))
            page.get_by_role("button", name="Hochladen").click()
            expect(page.get_by_text("„Rechnung.pdf“ angenommen")).to_be_visible()
            settled(page)
            page.get_by_text("Vorschau", exact=True).click()
            canvas = page.locator("[class*='st-key-documents_preview_'] canvas")  # pdf.js with its worker
            expect(canvas).to_be_visible()
            box = canvas.bounding_box()
            assert box is not None and box["width"] > 50 and box["height"] > 50, box
            open_page(page, "Übertragungsprotokoll")
        page.context.unroute_all(behavior="ignoreErrors")
        page.context.close()
    assert refused == []
