"""Lexware Office API keys over real HTTP against the emulator, on SQLite and PostgreSQL: store
(profile call as the test), reject, validate input, a key that dies at Lexware, delete.

The emulator allows 2 requests/s per key with a burst of 2 (reset before each test): every test
makes at most two calls with one key, or creates another key through the admin API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from dateutil.relativedelta import relativedelta
from sqlalchemy import Engine, update
from sqlmodel import col, select

from core.connections import disconnect, health, lexware_key, test_call
from core.connections.access import TokenUnavailable, get_valid_token
from core.connections.health import Health, evaluate_health
from core.demo import seed_demo
from core.platform.config import Settings
from core.platform.crypto import Keyring, fingerprint
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError, ValidationFailed
from core.platform.models import AuditEvent, Company, Connection, HttpLogEntry, StoredSecret, utcnow
from core.platform.timefmt import format_local, local_day
from core.users import process
from testkit.rows import id_of, present

DEMO_KEY = "demo-lexware-key"
ADMIN = "admin@tokendesk.demo"


@dataclass
class Lexware:
    engine: Engine
    settings: Settings
    keyring: Keyring
    emulator_url: str
    company_id: int  # Lexware Demo GmbH
    datev_company_id: int  # Musterfirma GmbH

    def store(self, key: str = DEMO_KEY, valid_until: date | None = None) -> test_call.TestResult:
        return lexware_key.store_lexware_key(self.engine, self.settings, self.keyring, company_id=self.company_id,
                                             api_key=key, valid_until=valid_until, actor=process(ADMIN))

    def new_key(self, **body: object) -> str:
        response = requests.post(self.emulator_url + "/_admin/lexware/keys", json=body, timeout=5)
        response.raise_for_status()
        key: str = response.json()["key"]
        return key

    def connection(self) -> Connection:
        """The company's connection, which the test expects to exist."""
        return present(self.find_connection(), "Lexware connection")

    def find_connection(self) -> Connection | None:
        with unit_of_work(self.engine) as s:
            row = s.exec(select(Connection).where(Connection.company_id == self.company_id)).first()
            if row is not None:
                s.expunge(row)
            return row

    def secrets(self) -> list[StoredSecret]:
        with unit_of_work(self.engine) as s:
            rows = list(s.exec(select(StoredSecret).where(StoredSecret.owner_type == "connection")).all())
            s.expunge_all()
            return rows

    def actions(self) -> list[str]:
        with unit_of_work(self.engine) as s:
            return [e.action for e in s.exec(select(AuditEvent).where(AuditEvent.entity_type == "connection")
                                             .order_by(col(AuditEvent.id)))]

    def stored_nothing(self) -> bool:
        return self.find_connection() is None and not self.secrets()


@pytest.fixture
def lexware(engine: Engine, database_url: str, keyring: Keyring, settings_for, emulator) -> Lexware:
    seed_demo(engine)
    with unit_of_work(engine) as s:
        company = s.exec(select(Company).where(Company.name == "Lexware Demo GmbH")).one()
        datev = s.exec(select(Company).where(Company.name == "Musterfirma GmbH")).one()
        ids = id_of(company), id_of(datev)
    return Lexware(engine, settings_for(database_url), keyring, emulator.base_url, *ids)


def test_demo_key_is_tested_stored_encrypted_and_usable(lexware: Lexware) -> None:
    result = lexware.store()  # one profile call
    assert result.ok and result.message == "Verbunden mit „Lexware Demo GmbH“."
    row = lexware.connection()
    assert row.has_token and row.provider == "lexware" and row.grantor_name == "Lexware Demo GmbH"
    assert row.requested_by == ADMIN and row.last_test_ok is True
    # default expiry: 24 months from today, the end of that day in Berlin (shown as that date, 23:59)
    day = local_day(utcnow()) + relativedelta(months=24)
    assert row.refresh_expires_at == datetime.combine(day, time(23, 59, 59), tzinfo=ZoneInfo("Europe/Berlin"))
    assert format_local(row.refresh_expires_at) == f"{day:%d.%m.%Y} 23:59"
    assert evaluate_health(row, utcnow(), 30) == Health.active
    # only a fingerprint in clear; the key itself only as ciphertext
    assert row.token_fingerprint == fingerprint(DEMO_KEY) and DEMO_KEY not in row.token_fingerprint
    [secret] = lexware.secrets()
    assert secret.purpose == "api_key" and DEMO_KEY not in secret.ciphertext
    assert lexware.keyring.open(secret.ciphertext, secret.context) == DEMO_KEY
    # the product uses the key (no call to Lexware for that) and runs the profile call as its test
    token = get_valid_token(lexware.engine, id_of(row), settings=lexware.settings, keyring=lexware.keyring)
    assert token.value == DEMO_KEY and token.provider == "lexware" and DEMO_KEY not in repr(token)
    test = test_call.run_test(lexware.engine, lexware.settings, lexware.keyring, connection_id=id_of(row),
                                actor=process(ADMIN))  # second profile call
    assert test.ok and "Lexware Demo GmbH" in test.message
    assert lexware.actions() == ["token.requested", "token.test"]
    with unit_of_work(lexware.engine) as s:
        events = s.exec(select(AuditEvent).where(AuditEvent.entity_type == "connection")).all()
        assert all(DEMO_KEY not in str(e.before) + str(e.after) + str(e.detail) for e in events)
        assert present(events[0].after)["token_fingerprint"] == fingerprint(DEMO_KEY) and events[0].actor == ADMIN
        calls = [(e.purpose, e.path, e.status) for e in s.exec(select(HttpLogEntry).order_by(col(HttpLogEntry.id)))]
    assert calls == [("connection_test", "/lexware/v1/profile", 200)] * 2
    assert lexware.connection().last_used_at is not None


