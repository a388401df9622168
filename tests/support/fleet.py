"""Several DATEV companies with real long-term tokens, approved documents, and the real scheduler
process, for the proof tests (crash safety, concurrent schedulers, revoked tokens).

Builds on tests/token_world.py (seed, users, the token flow as a user does it); adds companies
455148-4 and -5 (the emulator's person "max" has rights on 455148-1 … -5; 455148-3 has no Belege
online, so it is left out), documents, and helpers to start, kill and watch `scheduler.py`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import requests
from sqlalchemy import Engine, func, update
from sqlmodel import col, select

from core import companies
from core.documents import intake, lifecycle
from core.platform.db import unit_of_work
from core.platform.models import Company, Connection, Document, DocumentStatus, Interface
from core.users import process
from testkit.rows import id_of, ids_of, present
from testkit.samples import pdf
from tests.support import TEST_KEY_ENTRY
from tests.support.world import World

ROOT = Path(__file__).resolve().parents[2]
DATEV_CLIENTS = ("455148-1", "455148-2", "455148-4", "455148-5")
EXTRA_COMPANIES = {"455148-4": "Bäckerei Sonnenschein e.K.", "455148-5": "Nordlicht Logistik GmbH & Co. KG"}




def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.05,
               what: str = "condition") -> None:
    """Poll `condition` until true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for: {what}")
        time.sleep(interval)


@dataclass
class Fleet:
    world: World
    database_url: str
    companies: dict[str, int]  # DATEV client id "455148-1" → company id
    log_dir: Path

    @property
    def engine(self) -> Engine:
        return self.world.engine

    @property
    def emulator_url(self) -> str:
        return self.world.emulator_url

    # --- setup ------------------------------------------------------------------------------

    def request_token(self, company_id: int) -> None:
        outcome = replace(self.world, company_id=company_id).request_token(person="max")
        assert outcome.ok, outcome.message

    def add_approved(self, company_id: int, count: int, tag: str = "") -> list[int]:
        report = intake.intake(self.engine, company_id=company_id, actor=process("operator@tokendesk.demo"),
                                  files=[(f"Rechnung {tag}{company_id}-{i}.pdf", pdf(f"{tag}{company_id}-{i}"))
                                         for i in range(count)])
        assert not report.rejected, report.rejected
        ids = ids_of(report.accepted)
        assert lifecycle.approve(self.engine, document_ids=ids, actor=process("operator@tokendesk.demo")) == count
        return ids

    def fault(self, target: str, kind: str, count: int = 1, **extra: object) -> None:
        self.world.admin_post("/faults", {"target": target, "kind": kind, "count": count, **extra})

    def clear_faults(self) -> None:
        requests.delete(self.emulator_url + "/_admin/faults", timeout=5).raise_for_status()

    # --- observing ---------------------------------------------------------------------------

    def status_counts(self) -> Counter[str]:
        with unit_of_work(self.engine) as s:
            rows = s.exec(select(Document.status, func.count()).group_by(col(Document.status))).all()
        return Counter({status: n for status, n in rows})

    def delivered(self) -> int:
        return self.status_counts()[DocumentStatus.delivered.value]

    def guids(self) -> set[str]:
        with unit_of_work(self.engine) as s:
            return {g.lower() for g in s.exec(select(Document.guid)).all()}

    def received(self) -> Counter[str]:
        """How often the emulator accepted each GUID (any DATEV client)."""
        data = requests.get(self.emulator_url + "/_admin/datev/uploads", timeout=10).json()
        rows = data if isinstance(data, list) else data["uploads"]
        return Counter(row["guid"].lower() for row in rows)

    def stats(self) -> dict:
        return self.world.stats()

    # --- the scheduler process ---------------------------------------------------------------

    def scheduler_env(self, **overrides: object) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSFER_", "RETRY_"))}
        env.update({
            "APP_ENV": "test", "DATABASE_URL": self.database_url, "ENCRYPTION_KEYS": TEST_KEY_ENTRY,
            "EMULATOR_URL": self.emulator_url, "TRANSFER_INTERVAL_SECONDS": "5", "TRANSFER_LEASE_SECONDS": "2",
            "TRANSFER_CONCURRENCY": "4", "RETRY_BASE_SECONDS": "0", "RETRY_CAP_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
        })
        env.update({k: str(v) for k, v in overrides.items()})
        return env

    def start_scheduler(self, instance_id: str, *args: str, **env: object) -> subprocess.Popen:
        """`python scheduler.py --instance-id X`, output to a log file (never a pipe that can fill)."""
        log = open(self.log_dir / f"{instance_id}.log", "ab")  # closed with the process
        try:
            return subprocess.Popen([sys.executable, "scheduler.py", "--instance-id", instance_id, *args], cwd=ROOT,
                                    env=self.scheduler_env(**env), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        finally:
            log.close()

    def log_tail(self, instance_id: str, lines: int = 40) -> str:
        path = self.log_dir / f"{instance_id}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL: no handler, no cleanup, no released claims."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def stop(proc: subprocess.Popen, timeout: float = 60) -> int:
    """SIGTERM and wait: in-flight work finishes, claims are released, exit code returned."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    return proc.wait(timeout=timeout)


def make_fleet(world: World, database_url: str, log_dir: Path, clients: tuple[str, ...] = DATEV_CLIENTS,
               auto_transfer: bool = True) -> Fleet:
    """The demo seed plus 455148-4/-5, each of `clients` with a long-term token of "max"."""
    for client_id, name in EXTRA_COMPANIES.items():
        if client_id in clients:
            consultant, client = client_id.split("-")
            companies.create_company(world.engine, actor=process("test"), data=companies.CompanyInput(
                name, consultant, client, Interface.datev.value, auto_transfer, "Rechnungseingang"))
    with unit_of_work(world.engine) as s:
        ids = {present(c.datev_client_id): id_of(c) for c in s.exec(select(Company)).all()
               if c.datev_client_id in clients}
        s.exec(update(Company).where(col(Company.id).in_(list(ids.values())))
               .values(auto_transfer=auto_transfer))
    fleet = Fleet(world, database_url, ids, log_dir)
    for company_id in ids.values():
        fleet.request_token(company_id)
    with unit_of_work(world.engine) as s:
        assert len(s.exec(select(Connection).where(col(Connection.has_token).is_(True))).all()) == len(clients)
    return fleet
