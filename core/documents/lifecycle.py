"""The one writer of a document's state machine: `Document.status` and its claim fields
(`lease_owner`, `lease_until`, `attempts`, `next_attempt_at`) change only here.

    new ──approve──► approved ──claim──► transferring ──record_attempt──► delivered
     │                 ▲   ▲                 │   │                     ► failed ──retry_failed──► approved
     └─delete (gone)   │   └─ requeue, ──────┘   └─────────────────────► unresolved (Lexware)
                       │      retry later,                                  │
                       │      release                                       │
                       └────────── resolve_unresolved (send again) ◄────────┘
                                   resolve_unresolved (delivered) ──► delivered

`TRANSITIONS` lists every legal move and `_move` refuses any other, so a new code path cannot
invent one. Every move is a conditional UPDATE whose WHERE clause names the source state (and, for
a claim, the lease owner): rowcount 1 wins, so two processes never both move one document.

A claim is a lease: `claim` sets `transferring`, the owner and `lease_until` and counts the
attempt, committed at once. A crashed worker's claim is taken over by the next `claim` once its
lease has run out (the transfer engine decides what that means per provider);
`release_abandoned_claims` (housekeeping) does the same for claims nobody took over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, func, insert, or_, update
from sqlmodel import col, select

from core.platform import audit
from core.platform.db import is_postgres, unit_of_work
from core.platform.errors import NotFound, UserFacingError, ValidationFailed
from core.platform.models import (
    Company,
    Document,
    DocumentContent,
    DocumentStatus,
    HttpLogEntry,
    Interface,
    Provider,
    Role,
    TransferAttempt,
    clip,
    utcnow,
)
from core.providers.outcome import Outcome
from core.users import Actor, authorize

S = DocumentStatus
TRANSITIONS: dict[DocumentStatus, frozenset[DocumentStatus]] = {
    S.new: frozenset({S.approved}),  # and deletion before approval
    S.approved: frozenset({S.transferring}),
    # an attempt's outcome; `transferring` again when an expired claim is taken over
    S.transferring: frozenset({S.delivered, S.failed, S.unresolved, S.approved, S.transferring}),
    S.failed: frozenset({S.approved}),  # an operator sends it again
    S.unresolved: frozenset({S.delivered, S.approved}),  # an operator checked Lexware
    S.delivered: frozenset(),
}
BATCH = 500
MAX_REASON_CHARS = 400
DECISIONS = {"delivered": "in Lexware vorhanden: als übertragen markiert",
             "send_again": "nicht angekommen: erneut senden"}
LEXWARE_INTERRUPTED = ("Die Übertragung an Lexware Office wurde unterbrochen; ob der Beleg angekommen ist, ist "
                       "unklar. Bitte in Lexware prüfen.")


class IllegalTransition(RuntimeError):
    """A code path asked for a move the state machine does not have (a bug, never user input)."""


def is_legal(source: DocumentStatus, target: DocumentStatus) -> bool:
    return target in TRANSITIONS[source]


def _move(sources: Sequence[DocumentStatus], target: DocumentStatus, *where: ColumnElement[bool],
          **values: Any) -> Any:
    """The UPDATE for a legal move from any of `sources` to `target` (the WHERE names the sources)."""
    for source in sources:
        if not is_legal(source, target):
            raise IllegalTransition(f"document status {source.value} → {target.value} is not a transition")
    return update(Document).where(col(Document.status).in_([s.value for s in sources]), *where).values(
        status=target.value, **values)


# --- before the transfer ------------------------------------------------------------------------


def approve(engine: Engine, *, document_ids: Sequence[int], actor: Actor) -> int:
    """Approve new documents, singly or in bulk (Bearbeiter and admins). Returns how many changed;
    others are left alone."""
    now = utcnow()
    changed = 0
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.operator)
        ids = session.exec(select(Document.id).where(col(Document.id).in_(document_ids),
                                                     Document.status == S.new.value)).all()
        for document_id in ids:
            moved = session.exec(_move([S.new], S.approved, col(Document.id) == document_id,
                                       approved_at=now, approved_by=actor.name, updated_at=now)).rowcount
            if moved != 1:
                continue
            audit.record(session, actor=actor.name, action="document.approved", entity_type="document",
                         entity_id=document_id, before={"status": "new"}, after={"status": "approved"})
            changed += 1
    return changed


def delete_unapproved(engine: Engine, *, document_id: int, actor: Actor) -> None:
    """Delete a document that was never approved (Bearbeiter and admins)."""
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.operator)
        document = session.get(Document, document_id)
        if document is None:
            raise UserFacingError("Diesen Beleg gibt es nicht (mehr).")
        if document.status != S.new.value:
            raise UserFacingError("Nur Belege im Status „neu“ können gelöscht werden.")
        content = session.get(DocumentContent, document_id)
        if content is not None:
            session.delete(content)
        session.flush()
        session.delete(document)
        audit.record(session, actor=actor.name, action="document.deleted", entity_type="document", entity_id=document_id,
                     before={"file_name": document.file_name, "sha256": document.sha256})


# --- claims -----------------------------------------------------------------------------------


def due(now: datetime) -> ColumnElement[bool]:
    """Documents a worker may claim now: approved and due, or in transfer with an expired lease."""
    return or_(
        and_(col(Document.status) == S.approved.value,
             or_(col(Document.next_attempt_at).is_(None), col(Document.next_attempt_at) <= now)),
        and_(col(Document.status) == S.transferring.value, col(Document.lease_until) < now),
    )


@dataclass(frozen=True)
class Claimed:
    document: Document
    content: bytes
    taken_over: bool  # the claim of a worker that crashed or stalled had expired


def claim(engine: Engine, company_id: int, owner: str, lease_seconds: int,
          document_ids: Sequence[int] | None = None) -> Claimed | None:
    """Claim one due document of the company (lease), committed at once.

    One document per claim: a claimed document must start its upload well within its lease.
    Claiming several at once made the later ones wait (behind the upload slots) while their
    leases ran, and with short leases another scheduler took them over (measured in tests/proof:
    claimed twice, delivered once thanks to the GUID, but a wasted upload each time).
    """
    now = utcnow()
    with unit_of_work(engine) as session:
        query = (select(Document.id, Document.status).where(col(Document.company_id) == company_id, due(now))
                 .order_by(col(Document.id)).limit(6))
        if document_ids is not None:
            query = query.where(col(Document.id).in_(document_ids))
        if is_postgres(engine):
            query = query.with_for_update(skip_locked=True)
        for document_id, status in session.exec(query).all():
            won = session.exec(
                _move([S.approved, S.transferring], S.transferring, col(Document.id) == document_id, due(now),
                      lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds),
                      attempts=col(Document.attempts) + 1, updated_at=now)
            ).rowcount
            if won != 1:
                continue
            document = session.get(Document, document_id)
            content = session.get(DocumentContent, document_id)
            assert document is not None and content is not None
            session.expunge_all()
            return Claimed(document, bytes(content.data), status == S.transferring.value)
        return None


def lease_still_ours(engine: Engine, claimed: Claimed, owner: str, *, needed: timedelta, extend_by: timedelta) -> bool:
    """Before the upload: the lease must be ours with `needed` time left; else it is extended.

    A claimed document may wait for an upload slot. If its lease ran short meanwhile it is renewed;
    if another worker already took it over, this worker must not upload it.
    """
    lease_until = claimed.document.lease_until
    now = utcnow()
    if lease_until is not None and lease_until - now > needed:
        return True
    with unit_of_work(engine) as session:
        return bool(session.exec(update(Document).where(
            col(Document.id) == claimed.document.id, col(Document.lease_owner) == owner,
            col(Document.status) == S.transferring.value).values(
            lease_until=now + max(needed, extend_by))).rowcount == 1)


def release(engine: Engine, claims: Sequence[Claimed], owner: str) -> None:
    """Hand unstarted claims back: due again at once, the claim not counted as an attempt.

    A claim taken over from a crashed worker stays `transferring` (its lease ends now), so the
    engine's take-over rule applies again to whoever claims it next.
    """
    if not claims:
        return
    now = utcnow()
    with unit_of_work(engine) as session:
        for claimed in claims:
            target = S.transferring if claimed.taken_over else S.approved
            session.exec(_move(
                [S.transferring], target, col(Document.id) == claimed.document.id,
                col(Document.lease_owner) == owner, lease_owner=None, lease_until=now,
                attempts=claimed.document.attempts - 1, updated_at=now))


def release_claims(engine: Engine, owner: str) -> int:
    """On shutdown: make this process's unfinished claims available at once (lease expired now)."""
    now = utcnow()
    with unit_of_work(engine) as session:
        return session.exec(
            update(Document).where(col(Document.status) == S.transferring.value,
                                   col(Document.lease_owner) == owner)
            .values(lease_until=now)
        ).rowcount or 0


