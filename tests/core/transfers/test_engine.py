"""The transfer engine end to end over real HTTP against the emulator, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from sqlalchemy import update
from sqlmodel import col, select

from core.connections.lexware_key import store_lexware_key
from core.documents import intake, queries
from core.documents.lifecycle import claim
from core.platform.db import unit_of_work
from core.platform.models import (
    AlarmSent,
    Company,
    Document,
    DocumentStatus,
    HttpLogEntry,
    TransferAttempt,
    utcnow,
)
from core.transfers.engine import PassOptions, run_pass
from core.transfers.history import OUTCOME_LABELS
from core.users import process
from testkit.rows import id_of, present
from testkit.samples import pdf
from tests.support.world import World, add_approved, uploads


def scheduler_pass(world: World):
    return run_pass(world.engine, world.settings, world.keyring,
                    PassOptions(trigger="scheduler", actor=process("scheduler:test"), only_auto_transfer=True))


def test_approved_documents_are_delivered_exactly_once(world: World) -> None:
    assert world.request_token().ok
    ids = add_approved(world, 3)
    summary = scheduler_pass(world)
    assert (summary.delivered, summary.uploads, summary.reads) == (3, 3, 2)
    with unit_of_work(world.engine) as s:
        docs = s.exec(select(Document)).all()
        assert {d.status for d in docs} == {DocumentStatus.delivered.value}
        attempts = s.exec(select(TransferAttempt)).all()
        assert len(attempts) == 3 and {a.outcome for a in attempts} == {"delivered"}
    received = uploads(world)
    assert sorted(u["guid"].lower() for u in received) == sorted(d.guid for d in docs)
    assert scheduler_pass(world).uploads == 0  # nothing due: nobody contacted
    assert len(ids) == 3


def test_new_documents_are_never_sent(world: World) -> None:
    assert world.request_token().ok
    intake.intake(world.engine, company_id=world.company_id, actor=process("o"), files=[("a.pdf", pdf("new"))])
    assert scheduler_pass(world).uploads == 0 and uploads(world) == []


def test_lost_answer_is_delivered_by_the_retry_without_a_copy(world: World) -> None:
    assert world.request_token().ok
    add_approved(world, 1)
    world.admin_post("/faults", {"target": "documents", "kind": "accept_then_drop", "count": 1})
    first = scheduler_pass(world)
    assert first.retried == 1
    with unit_of_work(world.engine) as s:
        s.exec(select(Document)).one()  # still one document
        s.exec(update(Document).values(next_attempt_at=None))
    second = scheduler_pass(world)
    assert second.delivered == 1
    assert len(uploads(world)) == 1  # the 409 #DCO01012 told us it had arrived
    with unit_of_work(world.engine) as s:
        outcomes = [a.outcome for a in s.exec(select(TransferAttempt).order_by(col(TransferAttempt.id)))]
    assert outcomes == ["retry", "delivered"]


def test_a_dripping_upload_answer_ends_at_the_deadline_and_the_retry_sends_no_copy(world: World) -> None:
    """The upload client's deadline in the pass (KeepAliveClient, issue #11): DATEV handles the upload and
    then drips its answer; the call ends at HTTP_DEADLINE_SECONDS, the attempt is a retry with the same
    GUID, and the next pass learns from the 409 that it had arrived."""
    world.settings = world.settings.model_copy(update={"http_deadline_seconds": 1.0})
    assert world.request_token().ok
    add_approved(world, 1)
    world.admin_post("/faults", {"target": "documents", "kind": "slow_drip", "latency_ms": 300, "count": 1})
    assert scheduler_pass(world).retried == 1
    with unit_of_work(world.engine) as s:
        line = s.exec(select(HttpLogEntry).where(HttpLogEntry.purpose == "upload")).one()
        s.exec(update(Document).values(next_attempt_at=None))
    assert (line.status, line.error) == (None, "DeadlineExceeded")
    assert scheduler_pass(world).delivered == 1
    assert len(uploads(world)) == 1
    with unit_of_work(world.engine) as s:
        attempts = s.exec(select(TransferAttempt).order_by(col(TransferAttempt.id))).all()
    assert [a.outcome for a in attempts] == ["retry", "delivered"]
    assert "Keine Antwort von DATEV (Antwort nicht rechtzeitig vollständig)" in (attempts[0].error_text or "")


@pytest.mark.parametrize("fault", ["html_200", "not_json"])
def test_an_unreadable_2xx_answer_is_sent_again_and_ends_delivered_once(world: World, fault: str) -> None:
    """Review finding: a 2xx answer that was not JSON became "Interner Fehler" with a traceback in the log.
    html_200: a maintenance page instead of DATEV (nothing arrived); not_json: DATEV created it, then the body
    was spoilt. Either way unknown: a retry with the same GUID, and the next pass ends with one document."""
    assert world.request_token().ok
    add_approved(world, 1)
    world.admin_post("/faults", {"target": "documents", "kind": fault, "count": 1})
    assert scheduler_pass(world).retried == 1
    with unit_of_work(world.engine) as s:
        first = s.exec(select(TransferAttempt)).one()
        s.exec(update(Document).values(next_attempt_at=None))
    assert first.error_text is not None and first.error_text.startswith("Unlesbare Antwort von DATEV (HTTP ")
    assert "Interner Fehler" not in first.error_text
    assert scheduler_pass(world).delivered == 1
    assert len(uploads(world)) == 1


def test_company_without_token_waits_with_reason(world: World) -> None:
    add_approved(world, 2)
    summary = scheduler_pass(world)
    assert summary.uploads == 0 and summary.waiting[world.company_id] == "Token fehlt"


@pytest.mark.parametrize("auto", [False])
def test_scheduler_skips_companies_without_automatic_transfer(world: World, auto: bool) -> None:
    assert world.request_token().ok
    with unit_of_work(world.engine) as s:
        company = present(s.get(Company, world.company_id))
        company.auto_transfer = auto
        s.add(company)
    add_approved(world, 1)
    summary = scheduler_pass(world)
    assert summary.uploads == 0 and "automatische Übertragung" in summary.waiting[world.company_id]
    manual = run_pass(world.engine, world.settings, world.keyring, PassOptions(trigger="manual", actor=process("o@x.de")))
    assert manual.delivered == 1


def _due_now(world: World) -> None:
    with unit_of_work(world.engine) as s:
        s.exec(update(Document).values(next_attempt_at=None))


def test_retries_are_bounded_and_end_as_failed(world: World) -> None:
    assert world.request_token().ok
    add_approved(world, 1)
    world.admin_post("/faults", {"target": "documents", "kind": "503", "count": 10})
    settings = world.settings.model_copy(update={"transfer_max_attempts": 2})
    options = PassOptions(trigger="scheduler", actor=process("scheduler:test"), only_auto_transfer=True)
    assert run_pass(world.engine, settings, world.keyring, options).retried == 1
    _due_now(world)
    assert run_pass(world.engine, settings, world.keyring, options).failed == 1
    with unit_of_work(world.engine) as s:
        document = s.exec(select(Document)).one()
        outcomes = [a.outcome for a in s.exec(select(TransferAttempt).order_by(col(TransferAttempt.id)))]
    assert document.status == DocumentStatus.failed.value and "Nach 2 Versuchen aufgegeben" in present(document.last_error)
    assert outcomes == ["retry", "failed"] and uploads(world) == []


def test_abandoned_claims_do_not_use_up_the_retries(world: World) -> None:
    assert world.request_token().ok
    [document_id] = add_approved(world, 1)
    for _ in range(2):  # two workers claimed it and died before answering
        assert claim(world.engine, world.company_id, "dead-worker", 60) is not None
        with unit_of_work(world.engine) as s:
            s.exec(update(Document).values(lease_until=utcnow() - timedelta(seconds=1)))
    world.admin_post("/faults", {"target": "documents", "kind": "503", "count": 1})
    settings = world.settings.model_copy(update={"transfer_max_attempts": 2})
    options = PassOptions(trigger="scheduler", actor=process("scheduler:test"), only_auto_transfer=True)
    assert run_pass(world.engine, settings, world.keyring, options).retried == 1  # 3 claims, 1 answered failure
    _due_now(world)
    assert run_pass(world.engine, settings, world.keyring, options).delivered == 1
    assert [u["guid"].lower() for u in uploads(world)] == [queries.get_documents(world.engine, [document_id])[0].guid]


def test_forbidden_pauses_the_company_until_a_new_token(world: World) -> None:
    assert world.request_token().ok
    add_approved(world, 3)
    world.admin_post("/datev/rights/remove", {"person": "max", "client_id": "455148-1"})
    summary = scheduler_pass(world)
    assert summary.uploads == 0 and "pausiert" in summary.waiting[world.company_id]
    with unit_of_work(world.engine) as s:
        company = present(s.get(Company, world.company_id))
        assert company.paused_at is not None and "455148-1" in present(company.paused_reason)
        assert {d.status for d in s.exec(select(Document))} == {DocumentStatus.approved.value}
    assert "pausiert" in scheduler_pass(world).waiting[world.company_id]  # stays paused, DATEV not asked again
    assert world.request_token(person="erika").ok  # a new token requested after the pause resumes it
    assert scheduler_pass(world).delivered == 3


def test_a_revoked_token_is_named_as_such_and_alarmed_in_the_same_pass(world: World) -> None:
    """After a revocation the pass says "Token widerrufen oder ungültig" (not "DATEV nicht erreichbar"),
    and the "Token ungültig" alarm is raised by that pass, not an hour later."""
    assert world.request_token().ok
    add_approved(world, 2)
    world.admin_post("/datev/grants/revoke", {"all": True})
    world.expire_access_token()  # the next use refreshes: DATEV answers invalid_grant
    summary = scheduler_pass(world)
    reason = summary.waiting[world.company_id]
    assert reason.startswith("Token widerrufen oder ungültig") and "nicht erreichbar" not in reason
    with unit_of_work(world.engine) as s:
        keys = [a.key for a in s.exec(select(AlarmSent)).all()]
    assert any(key.startswith("token_invalid:company:") for key in keys), keys


def test_a_401_mid_pass_with_a_dead_grant_is_named_and_nothing_says_it_will_be_retried(world: World) -> None:
    assert world.request_token().ok
    add_approved(world, 1)
    world.admin_post("/datev/grants/revoke", {"all": True})  # the access token dies now, the pass finds out
    summary = scheduler_pass(world)
    assert summary.uploads <= 1 and summary.retried == 0
    assert summary.waiting[world.company_id].startswith("Token widerrufen oder ungültig")
    with unit_of_work(world.engine) as s:
        outcomes = {a.outcome for a in s.exec(select(TransferAttempt)).all()}
    assert "retry" not in outcomes  # "wird wiederholt" would not be true: it waits for a new token


def test_a_manual_retry_without_automatic_transfer_waits_instead_of_promising_a_retry(world: World) -> None:
    assert world.request_token().ok
    with unit_of_work(world.engine) as s:
        s.exec(update(Company).where(col(Company.id) == world.company_id).values(auto_transfer=False))
    add_approved(world, 1)
    world.admin_post("/faults", {"target": "documents", "kind": "503", "count": 1})
    summary = run_pass(world.engine, world.settings, world.keyring, PassOptions(trigger="manual", actor=process("o@x.de")))
    assert (summary.retried, summary.waiting_documents) == (0, 1)
    with unit_of_work(world.engine) as s:
        attempt = s.exec(select(TransferAttempt)).one()
    assert attempt.outcome == "waiting" and "manuelle Übertragung" in present(attempt.error_text)
    assert OUTCOME_LABELS[attempt.outcome] == "fehlgeschlagen – wartet"


def test_lexware_accepting_without_a_readable_answer_is_unresolved_and_sent_once(world: World) -> None:
    with unit_of_work(world.engine) as s:
        lexware = s.exec(select(Company).where(Company.interface == "lexware")).one()
        lexware_id = id_of(lexware)
    assert store_lexware_key(world.engine, world.settings, world.keyring, company_id=lexware_id,
                             api_key="demo-lexware-key", valid_until=None, actor=process("admin@x.de")).ok
    [document_id] = add_approved(world, 1, company_id=lexware_id)
    world.admin_post("/faults", {"target": "lexware", "kind": "not_json", "count": 1})
    summary = run_pass(world.engine, world.settings, world.keyring, PassOptions(trigger="manual", actor=process("o@x.de")))
    assert summary.unresolved == 1
    assert queries.get_documents(world.engine, [document_id])[0].status == DocumentStatus.unresolved.value
    run_pass(world.engine, world.settings, world.keyring, PassOptions(trigger="manual", actor=process("o@x.de")))
    files = requests.get(world.emulator_url + "/_admin/lexware/files", timeout=5).json()
    assert len(files) == 1  # accepted once, never sent again
