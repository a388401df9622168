"""The DATEV token lifecycle over real HTTP against the emulator, on SQLite and PostgreSQL:
request, callback failures, refresh with rotation, test call, revoke at DATEV, delete."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests
from sqlalchemy import update
from sqlmodel import col, select

from core.connections import disconnect, health
from core.connections.access import TokenUnavailable, get_valid_token
from core.connections.datev_login import PENDING_OWNER, finish_login, start_login
from core.connections.health import Health, evaluate_health
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import (
    AuditEvent,
    Connection,
    ConnectionKind,
    HttpLogEntry,
    PendingAuthorization,
    StoredSecret,
    utcnow,
)
from core.platform.secret_store import put_secret
from core.users import process
from emulator.server import EmulatorServer
from testkit.datev_user import consent
from testkit.rows import id_of, present
from tests.support.world import World


@pytest.fixture(autouse=True, params=["datev", "standard"])
def idp_profile(request: pytest.FixtureRequest, emulator: EmulatorServer) -> str:
    """Every token test runs against DATEV's answers and against a plain OpenID Connect provider's."""
    requests.post(emulator.base_url + "/_admin/config", json={"idp_profile": request.param},
                  timeout=5).raise_for_status()
    return str(request.param)


def test_request_stores_an_encrypted_long_term_token_and_tests_it(world: World) -> None:
    outcome = world.request_token()
    assert outcome.ok, outcome.message
    assert outcome.message.startswith("Musterfirma GmbH: Langzeittoken gespeichert (DATEV-Benutzer: Max Mustermann)")
    assert "Zugriff auf Mandant 455148-1 (Musterfirma GmbH) bestätigt" in outcome.message
    row = world.connection()
    assert row.has_token and row.offline_granted and row.bound_client == "455148-1"
    assert row.grantor_name == "Max Mustermann" and row.requested_by == "admin@tokendesk.demo"
    assert timedelta(days=700) < present(row.refresh_expires_at) - utcnow() < timedelta(days=731)
    assert row.last_test_ok is True and "offline_access" in row.scopes.split()
    assert evaluate_health(row, utcnow(), 30) == Health.active
    with unit_of_work(world.engine) as s:
        actions = [e.action for e in s.exec(select(AuditEvent).where(AuditEvent.entity_type == "connection"))]
        assert actions == ["token.requested", "token.test"]
        assert s.exec(select(PendingAuthorization)).first() is None  # single use: consumed
        assert s.exec(select(StoredSecret).where(StoredSecret.owner_type == PENDING_OWNER)).first() is None
        paths = {(e.purpose, e.path, e.status) for e in s.exec(select(HttpLogEntry))}
        assert ("connection_test", "/platform/v2/clients/455148-1", 200) in paths
        assert all(e.global_transaction_id for e in s.exec(select(HttpLogEntry).where(
            col(HttpLogEntry.path).startswith("/platform"))))


def test_authorization_request_follows_datev_rules(world: World) -> None:
    url = start_login(world.engine, world.settings, world.keyring, company_id=world.company_id, user=world.admin,
                      kind=ConnectionKind.long_term)
    query = urlsplit(url).query
    params = dict(p.split("=", 1) for p in query.split("&"))
    assert params["code_challenge_method"] == "S256" and params["enableWindowsSso"] == "true"
    assert params["prompt"] == "consent" and params["response_type"] == "code"
    assert len(params["state"]) >= 20 and len(params["nonce"]) >= 20
    scopes = unquote(params["scope"]).replace("+", " ").split()
    assert "offline_access" in scopes and "datev:iam:client:455148-1" in scopes
    assert "code_verifier" not in url and "client_secret" not in url


def test_viewer_or_operator_cannot_request_a_long_term_token(world: World) -> None:
    with pytest.raises(UserFacingError, match="Berechtigung"):
        start_login(world.engine, world.settings, world.keyring, company_id=world.company_id, user=world.operator,
                    kind=ConnectionKind.long_term)


def _started(world: World) -> tuple[str, dict]:
    url = start_login(world.engine, world.settings, world.keyring, company_id=world.company_id, user=world.admin,
                      kind=ConnectionKind.long_term)
    return url, consent(url)


@pytest.mark.parametrize("case", ["unknown_state", "expired", "access_denied", "provider_error",
                                  "wrong_nonce", "other_user", "bad_code", "missing_code"])
def test_every_callback_failure_is_explained_and_stores_nothing(world: World, case: str) -> None:
    user = world.admin
    if case == "unknown_state":
        params = {"state": "x" * 43, "code": "abc"}
    elif case == "access_denied":
        url = start_login(world.engine, world.settings, world.keyring, company_id=world.company_id, user=user,
                          kind=ConnectionKind.long_term)
        params = consent(url, decision="deny")
    else:
        _url, params = _started(world)
        if case == "expired":
            with unit_of_work(world.engine) as s:
                s.exec(update(PendingAuthorization).values(expires_at=utcnow() - timedelta(seconds=1)))
        elif case == "provider_error":
            params = {"state": params["state"], "error": "server_error", "error_description": "Wartung"}
        elif case == "wrong_nonce":
            with unit_of_work(world.engine) as s:
                pending = s.exec(select(PendingAuthorization)).one()
                put_secret(s, world.keyring, owner_type=PENDING_OWNER, owner_id=id_of(pending), purpose="nonce",
                           value="n" * 43)
        elif case == "other_user":
            user = world.operator
        elif case == "bad_code":
            params = {**params, "code": "not-the-code"}
        elif case == "missing_code":
            params = {"state": params["state"]}
    outcome = finish_login(world.engine, world.settings, world.keyring, params=params, user=user)
    assert not outcome.ok
    assert outcome.message.endswith("Es wurde nichts gespeichert.")
    expected = {
        "unknown_state": "unbekannt oder wurde bereits verwendet",
        "expired": "abgelaufen", "access_denied": "abgelehnt", "provider_error": "server_error (Wartung)",
        "wrong_nonce": "Sicherheitsprüfung", "other_user": "anderen Benutzer", "bad_code": "invalid_grant",
        "missing_code": "keinen Code",
    }[case]
    assert expected in outcome.message
    assert world.stored_nothing()
    if case == "wrong_nonce":  # the token obtained for the failed login was revoked again at DATEV
        grants = requests.get(world.emulator_url + "/_admin/datev/grants", timeout=5).json()
        assert grants and all(g.get("revoked") for g in (grants if isinstance(grants, list) else grants["grants"]))


def test_a_replayed_callback_is_refused_and_changes_nothing(world: World) -> None:
    _url, params = _started(world)
    assert finish_login(world.engine, world.settings, world.keyring, params=dict(params), user=world.admin).ok
    stored = world.connection()
    replay = finish_login(world.engine, world.settings, world.keyring, params=dict(params), user=world.admin)
    assert not replay.ok and "bereits verwendet" in replay.message
    after = world.connection()
    assert (after.version, after.token_fingerprint) == (stored.version, stored.token_fingerprint)


def test_refresh_rotates_once_and_is_stored_before_use(world: World) -> None:
    assert world.request_token().ok
    before = world.connection()
    token = get_valid_token(world.engine, id_of(before), settings=world.settings, keyring=world.keyring)
    assert world.stats()["refresh_requests"] == 0  # fresh: no refresh
    world.expire_access_token()
    refreshed = get_valid_token(world.engine, id_of(before), settings=world.settings, keyring=world.keyring)
    after = world.connection()
    assert world.stats()["refresh_requests"] == 1 and world.stats()["reuse_detections"] == 0
    assert refreshed.value != token.value and after.version == before.version + 1
    assert after.token_fingerprint != before.token_fingerprint and after.last_refresh_at is not None
    again = get_valid_token(world.engine, id_of(before), settings=world.settings, keyring=world.keyring)
    assert again.value == refreshed.value and world.stats()["refresh_requests"] == 1
    # the rotated-out refresh token is dead at DATEV; the stored one works
    with unit_of_work(world.engine) as s:
        assert [e.action for e in s.exec(select(AuditEvent).where(AuditEvent.action == "token.refreshed"))] == [
            "token.refreshed"]


def test_stale_version_after_a_401_refreshes_exactly_once(world: World) -> None:
    assert world.request_token().ok
    row = world.connection()
    first = get_valid_token(world.engine, id_of(row), settings=world.settings, keyring=world.keyring)
    second = get_valid_token(world.engine, id_of(row), settings=world.settings, keyring=world.keyring,
                             stale_version=first.version)
    third = get_valid_token(world.engine, id_of(row), settings=world.settings, keyring=world.keyring,
                            stale_version=first.version)  # another caller that saw the same 401
    assert second.value == third.value != first.value
    assert world.stats()["refresh_requests"] == 1


def test_revoked_in_verbundene_anwendungen_becomes_invalid_at_next_use(world: World) -> None:
    assert world.request_token().ok
    row = world.connection()
    world.admin_post("/datev/grants/revoke", {"all": True})
    world.expire_access_token()
    with pytest.raises(TokenUnavailable) as info:
        get_valid_token(world.engine, id_of(row), settings=world.settings, keyring=world.keyring)
    assert info.value.permanent and "ungültig" in info.value.message
    after = world.connection()
    assert evaluate_health(after, utcnow(), 30) == Health.invalid and "widerrufen, abgelaufen oder bereits verwendet" in present(after.invalid_reason)
    with pytest.raises(TokenUnavailable):  # no second call to DATEV for an invalid connection
        get_valid_token(world.engine, id_of(row), settings=world.settings, keyring=world.keyring)
    assert world.stats()["refresh_requests"] == 1


@pytest.mark.parametrize("kind", ["503", "drop"])
def test_outages_during_refresh_never_mark_the_connection_invalid(world: World, kind: str) -> None:
    """A 5xx or a dropped connection may have rotated the token: "Erneuerung unklar", the lease is kept
    (nobody refreshes meanwhile), and once it has run out one call with the stored access token shows
    that DATEV did not refresh: the old refresh token is used again and works."""
    assert world.request_token().ok
    row = world.connection()
    world.expire_access_token()
    world.admin_post("/faults", {"target": "token", "kind": kind, "count": 1})
    with pytest.raises(TokenUnavailable) as info:
        get_valid_token(world.engine, id_of(row), settings=world.settings, keyring=world.keyring)
    assert not info.value.permanent and "Erneuerung unklar" in info.value.message
    unclear = world.connection()
    assert unclear.invalid_at is None and unclear.refresh_lease_owner is not None
    assert evaluate_health(unclear, utcnow(), 30) == Health.unclear
    with pytest.raises(TokenUnavailable):  # within the lease: no second refresh with the old token
        get_valid_token(world.engine, id_of(row), settings=world.settings, keyring=world.keyring)
    assert world.stats()["requests_by_path"]["/datev-api/token"] == 2  # the code exchange and the one refresh
    world.expire_refresh_lease()
    token = get_valid_token(world.engine, id_of(row), settings=world.settings, keyring=world.keyring)
    after = world.connection()
    assert token.value and after.version == row.version + 1 and after.refresh_unclear_since is None
    assert world.stats()["refresh_successes"] == 1 and world.stats()["reuse_detections"] == 0


def test_delete_revokes_at_datev_and_keeps_history(world: World) -> None:
    assert world.request_token().ok
    row = world.connection()
    result = disconnect.delete_token(world.engine, world.settings, world.keyring, connection_id=id_of(row),
                                      actor=process("admin@tokendesk.demo"))
    assert result.revoked and world.stats()["revocations"] >= 1
    after = world.connection()
    assert after.left_at_provider is None
    assert not after.has_token and after.deleted_by == "admin@tokendesk.demo" and after.requested_at is not None
    assert evaluate_health(after, utcnow(), 30) == Health.revoked
    with unit_of_work(world.engine) as s:
        assert s.exec(select(StoredSecret).where(StoredSecret.owner_type == "connection")).first() is None
    with pytest.raises(TokenUnavailable, match="Kein Token"):
        get_valid_token(world.engine, id_of(row), settings=world.settings, keyring=world.keyring)


def test_delete_when_revoke_fails_still_erases_and_points_to_datev(world: World) -> None:
    assert world.request_token().ok
    row = world.connection()
    world.admin_post("/faults", {"target": "revoke", "kind": "503", "count": 1})
    result = disconnect.delete_token(world.engine, world.settings, world.keyring, connection_id=id_of(row),
                                      actor=process("admin@tokendesk.demo"))
    assert not result.revoked and "apps.datev.de/tokrevui" in result.message
    assert not world.connection().has_token
    assert "DATEV hat den Widerruf nicht bestätigt (" in present(world.connection().left_at_provider)
    with unit_of_work(world.engine) as s:
        assert s.exec(select(AuditEvent).where(AuditEvent.action == "token.revoke_failed")).first() is not None


def test_new_request_replaces_and_revokes_the_old_token(world: World) -> None:
    assert world.request_token().ok
    first = world.connection()
    assert world.request_token(person="erika").ok
    second = world.connection()
    assert second.id == first.id and second.token_fingerprint != first.token_fingerprint
    assert second.grantor_name == "Erika Musterfrau"
    grants = requests.get(world.emulator_url + "/_admin/datev/grants", timeout=5).json()
    grants = grants if isinstance(grants, list) else grants["grants"]
    assert sum(1 for g in grants if not g.get("revoked")) == 1  # one valid refresh token per connection


def test_one_off_login_is_separate_from_the_long_term_token(world: World) -> None:
    outcome = world.request_token(user=world.operator, kind=ConnectionKind.one_off)
    assert outcome.ok and outcome.kind == "one_off"
    row = world.find_connection(slot=f"one_off:{world.operator.id}")
    assert row is not None and not row.offline_granted
    assert timedelta(hours=10) < present(row.refresh_expires_at) - utcnow() <= timedelta(hours=11)
    assert world.find_connection() is None  # no long-term token was created
    cards = health.token_cards(world.engine, world.settings)
    musterfirma = next(c for c in cards if c.company.id == world.company_id)
    assert musterfirma.health == Health.missing


def test_health_states() -> None:
    now = utcnow()
    base: dict[str, Any] = dict(company_id=1, provider="datev", has_token=True)
    assert evaluate_health(None, now, 30) == Health.missing
    assert evaluate_health(Connection(**base, refresh_expires_at=now + timedelta(days=400)), now, 30) == Health.active
    assert evaluate_health(Connection(**base, refresh_expires_at=now + timedelta(days=29)), now, 30) == Health.expiring
    assert evaluate_health(Connection(**base, refresh_expires_at=now - timedelta(seconds=1)), now, 30) == Health.expired
    assert evaluate_health(Connection(**base, invalid_at=now), now, 30) == Health.invalid
    assert evaluate_health(Connection(company_id=1, provider="datev", deleted_at=now), now, 30) == Health.revoked
    assert evaluate_health(Connection(company_id=1, provider="datev"), now, 30) == Health.missing
