"""Lexware's 2 requests/s per API key, shared by every worker and process through the database."""

import json
from datetime import datetime, timedelta

import requests
from sqlalchemy import Engine
from sqlmodel import select

from core.connections import lexware_key
from core.documents import intake, lifecycle
from core.platform.db import unit_of_work
from core.platform.models import Company, Document, DocumentStatus
from core.platform.ratelimit import reserve
from core.transfers.engine import PassOptions, run_pass
from core.users import process
from testkit.rows import id_of, ids_of
from testkit.samples import pdf
from testkit.workers import run_together
from tests.support.world import World

INTERVAL = timedelta(seconds=0.5)


def test_slots_are_one_interval_apart(engine: Engine) -> None:
    slots = [reserve(engine, "lexware:key-a", 2.0) for _ in range(6)]
    assert all(b - a == INTERVAL for a, b in zip(slots, slots[1:], strict=False))
    assert reserve(engine, "lexware:key-b", 2.0) < slots[-1]  # another key has its own budget


def test_processes_share_one_budget(engine: Engine, database_url: str) -> None:
    results = run_together("tests.support.ratelimit_worker", [[database_url, "lexware:shared", "5"]] * 4)
    assert [r.returncode for r in results] == [0] * 4, [r.stderr[-1500:] for r in results]
    slots = sorted(datetime.fromisoformat(s) for r in results for s in json.loads(r.stdout.strip().splitlines()[-1]))
    assert len(set(slots)) == 20
    assert min(b - a for a, b in zip(slots, slots[1:], strict=False)) >= INTERVAL


def test_a_lexware_pass_never_trips_the_providers_limit(world: World) -> None:
    with unit_of_work(world.engine) as s:
        lexware = s.exec(select(Company).where(Company.interface == "lexware")).one()
        lexware.auto_transfer = True
        s.add(lexware)
        lexware_id = id_of(lexware)
    assert lexware_key.store_lexware_key(world.engine, world.settings, world.keyring, company_id=lexware_id,
                                         api_key="demo-lexware-key", valid_until=None, actor=process("admin@x.de")).ok
    report = intake.intake(world.engine, company_id=lexware_id, actor=process("o@x.de"),
                              files=[(f"Beleg {i}.pdf", pdf(f"lex-{i}")) for i in range(5)])
    lifecycle.approve(world.engine, document_ids=ids_of(report.accepted), actor=process("o@x.de"))
    summary = run_pass(world.engine, world.settings, world.keyring,
                       PassOptions(trigger="scheduler", actor=process("scheduler:test"), only_auto_transfer=True))
    assert summary.delivered == 5 and summary.retried == 0  # no 429 from Lexware's 2/s bucket
    files = requests.get(world.emulator_url + "/_admin/lexware/files", timeout=5).json()
    assert len(files if isinstance(files, list) else files["files"]) == 5
    with unit_of_work(world.engine) as s:
        assert {d.status for d in s.exec(select(Document).where(Document.company_id == lexware_id))} == {
            DocumentStatus.delivered.value}
