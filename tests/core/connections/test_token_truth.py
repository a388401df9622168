"""Token truth with any standards-compliant provider (issue: a real 2-year grant shown as "kein
Langzeittoken", a token for another data set accepted, lost rotated tokens). The emulator's IdP runs
in its DATEV profile and in its "standard" profile (a plain certified OpenID Connect provider: no
refresh_token_expires_in, unknown scopes dropped, generic errors), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from sqlmodel import select

from core.connections.access import TokenUnavailable, get_valid_token
from core.connections.datev_login import finish_login, start_login
from core.connections.health import Binding, Health, evaluate_binding, evaluate_health
from core.overview import Action, State, company_rows, todo_item
from core.platform.db import unit_of_work
from core.platform.models import (
    AuditEvent,
    Company,
    Connection,
    ConnectionKind,
    HttpLogEntry,
    PendingAuthorization,
    StoredSecret,
    utcnow,
)
from core.transfers.engine import PassOptions, run_pass
from core.transfers.plan import plan
from core.users import process
from testkit.datev_user import consent
from testkit.rows import id_of, present
from tests.support.world import World, add_approved, uploads

TWO_YEARS = timedelta(days=730)


def grants(world: World) -> list[dict[str, object]]:
    found: list[dict[str, object]] = requests.get(world.emulator_url + "/_admin/datev/grants", timeout=5).json()
    return found


def company(world: World) -> Company:
    with unit_of_work(world.engine) as s:
        found = s.get(Company, world.company_id)
    assert found is not None
    return found


@pytest.fixture(params=["datev", "standard"])
def profile(request: pytest.FixtureRequest, world: World) -> str:
    world.admin_post("/config", {"idp_profile": request.param})
    return str(request.param)


def test_a_two_year_grant_is_a_long_term_token_with_either_provider(world: World, profile: str) -> None:
    outcome = world.request_token()
    assert outcome.ok and outcome.warning is None, outcome
    row = world.connection()
    assert row.offline_granted and row.bound_client == "455148-1"
    assert row.refresh_expires_at is not None and row.requested_at is not None
    assert row.refresh_expires_at - row.requested_at >= TWO_YEARS - timedelta(minutes=1)
    assert row.refresh_expiry_derived == (profile == "standard")  # no refresh_token_expires_in: derived
    assert evaluate_health(row, utcnow(), 30) == Health.active
    assert evaluate_binding(company(world), row) == Binding.bound


def test_scope_absent_from_the_token_response_means_as_requested(world: World) -> None:
    world.admin_post("/config", {"idp_profile": "standard", "token_response_scope": "omit"})
    assert world.request_token().ok
    row = world.connection()
    assert row.offline_granted and row.bound_client == "455148-1"
    assert "offline_access" in row.scopes.split()


def test_a_rolling_derived_expiry_restarts_with_each_refresh(world: World) -> None:
    world.admin_post("/config", {"idp_profile": "standard"})
    assert world.request_token().ok
    before = world.connection()
    assert before.refresh_expires_at is not None
    with unit_of_work(world.engine) as s:  # as if the token had been requested a year ago
        row = s.get(Connection, before.id)
        assert row is not None
        row.refresh_expires_at = before.refresh_expires_at - timedelta(days=365)
        s.add(row)
    world.expire_access_token()
    get_valid_token(world.engine, id_of(before), settings=world.settings, keyring=world.keyring)
    after = world.connection()
    assert after.refresh_expiry_derived
    assert after.refresh_expires_at is not None and after.refresh_expires_at >= before.refresh_expires_at


def test_a_token_for_another_data_set_is_refused_revoked_and_audited(world: World, profile: str) -> None:
    world.admin_post("/config", {"client_scope_grant": "other", "client_scope_other": "455148-5"})
    outcome = world.request_token()
    assert not outcome.ok
    assert "455148–5" in outcome.message and "455148–1" in outcome.message and "nichts gespeichert" in outcome.message
    assert world.stored_nothing()
    assert [g["revoked"] for g in grants(world)] == [True]  # the new grant does not stay alive at DATEV
    with unit_of_work(world.engine) as s:
        refused = s.exec(select(AuditEvent).where(AuditEvent.action == "token.refused")).all()
    assert len(refused) == 1 and "455148-5" in (refused[0].detail or "")


def test_an_unbound_grant_is_stored_but_never_shown_as_bound(world: World, profile: str) -> None:
    world.admin_post("/config", {"client_scope_grant": "drop"})
    outcome = world.request_token()
    assert outcome.ok and outcome.warning is not None and "nicht an einen Datenbestand gebunden" in outcome.warning
    row = world.connection()
    assert row.bound_client is None and row.offline_granted
    assert evaluate_binding(company(world), row) == Binding.unbound
    add_approved(world, 1)
    summary = run_pass(world.engine, world.settings, world.keyring, PassOptions(trigger="manual", actor=process("o@x.de")))
    assert summary.delivered == 1
    assert [u["client_id"] for u in uploads(world)] == ["455148-1"]  # always the company's own data set


def test_a_bound_token_that_no_longer_fits_the_company_is_not_used_until_a_new_one_is_stored(world: World) -> None:
    """Review finding: after the Mandanten-Nr. changed, the dry run said "will be sent" to the token's old
    data set and the company page "Kann übertragen" until a pass paused the company, and "Fortsetzen" could
    not end that pause. Now one rule (readiness.waiting_reason) says why it waits, everywhere, until a token
    for the company's own data set is stored."""
    assert world.request_token().ok
    with unit_of_work(world.engine) as s:  # the Mandanten-Nr. was changed after the token was requested
        found = s.get(Company, world.company_id)
        assert found is not None
        found.client_number = 4  # 455148-4: a data set no other demo company uses
        s.add(found)
    [document_id] = add_approved(world, 1)

    [line] = plan(world.engine, world.settings, [document_id])
    assert line.target == "Mandant 455148-4 (Musterfirma GmbH)"  # where the engine would send it, never 455148-1
    assert not line.will_send and line.waits is not None
    assert "455148–1 gebunden" in line.waits and "455148–4" in line.waits
    [row] = [r for r in company_rows(world.engine, world.settings) if r.company_id == world.company_id]
    assert row.state == State.foreign and row.reason == line.waits
    assert todo_item(row) is not None and present(todo_item(row)).action == Action.request_token

    summary = run_pass(world.engine, world.settings, world.keyring, PassOptions(trigger="manual", actor=process("o@x.de")))
    assert summary.uploads == 0 and uploads(world) == []
    assert summary.waiting[world.company_id] == line.waits
    assert company(world).paused_at is None  # nothing to resume: a new token ends it

    assert world.request_token().ok  # a token for 455148-4
    summary = run_pass(world.engine, world.settings, world.keyring, PassOptions(trigger="manual", actor=process("o@x.de")))
    assert summary.delivered == 1 and [u["client_id"] for u in uploads(world)] == ["455148-4"]