# --- the outcome of an attempt ------------------------------------------------------------------


class AfterAttempt(StrEnum):
    """What an attempt does to the document (the engine decides, this module writes)."""

    delivered = "delivered"
    failed = "failed"
    unresolved = "unresolved"
    retry_later = "retry_later"  # back to approved, due at next_attempt_at
    requeue = "requeue"  # back to approved at once; the attempt does not count (not the document's fault)


@dataclass(frozen=True)
class AttemptRecord:
    """One row of the transfer history (TransferAttempt), written with the document's new state."""

    provider: str
    trigger: str
    triggered_by: str
    started_at: datetime
    outcome: Outcome
    correlation_id: str
    http_status: int | None = None
    error_code: str | None = None
    error_text: str | None = None
    help_uri: str | None = None
    global_transaction_id: str | None = None
    request_id: str | None = None
    remote_id: str | None = None


def answered_retries(engine: Engine, document_id: int) -> int:
    """Attempts of this document that ended in "retry" (a crashed worker's claim is not among them)."""
    with unit_of_work(engine) as session:
        return int(session.exec(select(func.count()).select_from(TransferAttempt).where(
            col(TransferAttempt.document_id) == document_id,
            col(TransferAttempt.outcome) == Outcome.retry.value)).one())


def record_attempt(engine: Engine, claimed: Claimed, owner: str, after: AfterAttempt, attempt: AttemptRecord, *,
                   last_error: str | None = None, next_attempt_at: datetime | None = None,
                   log_entries: Sequence[HttpLogEntry] = ()) -> None:
    """Store the attempt's effect on the document (if we still hold its lease), the attempt row and
    the upload's HTTP log lines, in one short transaction."""
    document = claimed.document
    now = utcnow()
    error = clip(Document.last_error, last_error)
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None, "updated_at": now}
    if after == AfterAttempt.delivered:
        target = S.delivered
        values |= {"delivered_at": now, "remote_id": attempt.remote_id, "last_error": None,
                   "last_error_code": None, "last_help_uri": None, "next_attempt_at": None}
    elif after == AfterAttempt.unresolved:
        target = S.unresolved
        values |= {"last_error": error}
    elif after == AfterAttempt.failed:
        target = S.failed
        values |= {"last_error": error, "last_error_code": attempt.error_code, "last_help_uri": attempt.help_uri}
    elif after == AfterAttempt.requeue:
        target = S.approved
        values |= {"attempts": max(0, document.attempts - 1), "last_error": error, "next_attempt_at": None}
    else:
        target = S.approved
        values |= {"next_attempt_at": next_attempt_at, "last_error": error, "last_error_code": attempt.error_code}
    with unit_of_work(engine) as session:
        session.exec(_move([S.transferring], target, col(Document.id) == document.id,
                           col(Document.lease_owner) == owner, **values))
        # Core inserts: no ORM unit-of-work bookkeeping on the hot path.
        session.exec(insert(TransferAttempt).values(
            document_id=document.id, company_id=document.company_id, provider=attempt.provider,
            trigger=attempt.trigger, triggered_by=clip(TransferAttempt.triggered_by, attempt.triggered_by),
            attempt_no=document.attempts, started_at=attempt.started_at, finished_at=now,
            outcome=attempt.outcome.value, http_status=attempt.http_status, error_code=attempt.error_code,
            error_text=clip(TransferAttempt.error_text, attempt.error_text), help_uri=attempt.help_uri,
            global_transaction_id=attempt.global_transaction_id, request_id=attempt.request_id,
            remote_id=attempt.remote_id, next_retry_at=next_attempt_at, correlation_id=attempt.correlation_id))
        if log_entries:
            session.exec(insert(HttpLogEntry), params=[e.model_dump(exclude={"id"}) for e in log_entries])


