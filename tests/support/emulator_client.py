"""Helpers for the emulator tests (a uniquely named module, so it never clashes with other conftest files)."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import secrets
from urllib.parse import parse_qs, urlsplit

import requests
from pypdf import PdfWriter

DATEV_ID, DATEV_SECRET = "token-desk-demo", "demo-datev-secret"
REDIRECT = "http://localhost:8501/datev_callback"
OFFLINE_SCOPE = "openid profile email accounting:documents accounting:clients:read offline_access"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(**overrides) -> dict:
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code", "client_id": DATEV_ID, "redirect_uri": REDIRECT,
        "scope": OFFLINE_SCOPE + " datev:iam:client:455148-1", "state": secrets.token_urlsafe(24),
        "nonce": secrets.token_urlsafe(24), "code_challenge": challenge, "code_challenge_method": "S256",
        "prompt": "consent", "enableWindowsSso": "true", "_verifier": verifier,
    }
    params.update(overrides)
    return params


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden field {name!r} in the page"
    return match.group(1)


def login_and_consent(base: str, params: dict, person: str = "max", variant: str = "production",
                      decision: str = "accept") -> requests.Response:
    """Drive the HTML login (SmartLogin + QR) and consent; return the final redirect response."""
    login = "/openid" if variant == "production" else "/openidsandbox"
    query = {k: v for k, v in params.items() if not k.startswith("_")}
    page = requests.get(base + login + "/authorize", params=query, allow_redirects=False, timeout=5)
    assert page.status_code == 200, page.text
    pending = hidden(page.text, "pending")
    qr = requests.post(base + login + "/authorize/login",
                       data={"pending": pending, "person": person, "method": "smartlogin"}, timeout=5)
    assert 'id="qr-scanned"' in qr.text
    consent = requests.post(base + login + "/authorize/login", timeout=5,
                            data={"pending": pending, "person": person, "method": "smartlogin", "qr": "scanned"})
    assert 'id="consent-accept"' in consent.text, consent.text
    return requests.post(base + login + "/authorize/consent", data={"pending": pending, "decision": decision},
                         allow_redirects=False, timeout=5)


def query_of(response: requests.Response) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def token_url(base: str, variant: str = "production", endpoint: str = "token") -> str:
    return f"{base}/{'datev-api' if variant == 'production' else 'datev-sandbox-api'}/{endpoint}"


def exchange(base: str, params: dict, code: str, variant: str = "production") -> requests.Response:
    return requests.post(token_url(base, variant), auth=(DATEV_ID, DATEV_SECRET), timeout=5, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": params["redirect_uri"],
        "code_verifier": params["_verifier"],
    })


def connect(base: str, variant: str = "production", person: str = "max", **overrides) -> dict:
    """Full login; returns the token response body."""
    params = authorize_params(**overrides)
    redirect = login_and_consent(base, params, person=person, variant=variant)
    code = query_of(redirect)["code"]
    response = exchange(base, params, code, variant)
    assert response.status_code == 200, response.text
    body: dict = response.json()
    return body


def refresh(base: str, refresh_token: str, variant: str = "production") -> requests.Response:
    return requests.post(token_url(base, variant), auth=(DATEV_ID, DATEV_SECRET), timeout=5,
                         data={"grant_type": "refresh_token", "refresh_token": refresh_token})


def set_clock(base: str, offset: float) -> None:
    requests.post(base + "/_admin/clock", json={"offset_seconds": offset}, timeout=5).raise_for_status()


def stats(base: str) -> dict:
    counters: dict = requests.get(base + "/_admin/stats", timeout=5).json()
    return counters


def api_headers(access_token: str) -> dict:
    return {"Authorization": f"Bearer {access_token}", "X-DATEV-Client-Id": DATEV_ID}


def minimal_pdf(text: str = "") -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.add_metadata({"/Title": text or secrets.token_hex(4)})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
