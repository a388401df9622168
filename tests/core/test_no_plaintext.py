"""No secret in clear anywhere: after a whole DATEV flow (request, refresh with rotation, test call)
and a stored Lexware key, every token value the product ever held is searched for in the database
file (SQLite with -wal/-shm) or a pg_dump (PostgreSQL), in everything logged at DEBUG, and in the
rendered token page. Each search also finds a value put there in clear, so it can fail."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine, make_url, update
from sqlmodel import col, select
from streamlit.testing.v1 import AppTest

from core.connections import access, datev_login, lexware_key, store, test_call
from core.connections.access import get_valid_token
from core.connections.datev_login import PENDING_OWNER, finish_login, start_login
from core.demo import seed_demo
from core.platform.config import DEMO_DATEV_CLIENT_SECRET, get_settings
from core.platform.crypto import Keyring, fingerprint
from core.platform.db import unit_of_work
from core.platform.models import (
    AppUser,
    Company,
    Connection,
    ConnectionKind,
    PendingAuthorization,
    Provider,
    StoredSecret,
    utcnow,
)
from core.providers import datev_oidc
from core.users import process
from testkit.datev_user import consent
from testkit.rows import id_of, present
from tests.support.desk import IDENTITIES
from tests.support.harness import ROOT
from tests.support.rendered import page_text

LEXWARE_KEY = "demo-lexware-key"


@dataclass
class Secrets:
    """Every secret value seen during the flow, by name (several values per name after rotation)."""

    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, name: str, value: str | None) -> None:
        if value:
            self.values.setdefault(name, set()).add(value)

    def found_in(self, haystack: str | bytes) -> list[str]:
        text = haystack.decode("latin-1") if isinstance(haystack, bytes) else haystack
        return sorted(name for name, values in self.values.items() for value in values if value in text)


def stored_values(engine: Engine, keyring: Keyring, found: Secrets) -> None:
    """Decrypt every stored secret (the current tokens, the API key, a pending login's verifier)."""
    with unit_of_work(engine) as s:
        for row in s.exec(select(StoredSecret)).all():
            found.add(f"stored {row.owner_type}/{row.purpose}", keyring.open(row.ciphertext, row.context))


def run_flow(engine: Engine, settings, keyring: Keyring, monkeypatch: pytest.MonkeyPatch) -> Secrets:
    found = Secrets()
    found.add("DATEV client secret", DEMO_DATEV_CLIENT_SECRET)

    # every token response the product receives (code exchange and refresh), id_token included
    def capture(original):
        def wrapped(*args, **kwargs):
            response = original(*args, **kwargs)
            for name in ("access_token", "refresh_token", "id_token"):
                found.add(name, getattr(response, name))
            return response
        return wrapped

    monkeypatch.setattr(datev_login, "exchange_code", capture(datev_oidc.exchange_code))
    monkeypatch.setattr(access, "refresh", capture(datev_oidc.refresh))

    with unit_of_work(engine) as s:
        admin = s.exec(select(AppUser).where(AppUser.email == "admin@tokendesk.demo")).one()
        company = s.exec(select(Company).where(Company.client_number == 1)).one()
        lexware = s.exec(select(Company).where(Company.name == "Lexware Demo GmbH")).one()
        s.expunge_all()

    url = start_login(engine, settings, keyring, company_id=id_of(company), user=admin, kind=ConnectionKind.long_term)
    stored_values(engine, keyring, found)  # the PKCE verifier and the nonce, while the login is pending
    assert {"stored pending_authorization/pkce_verifier", "stored pending_authorization/nonce"} <= found.values.keys()
    query = parse_qs(urlsplit(url).query)
    found.add("state", query["state"][0])  # stored only as its sha256
    params = consent(url)
    found.add("authorization code", params["code"])
    outcome = finish_login(engine, settings, keyring, params=params, user=admin)
    assert outcome.ok, outcome.message
    stored_values(engine, keyring, found)

    row_id = id_of(present(store.find(engine, id_of(company), Provider.datev)))
    with unit_of_work(engine) as s:  # force a refresh with rotation
        s.exec(update(Connection).where(col(Connection.id) == row_id).values(access_expires_at=utcnow() - timedelta(minutes=1)))
    refreshed = get_valid_token(engine, row_id, settings=settings, keyring=keyring)
    test = test_call.run_test(engine, settings, keyring, connection_id=row_id, actor=process(admin.email))
    assert test.ok, test.message
    assert lexware_key.store_lexware_key(engine, settings, keyring, company_id=id_of(lexware), api_key=LEXWARE_KEY,
                                         valid_until=None, actor=process(admin.email)).ok
    stored_values(engine, keyring, found)
    found.add("API key", LEXWARE_KEY)

    assert len(found.values["refresh_token"]) == 2 and len(found.values["access_token"]) == 2  # rotated
    assert refreshed.value in found.values["access_token"]
    with unit_of_work(engine) as s:  # nothing of the pending login is left
        assert s.exec(select(PendingAuthorization)).first() is None
        assert s.exec(select(StoredSecret).where(StoredSecret.owner_type == PENDING_OWNER)).first() is None
    return found


def database_bytes(engine: Engine, database_url: str) -> bytes:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(present(url.database))
        files = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
        assert path in files and Path(f"{path}-wal") in files  # WAL mode: recent writes live in -wal
        return b"".join(p.read_bytes() for p in files)
    dump = subprocess.run(["pg_dump", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432),
                           "-U", url.username or "postgres", present(url.database)],
                          capture_output=True, check=True, timeout=60)
    assert b"COPY public.stored_secret" in dump.stdout
    return dump.stdout