def release_abandoned_claims(engine: Engine, now: datetime, *, lease_seconds: int, actor: str) -> int:
    """Documents left "in Übertragung" by a worker that died (lease run out).

    DATEV documents go back to "freigegeben" and are claimable again (the PUT with the fixed GUID makes
    a repeat harmless). A Lexware upload may have arrived and Lexware has no idempotency, so such a
    document becomes "ungeklärt" (never re-sent automatically), exactly as the transfer engine does
    when it takes over such a claim.
    """
    with unit_of_work(engine) as session:
        rows = session.exec(
            select(Document, Company.interface).join(Company, col(Company.id) == col(Document.company_id))
            .where(col(Document.status) == S.transferring.value, col(Document.lease_until) < now)
            .limit(BATCH)).all()
        session.expunge_all()
    released = 0
    for document, interface in rows:
        document_id, lease_until, attempts, company_id = (document.id, document.lease_until, document.attempts,
                                                          document.company_id)
        lexware = interface == Interface.lexware.value
        values: dict[str, Any] = {"lease_owner": None, "lease_until": None, "updated_at": now}
        if lexware:
            target = S.unresolved
            values["last_error"] = LEXWARE_INTERRUPTED
        else:
            target = S.approved
            values["next_attempt_at"] = None
        with unit_of_work(engine) as session:
            changed = session.exec(_move(
                [S.transferring], target, col(Document.id) == document_id, col(Document.lease_until) < now,
                **values)).rowcount
            if changed != 1:  # claimed or finished meanwhile
                continue
            if lexware:
                assert lease_until is not None
                session.exec(insert(TransferAttempt).values(
                    document_id=document_id, company_id=company_id, provider=Provider.lexware.value,
                    trigger="scheduler", triggered_by=clip(TransferAttempt.triggered_by, actor), attempt_no=attempts,
                    started_at=lease_until - timedelta(seconds=lease_seconds), finished_at=now,
                    outcome=Outcome.unresolved.value, error_text=LEXWARE_INTERRUPTED,
                    correlation_id=f"housekeeping-{document_id}"))
            audit.record(session, actor=actor, action="document.claim_released", entity_type="document",
                         entity_id=document_id, after={"status": target.value})
            released += 1
    return released


