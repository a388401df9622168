"""`python scheduler.py` as a real process against the emulator, on SQLite and PostgreSQL.

Conditions are awaited by polling the database with a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import col, select

from core.documents import intake, lifecycle
from core.platform.db import unit_of_work
from core.platform.models import Company, Document, DocumentStatus, SchedulerHeartbeat, utcnow
from core.users import process
from testkit.rows import ids_of, present
from testkit.samples import pdf
from testkit.workers import ROOT
from tests.support import TEST_KEY_ENTRY
from tests.support.world import World, add_approved, uploads

DEADLINE_SECONDS = 90


def scheduler_env(world: World) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": world.settings.database_url, "APP_ENV": "test",
            "ENCRYPTION_KEYS": TEST_KEY_ENTRY, "EMULATOR_URL": world.emulator_url, "TRANSFER_INTERVAL_SECONDS": "5"}


class Scheduler:
    """A scheduler loop process; its output goes to a file (a full pipe would block it)."""

    def __init__(self, world: World, log_path: Path, instance_id: str) -> None:
        self.instance_id = instance_id
        self.log_path = log_path
        self._log = open(log_path, "w")  # closed in stop()
        self.proc = subprocess.Popen([sys.executable, "scheduler.py", "--instance-id", instance_id], cwd=ROOT,
                                     env={**scheduler_env(world), "INBOX_ROOT": str(log_path.parent)},
                                     stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def owner(self) -> str:
        return f"scheduler:{self.instance_id}"

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def wait_for(self, condition: Callable[[], object], what: str) -> object:
        """Poll `condition` until it is truthy; fail if the process dies or the deadline passes."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.proc.poll() is not None:
                pytest.fail(f"scheduler exited ({self.proc.returncode}) before {what}:\n{self.output()[-4000:]}")
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}:\n{self.output()[-4000:]}")

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=DEADLINE_SECONDS)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()


@pytest.fixture
def start_scheduler(tmp_path: Path) -> Iterator[Callable[[World, str], Scheduler]]:
    started: list[Scheduler] = []

    def start(world: World, instance_id: str) -> Scheduler:
        scheduler = Scheduler(world, tmp_path / f"{instance_id}.log", instance_id)
        started.append(scheduler)
        return scheduler

    yield start
    for scheduler in started:
        scheduler.stop()


def statuses(world: World, ids: list[int] | None = None) -> dict[int, str]:
    with unit_of_work(world.engine) as s:
        query = select(Document.id, Document.status)
        if ids is not None:
            query = query.where(col(Document.id).in_(ids))
        return {present(document_id): status for document_id, status in s.exec(query).all()}


def approved_later(world: World) -> list[int]:
    report = intake.intake(world.engine, company_id=world.company_id, actor=process("operator@x.de"),
                              files=[("Nachzügler.pdf", pdf("später"))])
    ids = ids_of(report.accepted)
    assert lifecycle.approve(world.engine, document_ids=ids, actor=process("operator@x.de")) == 1
    return ids


def heartbeat(world: World, instance_id: str) -> SchedulerHeartbeat:
    with unit_of_work(world.engine) as s:
        row = s.get(SchedulerHeartbeat, instance_id)
        assert row is not None
        s.expunge(row)
        return row


def test_once_delivers_and_exits_zero(world: World) -> None:
    assert world.request_token().ok
    ids = add_approved(world, 3)

    done = subprocess.run([sys.executable, "scheduler.py", "--once", "--instance-id", "once-1"], cwd=ROOT,
                          env=scheduler_env(world), capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr[-4000:]
    assert set(statuses(world, ids).values()) == {DocumentStatus.delivered.value}
    assert len(uploads(world)) == 3
    beat = heartbeat(world, "once-1")
    assert beat.stopped_at is not None and beat.last_pass is not None and beat.last_pass["delivered"] == 3


def test_sigterm_finishes_in_flight_uploads_and_releases_claims(world: World, start_scheduler) -> None:
    assert world.request_token().ok
    ids = add_approved(world, 8)
    world.admin_post("/faults", {"target": "documents", "kind": "latency", "latency_ms": 1500, "count": 50})
    scheduler = start_scheduler(world, "loop-1")

    def in_flight() -> list[int]:
        with unit_of_work(world.engine) as s:
            return [present(i) for i in s.exec(select(Document.id).where(
                Document.status == DocumentStatus.transferring.value, Document.lease_owner == scheduler.owner)).all()]

    seen = scheduler.wait_for(in_flight, "an upload in flight")
    returncode = scheduler.terminate()

    assert returncode == 0, scheduler.output()[-4000:]
    assert "finishing in-flight work" in scheduler.output()
    now = utcnow()
    with unit_of_work(world.engine) as s:
        documents = s.exec(select(Document).where(col(Document.id).in_(ids))).all()
        live_claims = [d.id for d in documents if d.status == DocumentStatus.transferring.value
                       and d.lease_owner == scheduler.owner and d.lease_until is not None and d.lease_until > now]
        assert live_claims == []
    # What the scheduler held when the signal came: uploads under way were finished (delivered), claims
    # not yet started were handed back (approved again, the claim not counted as an attempt).
    after = {d.id: d for d in documents}
    assert {after[i].status for i in seen} <= {DocumentStatus.delivered.value, DocumentStatus.approved.value}
    assert any(after[i].status == DocumentStatus.delivered.value for i in seen)
    assert all(after[i].attempts == 0 for i in seen if after[i].status == DocumentStatus.approved.value)
    assert heartbeat(world, "loop-1").stopped_at is not None


def test_a_failing_job_does_not_stop_the_loop(world: World, start_scheduler, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "eingang-ist-eine-datei"
    not_a_folder.write_text("kein Ordner")
    with unit_of_work(world.engine) as s:
        company = present(s.get(Company, world.company_id))
        company.inbox_dir = str(not_a_folder)
        s.add(company)
    assert world.request_token().ok
    [first] = add_approved(world, 1)
    scheduler = start_scheduler(world, "loop-2")

    scheduler.wait_for(lambda: statuses(world, [first])[first] == DocumentStatus.delivered.value, "the first delivery")
    scheduler.wait_for(lambda: "the scheduler goes on" in scheduler.output(), "the inbox failure log")
    [second] = approved_later(world)  # a later tick still transfers
    scheduler.wait_for(lambda: statuses(world, [second])[second] == DocumentStatus.delivered.value,
                       "a delivery in a later tick")

    assert scheduler.terminate() == 0
    assert "fehlt oder ist kein Ordner" in scheduler.output()
    assert "Traceback" not in scheduler.output()  # an expected error is one line, not a stack
    assert heartbeat(world, "loop-2").stopped_at is not None
