"""Eight OS processes want an access token for the same expired connection at the same moment:
exactly one refresh reaches DATEV, all get the same working token, reuse detection never fires."""

import json

import pytest
import requests

from core.connections.access import get_valid_token
from core.providers.datev import get_client
from core.providers.http import CallContext
from testkit.rows import id_of
from testkit.workers import run_together
from tests.support.world import World

PROCESSES = 8


@pytest.mark.slow
def test_eight_processes_one_refresh(world: World, database_url: str) -> None:
    assert world.request_token().ok
    row = world.connection()
    world.expire_access_token()
    before = world.stats()

    results = run_together("testkit.refresh_worker",
                           [[database_url, world.emulator_url, str(row.id)]] * PROCESSES)

    assert [r.returncode for r in results] == [0] * PROCESSES, [r.stderr[-1500:] for r in results]
    answers = [json.loads(r.stdout.strip().splitlines()[-1]) for r in results]
    after = world.stats()
    assert after["refresh_requests"] - before["refresh_requests"] == 1
    assert after["reuse_detections"] == before["reuse_detections"] == 0
    assert len({a["fingerprint"] for a in answers}) == 1  # everybody got the one new token
    assert {a["version"] for a in answers} == {row.version + 1}
    token = get_valid_token(world.engine, id_of(row), settings=world.settings, keyring=world.keyring)
    client = get_client(world.engine, CallContext("datev", "check"), world.settings, token.value, "455148-1")
    assert client["id"] == "455148-1"
    assert requests.get(world.emulator_url + "/_admin/stats", timeout=5).json()["refresh_requests"] == \
        after["refresh_requests"]


TTL_SECONDS, PROCESSES_BUSY, THREADS, DURATION_SECONDS = 5, 3, 4, 30


@pytest.mark.slow
def test_short_tokens_under_load_are_refreshed_once_per_expiry(world: World, database_url: str) -> None:
    """5-second access tokens, 3 processes × 4 threads calling DATEV for 30 s: each expiry is renewed
    by one refresh (a third of the lifetime before it runs out), never one per call, and never twice."""
    requests.post(world.emulator_url + "/_admin/config", json={"access_token_ttl": TTL_SECONDS},
                  timeout=5).raise_for_status()
    assert world.request_token().ok
    row = world.connection()
    before = world.stats()

    results = run_together("tests.support.busy_token_worker",
                           [[database_url, world.emulator_url, str(row.id), str(THREADS), str(DURATION_SECONDS)]]
                           * PROCESSES_BUSY, timeout=DURATION_SECONDS + 120)

    assert [r.returncode for r in results] == [0] * PROCESSES_BUSY, [r.stderr[-1500:] for r in results]
    answers = [json.loads(r.stdout.strip().splitlines()[-1]) for r in results]
    assert [a["errors"] for a in answers] == [[]] * PROCESSES_BUSY
    calls = sum(a["calls"] for a in answers)
    after = world.stats()
    refreshes = after["refresh_successes"] - before["refresh_successes"]
    expiries = DURATION_SECONDS / (TTL_SECONDS - TTL_SECONDS / 3)  # one renewal per lifetime minus the skew
    assert 1 <= refreshes <= int(expiries) + 2, (refreshes, calls)
    assert calls > 10 * refreshes  # far fewer refreshes than calls
    assert after["reuse_detections"] == before["reuse_detections"] == 0
