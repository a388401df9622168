"""The document state machine (core.documents.lifecycle): one test per transition, on SQLite and
PostgreSQL, and the rule that nothing else is a transition."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, update
from sqlmodel import select

from core.documents import intake, lifecycle
from core.documents.lifecycle import TRANSITIONS, AfterAttempt, AttemptRecord, IllegalTransition
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError
from core.platform.models import Document, DocumentStatus, TransferAttempt, utcnow
from core.providers.outcome import Outcome
from core.users import process
from testkit.rows import id_of
from testkit.samples import pdf

S = DocumentStatus
OWNER = "worker-1"


def new_document(engine: Engine, company_id: int, name: str = "a.pdf") -> int:
    report = intake.intake(engine, company_id=company_id, actor=process("o@x.de"), files=[(name, pdf(name))])
    assert not report.rejected, report.rejected
    document_id = report.accepted[0].id
    assert document_id is not None
    return document_id


def status(engine: Engine, document_id: int) -> str | None:
    with unit_of_work(engine) as s:
        document = s.get(Document, document_id)
        return None if document is None else document.status


def claimed(engine: Engine, company_id: int, name: str = "a.pdf") -> lifecycle.Claimed:
    document_id = new_document(engine, company_id, name)
    assert lifecycle.approve(engine, document_ids=[document_id], actor=process("o@x.de")) == 1
    claim = lifecycle.claim(engine, company_id, OWNER, 60)
    assert claim is not None and claim.document.id == document_id
    return claim


def attempt(outcome: Outcome) -> AttemptRecord:
    return AttemptRecord(provider="datev", trigger="manual", triggered_by="o@x.de", started_at=utcnow(),
                         outcome=outcome, correlation_id="c", error_text="x")


def test_the_table_is_exactly_the_moves_this_module_makes() -> None:
    assert {(a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets} == {
        ("new", "approved"), ("approved", "transferring"), ("transferring", "delivered"),
        ("transferring", "failed"), ("transferring", "unresolved"), ("transferring", "approved"),
        ("transferring", "transferring"), ("failed", "approved"), ("unresolved", "delivered"),
        ("unresolved", "approved")}
    assert TRANSITIONS[S.delivered] == frozenset()


def test_an_illegal_move_is_refused_before_any_sql() -> None:
    with pytest.raises(IllegalTransition):
        lifecycle._move([S.delivered], S.approved)
    with pytest.raises(IllegalTransition):
        lifecycle._move([S.new], S.transferring)


def test_new_to_approved(engine: Engine, company_id: int) -> None:
    document_id = new_document(engine, company_id)
    assert lifecycle.approve(engine, document_ids=[document_id], actor=process("o@x.de")) == 1
    assert status(engine, document_id) == S.approved
    assert lifecycle.approve(engine, document_ids=[document_id], actor=process("o@x.de")) == 0  # only from new


def test_new_is_deleted_and_nothing_else_is(engine: Engine, company_id: int) -> None:
    document_id = new_document(engine, company_id)
    lifecycle.delete_unapproved(engine, document_id=document_id, actor=process("o@x.de"))
    assert status(engine, document_id) is None
    other = new_document(engine, company_id, "b.pdf")
    lifecycle.approve(engine, document_ids=[other], actor=process("o@x.de"))
    with pytest.raises(UserFacingError):
        lifecycle.delete_unapproved(engine, document_id=other, actor=process("o@x.de"))


def test_approved_to_transferring_by_a_claim(engine: Engine, company_id: int) -> None:
    claim = claimed(engine, company_id)
    assert status(engine, id_of(claim.document)) == S.transferring
    assert claim.document.lease_owner == OWNER and claim.document.attempts == 1 and not claim.taken_over
    assert lifecycle.claim(engine, company_id, "worker-2", 60) is None  # the lease holds


def test_a_claim_moves_exactly_one_document_and_reads_it_with_its_content(engine: Engine, company_id: int) -> None:
    ids = [new_document(engine, company_id, f"{n}.pdf") for n in range(3)]
    assert lifecycle.approve(engine, document_ids=ids, actor=process("o@x.de")) == 3
    with engine.connect() as conn:  # the transfer engine's way: one connection per worker
        first = lifecycle.claim(conn, company_id, OWNER, 60)
        with unit_of_work(engine) as s:
            moving = s.exec(select(Document.id).where(Document.status == S.transferring.value)).all()
        second = lifecycle.claim(conn, company_id, OWNER, 60, document_ids=[ids[2]])
    assert first is not None and first.document.id == ids[0] and moving == [ids[0]]
    assert first.content == pdf("0.pdf") and first.document.attempts == 1 and not first.taken_over
    assert second is not None and second.document.id == ids[2]


def test_transferring_to_transferring_when_an_expired_claim_is_taken_over(engine: Engine, company_id: int) -> None:
    claim = claimed(engine, company_id)
    with unit_of_work(engine) as s:
        s.exec(update(Document).values(lease_until=utcnow() - timedelta(seconds=1)))
    again = lifecycle.claim(engine, company_id, "worker-2", 60)
    assert again is not None and again.taken_over and again.document.id == claim.document.id
    assert again.document.lease_owner == "worker-2" and again.document.attempts == 2


@pytest.mark.parametrize(("after", "outcome", "expected"), [
    (AfterAttempt.delivered, Outcome.delivered, S.delivered),
    (AfterAttempt.failed, Outcome.failed, S.failed),
    (AfterAttempt.unresolved, Outcome.unresolved, S.unresolved),
    (AfterAttempt.retry_later, Outcome.retry, S.approved),
    (AfterAttempt.requeue, Outcome.retry, S.approved),
])
def test_transferring_to_the_attempts_outcome(engine: Engine, company_id: int, after: AfterAttempt,
                                              outcome: Outcome, expected: DocumentStatus) -> None:
    claim = claimed(engine, company_id)
    later = utcnow() + timedelta(minutes=5) if after == AfterAttempt.retry_later else None
    lifecycle.record_attempt(engine, claim, OWNER, after, attempt(outcome), last_error="x", next_attempt_at=later)
    with unit_of_work(engine) as s:
        document = s.get(Document, claim.document.id)
        rows = s.exec(select(TransferAttempt)).all()
    assert document is not None and document.status == expected and document.lease_owner is None
    assert [r.outcome for r in rows] == [outcome.value]
    if after == AfterAttempt.requeue:
        assert document.attempts == 0 and document.next_attempt_at is None  # not the document's fault
    if after == AfterAttempt.retry_later:
        assert document.next_attempt_at is not None and document.attempts == 1


def test_an_outcome_is_not_written_without_the_lease(engine: Engine, company_id: int) -> None:
    claim = claimed(engine, company_id)
    lifecycle.record_attempt(engine, claim, "somebody-else", AfterAttempt.delivered, attempt(Outcome.delivered))
    assert status(engine, id_of(claim.document)) == S.transferring


def test_transferring_back_to_approved_when_released(engine: Engine, company_id: int) -> None:
    claim = claimed(engine, company_id)
    lifecycle.release(engine, [claim], OWNER)
    with unit_of_work(engine) as s:
        document = s.get(Document, claim.document.id)
    assert document is not None and document.status == S.approved and document.attempts == 0


def test_failed_to_approved_by_an_operator(engine: Engine, company_id: int) -> None:
    claim = claimed(engine, company_id)
    lifecycle.record_attempt(engine, claim, OWNER, AfterAttempt.failed, attempt(Outcome.failed))
    lifecycle.retry_failed(engine, document_id=id_of(claim.document), actor=process("o@x.de"))
    assert status(engine, id_of(claim.document)) == S.approved


@pytest.mark.parametrize(("decision", "expected"), [("delivered", S.delivered), ("send_again", S.approved)])
def test_unresolved_decided_by_an_operator(engine: Engine, company_id: int, decision: str,
                                           expected: DocumentStatus) -> None:
    claim = claimed(engine, company_id)
    lifecycle.record_attempt(engine, claim, OWNER, AfterAttempt.unresolved, attempt(Outcome.unresolved))
    lifecycle.resolve_unresolved(engine, document_id=id_of(claim.document), actor=process("o@x.de"),
                                 decision=decision, reason="in Lexware geprüft")
    assert status(engine, id_of(claim.document)) == expected


def test_abandoned_claims_go_back_by_provider(engine: Engine, company_id: int) -> None:
    claim = claimed(engine, company_id)
    with unit_of_work(engine) as s:
        s.exec(update(Document).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert lifecycle.release_abandoned_claims(engine, utcnow(), lease_seconds=60, actor="scheduler:x") == 1
    assert status(engine, id_of(claim.document)) == S.approved  # DATEV: the PUT repeats safely