def test_userinfo_that_is_not_json_leaves_no_grant_behind(world: World) -> None:
    world.admin_post("/faults", {"target": "userinfo", "kind": "html_200", "count": 1})
    outcome = world.request_token()
    assert not outcome.ok and "DATEV-Benutzers" in outcome.message and "nichts gespeichert" in outcome.message
    assert world.stored_nothing()
    assert [g["revoked"] for g in grants(world)] == [True]


def test_the_iss_of_the_answer_must_be_datevs(world: World) -> None:
    world.admin_post("/config", {"authorization_response_iss": True})
    assert world.request_token().ok  # the emulator's own issuer: accepted
    url = start_login(world.engine, world.settings, world.keyring, company_id=world.company_id, user=world.admin,
                      kind=ConnectionKind.long_term)
    params = consent(url) | {"iss": "https://evil.example/openid"}
    outcome = finish_login(world.engine, world.settings, world.keyring, params=params, user=world.admin)
    assert not outcome.ok and "iss" in outcome.message


def test_an_id_token_for_several_audiences_needs_our_azp(world: World) -> None:
    world.admin_post("/config", {"id_token_extra_audiences": ["another-app"]})
    outcome = world.request_token()
    assert not outcome.ok and "Sicherheitsprüfung" in outcome.message and world.stored_nothing()
    world.admin_post("/config", {"id_token_azp": world.settings.datev_client_id})
    assert world.request_token().ok


def test_another_user_cannot_burn_a_pending_login(world: World) -> None:
    url = start_login(world.engine, world.settings, world.keyring, company_id=world.company_id, user=world.admin,
                      kind=ConnectionKind.long_term)
    params = consent(url)
    foreign = finish_login(world.engine, world.settings, world.keyring, params=params, user=world.operator)
    assert not foreign.ok and "anderen Benutzer" in foreign.message
    with unit_of_work(world.engine) as s:
        assert s.exec(select(PendingAuthorization)).first() is not None  # still there for its owner
    assert finish_login(world.engine, world.settings, world.keyring, params=params, user=world.admin).ok