def test_entered_expiry_is_kept(lexware: Lexware) -> None:
    until = utcnow().date() + timedelta(days=90)
    assert lexware.store(valid_until=until).ok
    row = lexware.connection()
    assert present(row.refresh_expires_at).date() == until
    cards = {c.company.id: c for c in health.token_cards(lexware.engine, lexware.settings)}
    assert cards[lexware.company_id].health == Health.active
    card_connection = present(cards[lexware.company_id].connection)
    soon = present(card_connection.refresh_expires_at) - timedelta(days=10)
    assert evaluate_health(row, soon, 30) == Health.expiring


def test_a_key_lexware_rejects_is_not_stored(lexware: Lexware) -> None:
    with pytest.raises(ValidationFailed) as info:
        lexware.store("not-a-lexware-key")
    assert info.value.field_errors == {"api_key": "Lexware Office lehnt diesen API-Schlüssel ab."}
    assert lexware.stored_nothing() and lexware.actions() == []
    with unit_of_work(lexware.engine) as s:
        assert [(e.path, e.status) for e in s.exec(select(HttpLogEntry))] == [("/lexware/v1/profile", 401)]


def test_lexware_unreachable_stores_nothing(lexware: Lexware) -> None:
    response = requests.post(lexware.emulator_url + "/_admin/faults",
                             json={"target": "lexware", "kind": "503", "count": 1}, timeout=5)
    response.raise_for_status()
    with pytest.raises(UserFacingError) as info:
        lexware.store()
    assert not isinstance(info.value, ValidationFailed)
    assert "nicht erreichbar" in info.value.message and "nichts gespeichert" in info.value.message
    assert lexware.stored_nothing()


@pytest.mark.parametrize(("key", "until", "errors"), [
    ("", None, {"api_key": "Bitte den API-Schlüssel einfügen."}),
    ("   ", None, {"api_key": "Bitte den API-Schlüssel einfügen."}),
    ("zwei teile", None, {"api_key": "Leerzeichen"}),
    ("x" * 501, None, {"api_key": "zu lang"}),
    (DEMO_KEY, "yesterday", {"valid_until": "Das Ablaufdatum muss in der Zukunft liegen."}),
    (DEMO_KEY, "today", {"valid_until": "Das Ablaufdatum muss in der Zukunft liegen."}),
    (DEMO_KEY, "25 months", {"valid_until": "Lexware-API-Schlüssel gelten höchstens 24 Monate."}),
    ("", "yesterday", {"api_key": "Bitte den API-Schlüssel einfügen.",
                       "valid_until": "Das Ablaufdatum muss in der Zukunft liegen."}),
])
def test_bad_input_gets_german_field_errors_and_stores_nothing(lexware: Lexware, key: str, until: str | None,
                                                               errors: dict[str, str]) -> None:
    today = local_day(utcnow())  # the users' day (Berlin), as the form counts: UTC's is another one before 1 a.m.
    valid_until = {None: None, "yesterday": today - timedelta(days=1), "today": today,
                   "25 months": today + relativedelta(months=24) + timedelta(days=1)}[until]
    with pytest.raises(ValidationFailed) as info:
        lexware.store(key, valid_until)
    assert info.value.field_errors.keys() == errors.keys()
    for field, text in errors.items():
        assert text in info.value.field_errors[field]
    assert lexware.stored_nothing()
    with unit_of_work(lexware.engine) as s:
        assert s.exec(select(HttpLogEntry)).first() is None  # refused before any call to Lexware


def test_exactly_24_months_is_accepted(lexware: Lexware) -> None:
    until = local_day(utcnow()) + relativedelta(months=24)  # the longest a key is valid, counted as the form does
    assert lexware.store(valid_until=until).ok
    assert present(lexware.connection().refresh_expires_at).date() == until