# --- an operator's decisions afterwards -----------------------------------------------------------


def _reason(reason: str, *, required: bool) -> str:
    text = (reason or "").strip()
    if required and not text:
        raise ValidationFailed({"reason": "Bitte geben Sie einen Grund an (er steht im Audit-Protokoll)."})
    if len(text) > MAX_REASON_CHARS:
        raise ValidationFailed({"reason": f"Der Grund darf höchstens {MAX_REASON_CHARS} Zeichen lang sein."})
    return text


def retry_failed(engine: Engine, *, document_id: int, actor: Actor, reason: str = "") -> None:
    """A failed document goes back to `freigegeben` with its attempts reset (the next pass sends it);
    Bearbeiter and admins."""
    text = _reason(reason, required=False)
    now = utcnow()
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.operator)
        document = session.get(Document, document_id)
        if document is None:
            raise NotFound("Diesen Beleg gibt es nicht (mehr).")
        before = {"status": document.status, "attempts": document.attempts, "last_error": document.last_error}
        changed = session.exec(_move(
            [S.failed], S.approved, col(Document.id) == document_id, attempts=0, next_attempt_at=None,
            updated_at=now)).rowcount
        if changed != 1:
            raise UserFacingError("Nur fehlgeschlagene Belege können erneut übertragen werden.")
        audit.record(session, actor=actor.name, action="document.retry", entity_type="document", entity_id=document_id,
                     before=before, after={"status": S.approved.value, "attempts": 0, "reason": text},
                     detail=text or None)


def retry_failed_of_company(engine: Engine, *, company_id: int, actor: Actor) -> int:
    """Every failed document of one company back to `freigegeben` ("Erneut senden" on the overview), each
    through `retry_failed` (its own audit event). Returns how many went back; a document the pass or another
    person moved meanwhile is skipped. Bearbeiter and admins."""
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.operator)
        ids = session.exec(select(Document.id).where(col(Document.company_id) == company_id,
                                                     col(Document.status) == S.failed.value)
                           .order_by(col(Document.id))).all()
    moved = 0
    for document_id in ids:
        if document_id is None:
            continue
        try:
            retry_failed(engine, document_id=document_id, actor=actor)
            moved += 1
        except UserFacingError:  # NotFound included
            continue
    return moved


def resolve_unresolved(engine: Engine, *, document_id: int, actor: Actor, decision: str, reason: str) -> None:
    """A Bearbeiter or admin checked Lexware: mark the document delivered, or send it again. Reason required."""
    errors: dict[str, str] = {}
    if decision not in DECISIONS:
        errors["decision"] = "Bitte wählen Sie, ob der Beleg angekommen ist oder erneut gesendet wird."
    try:
        text = _reason(reason, required=True)
    except ValidationFailed as failure:
        errors |= failure.field_errors
    if errors:
        raise ValidationFailed(errors)
    now = utcnow()
    values: dict[str, Any]
    if decision == "delivered":
        target, values = S.delivered, {"delivered_at": now, "next_attempt_at": None}
    else:
        target, values = S.approved, {"attempts": 0, "next_attempt_at": None}
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.operator)
        document = session.get(Document, document_id)
        if document is None:
            raise NotFound("Diesen Beleg gibt es nicht (mehr).")
        before = {"status": document.status, "last_error": document.last_error}
        changed = session.exec(_move(
            [S.unresolved], target, col(Document.id) == document_id, **values, updated_at=now)).rowcount
        if changed != 1:
            raise UserFacingError("Nur ungeklärte Belege können so entschieden werden.")
        audit.record(session, actor=actor.name, action="document.resolved", entity_type="document",
                     entity_id=document_id, before=before,
                     after={"status": target.value, "decision": decision, "reason": text},
                     detail=f"{DECISIONS[decision]}: {text}")
