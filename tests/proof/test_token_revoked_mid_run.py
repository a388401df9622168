"""A token revoked at DATEV while a transfer run is going: the company stops, one alarm, no storm.

The grant is revoked (as in DATEV's "Verbundene Anwendungen") while uploads are in flight. The next
upload is refused with 401; one refresh is tried, DATEV answers invalid_grant, the connection is
marked invalid and the company's remaining documents wait, still approved. Counted: refresh calls
at DATEV (not one per document) and upload calls refused with 401 (at most one per worker). Token
care then raises exactly one `token_invalid` alarm, however often it runs. After a new long-term
token is stored the backlog drains, each GUID exactly once.

Over real HTTP, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlmodel import col, func, select

from core.connections.health import Health, evaluate_health
from core.jobs import care_for_tokens
from core.platform.db import unit_of_work
from core.platform.models import AlarmSent, Company, Connection, DocumentStatus, HttpLogEntry, utcnow
from core.transfers.engine import PassOptions, PassSummary, run_pass
from core.transfers.readiness import waiting_reason
from core.users import process
from testkit.rows import present
from tests.support.fleet import make_fleet
from tests.support.world import World

DOCUMENTS = 80


def _pass(fleet, stop: threading.Event | None = None) -> PassSummary:
    return run_pass(fleet.engine, fleet.world.settings, fleet.world.keyring,
                    PassOptions(trigger="scheduler", actor=process("scheduler:proof"), only_auto_transfer=True, stop=stop))


def test_revoked_token_pauses_the_company_once_and_the_backlog_drains_after_a_new_token(
        world: World, database_url: str, tmp_path: Path) -> None:
    fleet = make_fleet(world, database_url, tmp_path, clients=("455148-1",))
    company_id = fleet.companies["455148-1"]
    fleet.add_approved(company_id, DOCUMENTS)
    # The grant is revoked inside the emulator exactly when the 13th upload arrives: uploads in
    # flight then meet a dead token. (Revoking from this thread after polling raced the run: on a
    # loaded machine the run could finish all documents first.) With at most `concurrency` uploads
    # in flight, at least 12 - (concurrency - 1) documents are delivered before the revocation.
    concurrency = fleet.world.settings.transfer_concurrency
    fleet.fault("documents", "latency", 12, latency_ms=60)
    fleet.fault("documents", "revoke_grants", 1)
    fleet.fault("documents", "latency", 100_000, latency_ms=60)
    before = fleet.stats()

    stop = threading.Event()
    result: list[PassSummary] = []
    runner = threading.Thread(target=lambda: result.append(_pass(fleet, stop)), name="transfer-run")
    runner.start()
    try:
        runner.join(timeout=120)
        assert not runner.is_alive(), "the run did not end after the revocation: it keeps retrying (storm)"
    finally:
        stop.set()
        runner.join(timeout=30)
    summary = result[0]
    after = fleet.stats()

    # The company stopped: connection invalid, nothing lost, nothing given up, nothing left claimed.
    with unit_of_work(fleet.engine) as s:
        connection = s.exec(select(Connection).where(Connection.company_id == company_id)).one()
        company = present(s.get(Company, company_id))
        refused = s.exec(select(func.count()).select_from(HttpLogEntry).where(
            col(HttpLogEntry.purpose) == "upload", col(HttpLogEntry.status) == 401)).one()
    assert connection.invalid_at is not None, "the connection was not marked invalid"
    assert evaluate_health(connection, utcnow(), 30) == Health.invalid
    assert (waiting_reason(company, connection, fleet.world.settings, utcnow()) or "").startswith("Token")
    counts = fleet.status_counts()
    delivered = counts[DocumentStatus.delivered.value]
    assert 12 - (concurrency - 1) <= delivered <= 12, delivered
    assert counts == {DocumentStatus.delivered.value: delivered, DocumentStatus.approved.value: DOCUMENTS - delivered}
    assert summary.delivered == delivered
    # No storm: one refresh attempt (invalid_grant), at most one refused upload per worker.
    assert after["refresh_requests"] - before["refresh_requests"] <= 2
    assert refused <= fleet.world.settings.transfer_concurrency

    # The next passes wait without contacting DATEV at all.
    again = _pass(fleet)
    assert again.uploads == 0 and again.reads == 0
    assert fleet.stats()["refresh_requests"] == after["refresh_requests"]
    assert again.waiting[company_id].startswith("Token")

    # Token care (every tick, and a second scheduler doing the same) raises the alarm once.
    care_for_tokens(fleet.engine, fleet.world.settings, fleet.world.keyring)
    care_for_tokens(fleet.engine, fleet.world.settings, fleet.world.keyring)
    with unit_of_work(fleet.engine) as s:
        keys = list(s.exec(select(AlarmSent.key).where(AlarmSent.company_id == company_id)).all())
    assert len([k for k in keys if k.startswith("token_invalid:")]) == 1, keys
    assert len(keys) == len(set(keys))

    # A new long-term token: the backlog drains, every GUID exactly once at DATEV.
    fleet.request_token(company_id)
    fleet.clear_faults()
    drained = _pass(fleet)
    assert drained.delivered == DOCUMENTS - delivered
    assert fleet.status_counts() == {DocumentStatus.delivered.value: DOCUMENTS}
    received = fleet.received()
    assert set(received) == fleet.guids() and set(received.values()) == {1}