def test_key_for_a_datev_company_is_refused(lexware: Lexware) -> None:
    with pytest.raises(UserFacingError, match="Lexware Office nicht als Schnittstelle"):
        lexware_key.store_lexware_key(lexware.engine, lexware.settings, lexware.keyring,
                                      company_id=lexware.datev_company_id, api_key=DEMO_KEY, valid_until=None,
                                      actor=process(ADMIN))
    assert lexware.stored_nothing()


def test_key_revoked_at_lexware_fails_the_test(lexware: Lexware) -> None:
    key = lexware.new_key()
    assert lexware.store(key).ok
    row = lexware.connection()
    requests.post(lexware.emulator_url + "/_admin/lexware/keys/revoke", json={"key": key}, timeout=5).raise_for_status()
    result = test_call.run_test(lexware.engine, lexware.settings, lexware.keyring, connection_id=id_of(row), actor=process(ADMIN))
    assert not result.ok and result.message.startswith("Lexware Office: HTTP 401")
    after = lexware.connection()
    assert after.last_test_ok is False and "HTTP 401" in present(after.last_test_message)
    assert evaluate_health(after, utcnow(), 30) == Health.invalid and "401" in present(after.invalid_reason)
    assert lexware.actions() == ["token.requested", "token.invalid", "token.test"]


def test_key_expired_at_lexware_fails_the_test(lexware: Lexware) -> None:
    expires = utcnow() + timedelta(days=3)
    key = lexware.new_key(expires_at=expires.isoformat())
    assert lexware.store(key, valid_until=utcnow().date() + timedelta(days=30)).ok
    row = lexware.connection()
    clock = requests.post(lexware.emulator_url + "/_admin/clock", json={"offset_seconds": 4 * 86400}, timeout=5)
    clock.raise_for_status()
    result = test_call.run_test(lexware.engine, lexware.settings, lexware.keyring, connection_id=id_of(row), actor=process(ADMIN))
    assert not result.ok and "HTTP 401" in result.message


def test_key_past_its_stored_expiry_is_not_used(lexware: Lexware) -> None:
    assert lexware.store().ok
    row = lexware.connection()
    with unit_of_work(lexware.engine) as s:
        s.exec(update(Connection).values(refresh_expires_at=utcnow() - timedelta(minutes=1)))
    with pytest.raises(TokenUnavailable) as info:
        get_valid_token(lexware.engine, id_of(row), settings=lexware.settings, keyring=lexware.keyring)
    assert info.value.permanent and "abgelaufen" in info.value.message
    result = test_call.run_test(lexware.engine, lexware.settings, lexware.keyring, connection_id=id_of(row), actor=process(ADMIN))
    assert not result.ok and "abgelaufen" in result.message
    assert evaluate_health(lexware.connection(), utcnow(), 30) == Health.expired
    with unit_of_work(lexware.engine) as s:  # no call to Lexware with an expired key
        assert len(s.exec(select(HttpLogEntry)).all()) == 1


def test_a_new_key_replaces_the_old_one(lexware: Lexware) -> None:
    assert lexware.store().ok
    first = lexware.connection()
    second_key = lexware.new_key()
    assert lexware.store(second_key).ok
    second = lexware.connection()
    assert second.id == first.id and second.version == first.version + 1
    assert second.token_fingerprint == fingerprint(second_key) != first.token_fingerprint
    [secret] = lexware.secrets()
    assert lexware.keyring.open(secret.ciphertext, secret.context) == second_key
    with unit_of_work(lexware.engine) as s:
        replaced = s.exec(select(AuditEvent).where(AuditEvent.action == "token.requested")
                          .order_by(col(AuditEvent.id))).all()[-1]
    assert replaced.before == {"token_fingerprint": fingerprint(DEMO_KEY)}


def test_delete_erases_the_key_and_keeps_history(lexware: Lexware) -> None:
    assert lexware.store().ok
    row = lexware.connection()
    result = disconnect.delete_token(lexware.engine, lexware.settings, lexware.keyring, connection_id=id_of(row),
                                      actor=process(ADMIN))
    # Lexware has no revocation by API: the key is gone here, and the result and the row say it is not there
    assert not result.revoked and result.message.startswith("API-Schlüssel hier gelöscht.")
    after = lexware.connection()
    assert not after.has_token and after.deleted_by == ADMIN and after.requested_at is not None
    assert after.left_at_provider is not None and "app.lexware.de/addons/public-api" in after.left_at_provider
    assert evaluate_health(after, utcnow(), 30) == Health.revoked
    assert lexware.secrets() == []
    with pytest.raises(TokenUnavailable, match="Kein Token"):
        get_valid_token(lexware.engine, id_of(row), settings=lexware.settings, keyring=lexware.keyring)
    with pytest.raises(UserFacingError, match="kein Token"):
        disconnect.delete_token(lexware.engine, lexware.settings, lexware.keyring, connection_id=id_of(row), actor=process(ADMIN))
    assert lexware.actions() == ["token.requested", "token.deleted"]
