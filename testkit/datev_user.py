"""Plays the person at DATEV's login and consent pages (the emulator's HTML), without a browser.

Used by the non-browser tests of the token flow and by the benchmarks; the browser test clicks the
same pages.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import requests
from sqlalchemy import Engine

from core.connections.datev_login import CallbackOutcome, finish_login, start_login
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.models import AppUser, ConnectionKind


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden field {name!r} in the page"
    return match.group(1)


def consent(authorization_url: str, *, person: str = "max", decision: str = "accept") -> dict[str, str]:
    """Open the authorization URL, log in with SmartLogin, decide; return the redirect's query."""
    page = requests.get(authorization_url, allow_redirects=False, timeout=10)
    if page.status_code == 302:  # rejected before the login page (error redirect)
        return _query(page.headers["Location"])
    assert page.status_code == 200, page.text[:500]
    base = authorization_url.split("/authorize", 1)[0]
    pending = _hidden(page.text, "pending")
    form = {"pending": pending, "person": person, "method": "smartlogin"}
    requests.post(base + "/authorize/login", data=form, timeout=10).raise_for_status()
    after_qr = requests.post(base + "/authorize/login", data={**form, "qr": "scanned"}, allow_redirects=False,
                             timeout=10)
    if after_qr.status_code == 302:  # e.g. access_denied for a person without rights
        return _query(after_qr.headers["Location"])
    assert 'id="consent-accept"' in after_qr.text, after_qr.text[:500]
    done = requests.post(base + "/authorize/consent", data={"pending": pending, "decision": decision},
                         allow_redirects=False, timeout=10)
    assert done.status_code == 302, done.text[:500]
    return _query(done.headers["Location"])


def log_in_at_datev(engine: Engine, settings: Settings, keyring: Keyring, *, company_id: int, user: AppUser,
                    kind: ConnectionKind = ConnectionKind.long_term, **consent_args: str) -> CallbackOutcome:
    """The whole DATEV login as the product runs it: start, the person at DATEV (`consent`), callback."""
    url = start_login(engine, settings, keyring, company_id=company_id, user=user, kind=kind)
    return finish_login(engine, settings, keyring, params=consent(url, **consent_args), user=user)


def _query(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