def access_token_left(world: World, seconds: int) -> None:
    """As if the access token had `seconds` left: within the refresh skew (2 minutes), still valid."""
    with unit_of_work(world.engine) as s:
        for row in s.exec(select(Connection)).all():
            row.access_expires_at = utcnow() + timedelta(seconds=seconds)
            s.add(row)


def test_a_late_refresh_answer_is_not_followed_by_a_second_refresh(world: World) -> None:
    """The token endpoint answers after the deadline (it did rotate): "Erneuerung unklar", no second
    refresh with the old token; the next use after the hold decides with the old access token (refused
    before its time: DATEV rotated) and the grant stays alive at DATEV (no reuse detection)."""
    world.settings = world.settings.model_copy(update={"http_deadline_seconds": 1.0, "refresh_lease_seconds": 10})
    assert world.request_token().ok
    row = world.connection()
    assert row.id is not None
    access_token_left(world, 90)
    world.admin_post("/faults", {"target": "token", "kind": "delay_response", "latency_ms": 2500, "count": 1})
    with pytest.raises(TokenUnavailable) as first:
        get_valid_token(world.engine, row.id, settings=world.settings, keyring=world.keyring)
    assert "Erneuerung unklar" in first.value.message and not first.value.permanent
    unclear = world.connection()
    assert evaluate_health(unclear, utcnow(), 30) == Health.unclear
    assert unclear.refresh_lease_until is not None and unclear.refresh_lease_until > utcnow()  # ended within it
    with pytest.raises(TokenUnavailable):
        get_valid_token(world.engine, row.id, settings=world.settings, keyring=world.keyring)
    assert world.stats()["refresh_requests"] == 1
    world.expire_refresh_lease()  # the hold is over (instead of waiting for it)
    with pytest.raises(TokenUnavailable) as decided_as:
        get_valid_token(world.engine, row.id, settings=world.settings, keyring=world.keyring)
    assert decided_as.value.permanent and decided_as.value.newly_invalid
    decided = world.connection()
    assert decided.invalid_at is not None and "verloren" in (decided.invalid_reason or "")
    assert world.stats()["refresh_requests"] == 1 and world.stats()["reuse_detections"] == 0
    assert [g["revoked"] for g in grants(world)] == [False]  # alive at DATEV: the old token was never sent again


def test_a_slow_drip_ends_at_the_deadline_within_the_lease(world: World) -> None:
    world.settings = world.settings.model_copy(update={"http_deadline_seconds": 1.0, "refresh_lease_seconds": 10})
    assert world.request_token().ok
    row = world.connection()
    assert row.id is not None
    world.expire_access_token()
    world.admin_post("/faults", {"target": "token", "kind": "slow_drip", "latency_ms": 200, "count": 1})
    with pytest.raises(TokenUnavailable) as info:
        get_valid_token(world.engine, row.id, settings=world.settings, keyring=world.keyring)
    assert "Erneuerung unklar" in info.value.message
    after = world.connection()
    assert after.refresh_lease_until is not None and after.refresh_lease_until > utcnow()
    with unit_of_work(world.engine) as s:
        line = s.exec(select(HttpLogEntry).where(HttpLogEntry.purpose == "token_refresh")).one()
    assert line.error == "DeadlineExceeded"


def test_a_short_lived_token_is_not_refreshed_on_every_call(world: World) -> None:
    world.admin_post("/config", {"access_token_ttl": 30})
    assert world.request_token().ok
    row = world.connection()
    assert row.id is not None and row.access_ttl_seconds == 30
    for _ in range(20):  # the 60 s skew would call every one of these stale; a third of 30 s does not
        get_valid_token(world.engine, row.id, settings=world.settings, keyring=world.keyring)
    assert world.stats()["refresh_requests"] == 0


def test_nothing_is_stored_in_clear_when_a_login_is_refused(world: World) -> None:
    world.admin_post("/config", {"client_scope_grant": "other"})
    assert not world.request_token().ok
    with unit_of_work(world.engine) as s:
        assert s.exec(select(StoredSecret).where(StoredSecret.owner_type == "connection")).first() is None
