"""A rotated refresh token is never lost: DATEV has already killed the old one when its answer
arrives, so the new pair must reach the database even when the database is down for a moment."""

from __future__ import annotations

import threading

import pytest
import requests
from sqlalchemy import Engine, create_engine, text

from core.connections import access
from core.connections.access import get_valid_token
from core.platform.config import Settings
from core.platform.crypto import fingerprint
from core.providers import datev_oidc
from core.providers.datev_oidc import DatevEndpoints, TokenResponse
from core.providers.http import CallContext
from tests.support import POSTGRES_ADMIN_URL
from tests.support.world import World

OUTAGE_SECONDS = 1.5


def database_outage(database_url: str) -> threading.Timer:
    """Refuse new connections to the test database and terminate the open ones; connections are allowed
    again after OUTAGE_SECONDS (the outage's length, not a synchronisation)."""
    name = database_url.rsplit("/", 1)[1]
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})

    def back() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()

    timer = threading.Timer(OUTAGE_SECONDS, back)
    timer.start()
    return timer


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_database_outage_between_the_answer_and_the_store_loses_nothing(
        world: World, database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    assert world.request_token().ok
    row = world.connection()
    assert row.id is not None
    world.expire_access_token()
    answers: list[TokenResponse] = []
    outages: list[threading.Timer] = []
    real_refresh = datev_oidc.refresh

    def refresh_then_outage(engine: Engine, ctx: CallContext, endpoints: DatevEndpoints, settings: Settings, *,
                            refresh_token: str) -> TokenResponse:
        answer = real_refresh(engine, ctx, endpoints, settings, refresh_token=refresh_token)  # the real call
        answers.append(answer)
        outages.append(database_outage(database_url))  # the database goes down before the store
        return answer

    monkeypatch.setattr(access, "refresh", refresh_then_outage)
    token = get_valid_token(world.engine, row.id, settings=world.settings, keyring=world.keyring)
    for outage in outages:
        outage.join()

    (answer,) = answers
    assert token.value == answer.access_token
    assert any("storing the refreshed token failed" in r.getMessage() for r in caplog.records)  # it was down
    after = world.connection()
    assert after.version == row.version + 1 and after.token_fingerprint == fingerprint(answer.refresh_token or "")
    monkeypatch.undo()
    world.expire_access_token()  # the stored refresh token is the live one: the next refresh works
    get_valid_token(world.engine, row.id, settings=world.settings, keyring=world.keyring)
    stats = world.stats()
    assert stats["refresh_successes"] == 2 and stats["reuse_detections"] == 0
    grants = requests.get(world.emulator_url + "/_admin/datev/grants", timeout=5).json()
    assert [g["revoked"] for g in grants] == [False]