def render_tokens_page(database_url: str, emulator_url: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("EMULATOR_URL", emulator_url)
    get_settings.cache_clear()
    at = AppTest.from_file(str(ROOT / "pages/tokens.py"), default_timeout=30)
    at.user = dict(IDENTITIES["admin"])
    at.run()
    assert not at.exception, at.exception
    return at


def test_no_secret_in_clear_in_database_logs_or_page(engine: Engine, database_url: str, keyring: Keyring,
                                                     settings_for, emulator, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: every logger that propagates
    caplog.set_level(logging.DEBUG, logger="urllib3")  # request lines (path and query) of every HTTP call
    seed_demo(engine)
    found = run_flow(engine, settings_for(database_url), keyring, monkeypatch)
    assert len(found.values) >= 10, sorted(found.values)

    # the database, as bytes on disk (SQLite) or as a dump (PostgreSQL)
    data = database_bytes(engine, database_url)
    assert found.found_in(data) == []
    assert b"Musterfirma GmbH" in data and b"tdv1:test-k1:" in data  # clear data and the ciphertexts are there
    with unit_of_work(engine) as s:
        fingerprints = {present(r.token_fingerprint) for r in s.exec(select(Connection)).all()}
    assert fingerprint(LEXWARE_KEY) in fingerprints and all(f.encode() in data for f in fingerprints)

    # the rendered token page (admin: every card, button and form)
    at = render_tokens_page(database_url, emulator.base_url, monkeypatch)
    shown = page_text(at)
    assert found.found_in(shown) == []
    assert "Musterfirma GmbH" in shown and all(f in shown for f in fingerprints)

    # everything logged, at DEBUG, during the whole flow and the page run
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    # state and nonce travel in the authorization URL by design (OIDC); the browser stand-in's own
    # request line logs them. They must still never be stored in clear (checked above).
    in_url = {"state", "stored pending_authorization/nonce"}
    secrets_for_logs = Secrets({k: v for k, v in found.values.items() if k not in in_url})
    assert found.found_in(logged) == sorted(in_url)  # the log search does find values that are there
    assert secrets_for_logs.found_in(logged) == []
    assert "/datev-api/token" in logged and "/lexware/v1/profile" in logged  # the HTTP calls were logged
    assert not logging.getLogger("requests_oauthlib").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("oauthlib").isEnabledFor(logging.DEBUG)
