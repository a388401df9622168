"""Lexware Office has no idempotency: an upload whose answer was lost becomes `ungeklärt`
(unresolved) and is never sent again automatically.

1. The emulator accepts the upload, stores the file and then drops the connection: the document
   is unresolved, Lexware holds the file once, and later passes (scheduler and manual) send nothing.
2. The scheduler process is SIGKILLed while its Lexware upload is in flight (the request has reached
   Lexware); after a restart the abandoned claim becomes unresolved, never a second upload.

Over real HTTP, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from sqlalchemy import update
from sqlmodel import col, select

from core.connections.lexware_key import store_lexware_key
from core.documents.queries import STATUS_LABELS
from core.platform.db import unit_of_work
from core.platform.models import Company, Document, DocumentStatus, Interface, TransferAttempt
from core.transfers.engine import PassOptions, PassSummary, run_pass
from core.users import process
from testkit.rows import id_of
from tests.support.fleet import Fleet, kill, stop, wait_until
from tests.support.world import World

FILES_PATH = "/lexware/v1/files"


def _lexware_fleet(world: World, database_url: str, tmp_path: Path) -> Fleet:
    with unit_of_work(world.engine) as s:
        company = s.exec(select(Company).where(Company.interface == Interface.lexware.value)).one()
        company_id = id_of(company)
        s.exec(update(Company).where(col(Company.id) == company_id).values(auto_transfer=True))
    result = store_lexware_key(world.engine, world.settings, world.keyring, company_id=company_id,
                               api_key="demo-lexware-key", valid_until=None, actor=process("admin@tokendesk.demo"))
    assert result.ok, result.message
    return Fleet(world, database_url, {"lexware": company_id}, tmp_path)


def _files(fleet: Fleet) -> list[dict]:
    files: list[dict] = requests.get(fleet.emulator_url + "/_admin/lexware/files", timeout=5).json()
    return files


def _pass(fleet: Fleet, trigger: str = "scheduler") -> PassSummary:
    return run_pass(fleet.engine, fleet.world.settings, fleet.world.keyring,
                    PassOptions(trigger=trigger, actor=process(f"{trigger}:proof"), only_auto_transfer=trigger == "scheduler"))


def _document(fleet: Fleet, document_id: int) -> Document:
    with unit_of_work(fleet.engine) as s:
        document = s.get(Document, document_id)
        s.expunge_all()
    assert document is not None
    return document


def test_accepted_then_dropped_upload_becomes_unresolved_and_is_not_sent_again(
        world: World, database_url: str, tmp_path: Path) -> None:
    fleet = _lexware_fleet(world, database_url, tmp_path)
    first, *others = fleet.add_approved(fleet.companies["lexware"], 3)
    fleet.fault("lexware", "accept_then_drop", 1)

    summary = _pass(fleet)
    assert (summary.unresolved, summary.delivered) == (1, 2)
    document = _document(fleet, first)
    assert document.status == DocumentStatus.unresolved.value
    assert STATUS_LABELS[DocumentStatus(document.status)] == "ungeklärt"
    assert {_document(fleet, i).status for i in others} == {DocumentStatus.delivered.value}
    assert len(_files(fleet)) == 3  # the dropped upload did arrive: sending it again would make a copy
    uploads_before = fleet.stats()["requests_by_path"][FILES_PATH]

    # Neither the scheduler nor a manual transfer picks it up again, also after its retry time.
    with unit_of_work(fleet.engine) as s:
        s.exec(update(Document).values(next_attempt_at=None))
    assert _pass(fleet).uploads == 0
    assert _pass(fleet, "manual").uploads == 0
    assert fleet.stats()["requests_by_path"][FILES_PATH] == uploads_before
    assert len(_files(fleet)) == 3
    with unit_of_work(fleet.engine) as s:
        outcomes = list(s.exec(select(TransferAttempt.outcome).where(TransferAttempt.document_id == first)).all())
    assert outcomes == ["unresolved"]


@pytest.mark.slow
def test_scheduler_killed_during_a_lexware_upload_leaves_it_unresolved_not_resent(
        world: World, database_url: str, tmp_path: Path) -> None:
    fleet = _lexware_fleet(world, database_url, tmp_path)
    (document_id,) = fleet.add_approved(fleet.companies["lexware"], 1)
    fleet.fault("lexware", "latency", 1, latency_ms=3000)  # the window for the kill: wide on a loaded CI machine

    proc = fleet.start_scheduler("lexware-1")
    try:
        wait_until(lambda: fleet.stats()["requests_by_path"].get(FILES_PATH, 0) >= 1, timeout=60,
                   what=f"the Lexware upload is in flight: {fleet.log_tail('lexware-1')}")
    finally:
        kill(proc)
    assert _document(fleet, document_id).status == DocumentStatus.transferring.value
    wait_until(lambda: len(_files(fleet)) == 1, timeout=30, what="Lexware stores the upload of the killed process")

    restarted = fleet.start_scheduler("lexware-2")
    try:
        wait_until(lambda: _document(fleet, document_id).status == DocumentStatus.unresolved.value, timeout=60,
                   what=f"the abandoned Lexware claim becomes unresolved: {fleet.log_tail('lexware-2')}")
    finally:
        assert stop(restarted) == 0, fleet.log_tail("lexware-2")
    assert _pass(fleet).uploads == 0 and _pass(fleet, "manual").uploads == 0
    assert fleet.stats()["requests_by_path"][FILES_PATH] == 1  # one upload request, ever
    assert len(_files(fleet)) == 1
