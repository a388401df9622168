"""The transfer engine: one pass over the approved documents, for the scheduler and for manual
transfers alike.

A pass:
1. finds the companies that have due work (one grouped SQL query; nobody is contacted otherwise);
2. prepares each company once: a usable connection and token, DATEV's permission check
   (`GET /clients/{id}`) and document types, so reads stay few per upload (contract §2.8);
3. lets a pool of workers claim documents one at a time (conditional UPDATE with rowcount check,
   `FOR UPDATE SKIP LOCKED` on PostgreSQL, the claim committed at once), upload outside any
   transaction, and record the outcome and the attempt row in one short transaction.

A claim is a lease: a crashed worker's documents are taken over when the lease runs out. DATEV
uploads use `PUT …/documents/{guid}` with the GUID fixed at intake, so a repeat after a crash
answers 409 #DCO01012 and counts as delivered: never a second copy. Lexware has no idempotency: an
upload whose answer was lost becomes `unresolved` and is never sent again automatically.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests
from sqlalchemy import Engine, and_, delete, func, insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from core.connections.access import AccessToken, TokenUnavailable, get_valid_token, lease_owner_id, mark_invalid
from core.connections.health import USABLE, evaluate_health
from core.platform import audit
from core.platform.backoff import next_delay, parse_retry_after
from core.platform.config import Settings
from core.platform.crypto import Keyring, fingerprint
from core.platform.db import is_postgres, unit_of_work
from core.platform.models import (
    Company,
    Connection,
    ConnectionKind,
    Document,
    DocumentContent,
    DocumentStatus,
    DocumentTypeCache,
    HttpLogEntry,
    Interface,
    Provider,
    TransferAttempt,
    utcnow,
)
from core.platform.ratelimit import acquire
from core.providers.datev import DatevApiError, get_client, get_document_types
from core.providers.http import CallContext, provider_session
from core.providers.uploads import Outcome, UploadResult, upload_datev, upload_lexware

log = logging.getLogger(__name__)


@dataclass
class PassOptions:
    trigger: str  # "scheduler" | "manual"
    actor: str  # scheduler instance or the user's e-mail
    company_ids: Sequence[int] | None = None
    document_ids: Sequence[int] | None = None
    connection_slot: str = ConnectionKind.long_term.value  # manual one-off login: "one_off:<user id>"
    only_auto_transfer: bool = False  # the scheduler only serves companies with automatic transfer on
    owner: str | None = None  # lease owner; the scheduler passes its instance id to release claims on exit
    stop: threading.Event | None = None
    on_result: Callable[[DocumentResult], None] | None = None


@dataclass(frozen=True)
class DocumentResult:
    document_id: int
    company_id: int
    file_name: str
    outcome: str
    message: str
    help_uri: str | None = None


@dataclass
class PassSummary:
    started_at: datetime
    companies_with_work: int = 0
    companies_served: int = 0
    waiting: dict[int, str] = field(default_factory=dict)  # company id → why it waits
    reads: int = 0
    uploads: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    unresolved: int = 0
    duration_ms: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, outcome: str) -> None:
        with self._lock:
            self.uploads += 1
            if outcome == Outcome.delivered:
                self.delivered += 1
            elif outcome == Outcome.unresolved:
                self.unresolved += 1
            elif outcome == Outcome.failed:
                self.failed += 1
            else:
                self.retried += 1

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_") and k != "started_at"} | {
            "started_at": self.started_at.isoformat(), "waiting": {str(k): v for k, v in self.waiting.items()}}


def _due(now: datetime):  # type: ignore[no-untyped-def]
    """Documents a worker may claim now: approved and due, or in transfer with an expired lease."""
    return or_(
        and_(col(Document.status) == DocumentStatus.approved.value,
             or_(col(Document.next_attempt_at).is_(None), col(Document.next_attempt_at) <= now)),
        and_(col(Document.status) == DocumentStatus.transferring.value, col(Document.lease_until) < now),
    )


def companies_with_work(engine: Engine, options: PassOptions, now: datetime) -> dict[int, int]:
    query = select(Document.company_id, func.count()).where(_due(now)).group_by(Document.company_id)
    if options.document_ids is not None:
        query = query.where(col(Document.id).in_(options.document_ids))
    if options.company_ids is not None:
        query = query.where(col(Document.company_id).in_(options.company_ids))
    with unit_of_work(engine) as session:
        return {company_id: count for company_id, count in session.exec(query).all()}


@dataclass
class _CompanyRun:
    company: Company
    provider: Provider
    connection_id: int
    token: AccessToken
    client_id: str | None
    token_lock: threading.Lock = field(default_factory=threading.Lock)
    halted: threading.Event = field(default_factory=threading.Event)  # paused or token gone: stop uploading


def waiting_reason(company: Company, connection: Connection | None, settings: Settings, now: datetime) -> str | None:
    """Why approved documents of this company cannot flow now (None: they can)."""
    if company.archived_at is not None:
        return "Unternehmen archiviert"
    if company.interface == Interface.none.value:
        return "keine Schnittstelle eingerichtet"
    health = evaluate_health(connection, now, settings.token_expiry_warning_days)
    if health not in USABLE:
        return f"Token {health.value}"
    if company.paused_at is not None and (connection is None or connection.requested_at is None
                                          or connection.requested_at <= company.paused_at):
        return f"pausiert: {company.paused_reason or 'Zugriff verweigert'}"
    return None


def _pause(engine: Engine, company_id: int, reason: str, actor: str) -> None:
    now = utcnow()
    with unit_of_work(engine) as session:
        company = session.get(Company, company_id)
        if company is None or company.paused_at is not None:
            return
        company.paused_at, company.paused_reason, company.updated_at = now, reason[:500], now
        session.add(company)
        audit.record(session, actor=actor, action="company.paused", entity_type="company", entity_id=company_id,
                     after={"paused_reason": reason[:300]})


def resume(engine: Engine, company_id: int, actor: str) -> None:
    with unit_of_work(engine) as session:
        company = session.get(Company, company_id)
        if company is None or company.paused_at is None:
            return
        before = {"paused_reason": company.paused_reason}
        company.paused_at = company.paused_reason = None
        company.updated_at = utcnow()
        session.add(company)
        audit.record(session, actor=actor, action="company.resumed", entity_type="company", entity_id=company_id,
                     before=before)


def _prepare(engine: Engine, settings: Settings, keyring: Keyring, company_id: int, options: PassOptions,
             summary: PassSummary) -> _CompanyRun | None:
    now = utcnow()
    with unit_of_work(engine) as session:
        company = session.get(Company, company_id)
        if company is None:
            return None
        provider = company.provider
        connection = None
        if provider is not None:
            connection = session.exec(select(Connection).where(
                Connection.company_id == company_id, Connection.provider == provider.value,
                Connection.slot == options.connection_slot)).first()
        session.expunge_all()
    if options.only_auto_transfer and not company.auto_transfer:
        summary.waiting[company_id] = "automatische Übertragung ausgeschaltet"
        return None
    reason = waiting_reason(company, connection, settings, now)
    if reason is not None or provider is None or connection is None:
        summary.waiting[company_id] = reason or "keine Verbindung"
        return None
    try:
        token = get_valid_token(engine, connection.id, settings=settings, keyring=keyring)  # type: ignore[arg-type]
    except TokenUnavailable as exc:
        summary.waiting[company_id] = exc.message
        return None
    run = _CompanyRun(company, provider, connection.id, token, connection.bound_client or company.datev_client_id)  # type: ignore[arg-type]
    if provider == Provider.datev:
        return run if _check_datev_access(engine, settings, keyring, run, options, summary) else None
    return run


def _check_datev_access(engine: Engine, settings: Settings, keyring: Keyring, run: _CompanyRun,
                        options: PassOptions, summary: PassSummary) -> bool:
    """Permission check and document types, once per company and pass."""
    ctx = CallContext(provider="datev", purpose="permission_check", company_id=run.company.id,
                      connection_id=run.connection_id)
    for attempt in (1, 2):
        try:
            summary.reads += 1
            client = get_client(engine, ctx, settings, run.token.value, run.client_id)  # type: ignore[arg-type]
            summary.reads += 1
            types = get_document_types(engine, ctx.with_purpose("document_types"), settings, run.token.value,
                                       run.client_id)  # type: ignore[arg-type]
            break
        except DatevApiError as exc:
            if exc.status == 401 and attempt == 1 and _renew(engine, settings, keyring, run):
                continue
            if exc.status in (403, 404):
                reason = f"DATEV verweigert den Zugriff auf Mandant {run.client_id} ({exc.summary()})"
                _pause(engine, run.company.id, reason, options.actor)  # type: ignore[arg-type]
                summary.waiting[run.company.id] = f"pausiert: {reason}"  # type: ignore[index]
            else:
                summary.waiting[run.company.id] = f"DATEV nicht erreichbar: {exc.summary()}"  # type: ignore[index]
            return False
        except TokenUnavailable as exc:
            summary.waiting[run.company.id] = exc.message  # type: ignore[index]
            return False
    if client.get("is_document_management_available") is False:
        reason = f"Belege online ist für Mandant {run.client_id} nicht verfügbar"
        _pause(engine, run.company.id, reason, options.actor)  # type: ignore[arg-type]
        summary.waiting[run.company.id] = f"pausiert: {reason}"  # type: ignore[index]
        return False
    store_document_types(engine, run.company.id, types)  # type: ignore[arg-type]
    return True


def store_document_types(engine: Engine, company_id: int, types: list[dict]) -> None:
    now = utcnow()
    seen: set[str] = set()
    try:
        with unit_of_work(engine) as session:
            session.exec(delete(DocumentTypeCache).where(col(DocumentTypeCache.company_id) == company_id))  # type: ignore[call-overload]
            for item in types:
                name = str(item.get("name", ""))[:30]
                if name and name not in seen:
                    seen.add(name)
                    session.add(DocumentTypeCache(company_id=company_id, name=name, fetched_at=now,
                                                  category=(item.get("category") or None),
                                                  debit_credit=(item.get("debit_credit_identifier") or None)))
    except IntegrityError:
        # Another pass (another scheduler, a manual transfer) stored the same list at the same moment;
        # on PostgreSQL our DELETE did not see its fresh rows. The cache is theirs; the pass goes on.
        log.info("document types of company %s were stored concurrently by another pass", company_id)


def _renew(engine: Engine, settings: Settings, keyring: Keyring, run: _CompanyRun) -> bool:
    """After a 401: one refresh for everybody who saw the same token refused."""
    with run.token_lock:
        stale = run.token
        try:
            run.token = get_valid_token(engine, run.connection_id, settings=settings, keyring=keyring,
                                        stale_version=stale.version)
        except TokenUnavailable:
            return False
        return True


@dataclass(frozen=True)
class _Claimed:
    document: Document
    content: bytes
    taken_over: bool  # the claim of a worker that crashed or stalled had expired


# One document per claim: a claimed document must start its upload well within its lease. Claiming
# several at once made the later ones wait (behind the upload slots) while their leases ran, and with
# short leases another scheduler took them over (measured in tests/proof: claimed twice, delivered
# once thanks to the GUID, but a wasted upload each time).
CLAIM_BATCH = 1


def claim_batch(engine: Engine, company_id: int, owner: str, lease_seconds: int,
                document_ids: Sequence[int] | None = None, limit: int = CLAIM_BATCH) -> list[_Claimed]:
    """Claim up to `limit` due documents of the company (lease), committed at once."""
    now = utcnow()
    with unit_of_work(engine) as session:
        query = (select(Document.id, Document.status).where(col(Document.company_id) == company_id, _due(now))
                 .order_by(col(Document.id)).limit(limit + 5))
        if document_ids is not None:
            query = query.where(col(Document.id).in_(document_ids))
        if is_postgres(engine):
            query = query.with_for_update(skip_locked=True)
        won: dict[int, bool] = {}  # document id → taken over from an expired claim
        for document_id, status in session.exec(query).all():
            claimed = session.exec(  # type: ignore[call-overload]
                update(Document).where(col(Document.id) == document_id, _due(now)).values(
                    status=DocumentStatus.transferring.value, lease_owner=owner,
                    lease_until=now + timedelta(seconds=lease_seconds), attempts=col(Document.attempts) + 1,
                    updated_at=now)
            ).rowcount
            if claimed == 1:
                won[document_id] = status == DocumentStatus.transferring.value
                if len(won) == limit:
                    break
        if not won:
            return []
        documents = {d.id: d for d in session.exec(select(Document).where(col(Document.id).in_(won))).all()}
        contents = {c.document_id: bytes(c.data) for c in session.exec(
            select(DocumentContent).where(col(DocumentContent.document_id).in_(won))).all()}
        session.expunge_all()
        return [_Claimed(documents[i], contents[i], won[i]) for i in sorted(won)]


def claim_next(engine: Engine, company_id: int, owner: str, lease_seconds: int,
               document_ids: Sequence[int] | None = None) -> _Claimed | None:
    """Claim one due document of the company (lease), committed at once."""
    batch = claim_batch(engine, company_id, owner, lease_seconds, document_ids, limit=1)
    return batch[0] if batch else None


# A document whose claims keep being abandoned (its worker dies every time) still ends: after this many
# times the retry budget in claims, it fails instead of looping for ever.
ABANDONED_CLAIMS_FACTOR = 3


def _recorded_retries(engine: Engine, document_id: int) -> int:
    with unit_of_work(engine) as session:
        return int(session.exec(select(func.count()).select_from(TransferAttempt).where(
            col(TransferAttempt.document_id) == document_id, col(TransferAttempt.outcome) == Outcome.retry.value)).one())


def _record(engine: Engine, settings: Settings, claimed: _Claimed, owner: str, options: PassOptions,
            provider: Provider, result: UploadResult, started: datetime, correlation_id: str,
            log_entries: Sequence[HttpLogEntry] = ()) -> str:
    """Store the outcome on the document (if we still hold its lease), the attempt row and the
    upload's HTTP log lines, in one short transaction."""
    document = claimed.document
    now = utcnow()
    values: dict = {"lease_owner": None, "lease_until": None, "updated_at": now}
    outcome = result.outcome
    next_retry = None
    if outcome == Outcome.delivered:
        values |= {"status": DocumentStatus.delivered.value, "delivered_at": now, "remote_id": result.remote_id,
                   "last_error": None, "last_error_code": None, "last_help_uri": None, "next_attempt_at": None}
    elif outcome == Outcome.unresolved:
        values |= {"status": DocumentStatus.unresolved.value, "last_error": result.message[:500]}
    elif outcome == Outcome.failed:
        values |= {"status": DocumentStatus.failed.value, "last_error": result.message[:500],
                   "last_error_code": result.error_code, "last_help_uri": result.help_uri}
    elif outcome in (Outcome.forbidden, Outcome.unauthorized):
        # Not the document's fault: back to the queue, the attempt does not count.
        values |= {"status": DocumentStatus.approved.value, "attempts": max(0, document.attempts - 1),
                   "last_error": result.message[:500], "next_attempt_at": None}
        outcome = Outcome.retry
    else:  # retry with backoff, bounded by answered attempts (a crashed worker's claim does not count)
        failures = _recorded_retries(engine, document.id) + 1  # type: ignore[arg-type]
        if failures >= settings.transfer_max_attempts or document.attempts >= ABANDONED_CLAIMS_FACTOR * settings.transfer_max_attempts:
            outcome = Outcome.failed
            values |= {"status": DocumentStatus.failed.value,
                       "last_error": f"Nach {failures} Versuchen aufgegeben: {result.message}"[:500],
                       "last_error_code": result.error_code, "last_help_uri": result.help_uri}
        else:
            delay = next_delay(document.attempts, base=settings.retry_base_seconds, cap=settings.retry_cap_seconds,
                               retry_after=parse_retry_after(result.retry_after, now=now))
            next_retry = now + timedelta(seconds=delay)
            values |= {"status": DocumentStatus.approved.value, "next_attempt_at": next_retry,
                       "last_error": result.message[:500], "last_error_code": result.error_code}
    with unit_of_work(engine) as session:
        session.exec(update(Document).where(col(Document.id) == document.id,  # type: ignore[call-overload]
                                            col(Document.lease_owner) == owner).values(**values))
        # Core inserts: no ORM unit-of-work bookkeeping on the hot path.
        session.exec(insert(TransferAttempt).values(dict(
            document_id=document.id, company_id=document.company_id, provider=provider.value,  # type: ignore[arg-type]
            trigger=options.trigger, triggered_by=options.actor[:254], attempt_no=document.attempts,
            started_at=started, finished_at=now, outcome=outcome.value, http_status=result.http_status,
            error_code=result.error_code, error_text=(None if outcome == Outcome.delivered and not result.error_code
                                                      else result.message[:500]),
            help_uri=result.help_uri, global_transaction_id=result.global_transaction_id,
            request_id=result.request_id, remote_id=result.remote_id, next_retry_at=next_retry,
            correlation_id=correlation_id)))  # type: ignore[call-overload]
        if log_entries:
            session.exec(insert(HttpLogEntry), params=[e.model_dump(exclude={"id"}) for e in log_entries])  # type: ignore[call-overload]
    return outcome.value


def _lease_still_ours(engine: Engine, settings: Settings, claimed: _Claimed, owner: str) -> bool:
    """Before the upload: the lease must be ours with time for a whole call left; else extend it.

    A claimed document may wait for an upload slot. If its lease ran short meanwhile it is renewed;
    if another worker already took it over, this worker must not upload it.
    """
    call = timedelta(seconds=settings.http_connect_timeout_seconds + settings.http_read_timeout_seconds)
    lease_until = claimed.document.lease_until
    now = utcnow()
    if lease_until is not None and lease_until - now > call:
        return True
    with unit_of_work(engine) as session:
        return session.exec(update(Document).where(  # type: ignore[call-overload]
            col(Document.id) == claimed.document.id, col(Document.lease_owner) == owner,
            col(Document.status) == DocumentStatus.transferring.value).values(
            lease_until=now + max(call, timedelta(seconds=settings.transfer_lease_seconds)))).rowcount == 1


def _deliver_one(engine: Engine, settings: Settings, keyring: Keyring, run: _CompanyRun, claimed: _Claimed,
                 owner: str, options: PassOptions, http: requests.Session,
                 upload_slots: threading.BoundedSemaphore) -> tuple[str, UploadResult] | None:
    """Upload one claimed document and record the outcome. None: the company halted, nothing sent."""
    document = claimed.document
    correlation_id = uuid.uuid4().hex
    log_entries: list[HttpLogEntry] = []
    ctx = CallContext(provider=run.provider.value, purpose="upload", company_id=document.company_id,
                      connection_id=run.connection_id, correlation_id=correlation_id, sink=log_entries)
    started = utcnow()
    if run.provider == Provider.datev:
        # At most TRANSFER_CONCURRENCY uploads in flight; claims and records happen outside. A 401 is
        # renewed (and retried once) while the slot is still held, and a refusal halts the company
        # before the slot is given up, so refusals never exceed the uploads already in flight.
        with upload_slots:
            if run.halted.is_set() or not _lease_still_ours(engine, settings, claimed, owner):
                return None
            result = upload_datev(engine, ctx, settings, access_token=run.token.value, client_id=run.client_id,  # type: ignore[arg-type]
                                  document=document, content=claimed.content, session=http)
            if result.outcome == Outcome.unauthorized and _renew(engine, settings, keyring, run):
                result = upload_datev(engine, ctx, settings, access_token=run.token.value, client_id=run.client_id,  # type: ignore[arg-type]
                                      document=document, content=claimed.content, session=http)
            if result.outcome in (Outcome.unauthorized, Outcome.forbidden):
                run.halted.set()  # the company's other workers stop before their next upload
        if result.outcome == Outcome.forbidden:
            _pause(engine, document.company_id, result.message, options.actor)
    elif claimed.taken_over:
        # A Lexware upload was under way when its worker died: it may have arrived. Never re-send.
        result = UploadResult(Outcome.unresolved, "Die Übertragung an Lexware Office wurde unterbrochen; ob der "
                                                  "Beleg angekommen ist, ist unklar. Bitte in Lexware prüfen.")
    else:
        # Lexware's limit is per API key (two companies may share one): the slot is keyed by its fingerprint.
        acquire(engine, f"lexware:{fingerprint(run.token.value)}", settings.lexware_requests_per_second)
        with upload_slots:
            if run.halted.is_set() or not _lease_still_ours(engine, settings, claimed, owner):
                return None
            result = upload_lexware(engine, ctx, settings, api_key=run.token.value, document=document,
                                    content=claimed.content)
        if result.outcome == Outcome.unauthorized:
            run.halted.set()
            mark_invalid(engine, run.connection_id, expected_version=run.token.version,
                         reason="Lexware Office lehnt den API-Schlüssel ab (401).", actor=options.actor)
    outcome = _record(engine, settings, claimed, owner, options, run.provider, result, started, correlation_id,
                      log_entries)
    return outcome, result


def _drain(engine: Engine, settings: Settings, keyring: Keyring, run: _CompanyRun, options: PassOptions,
           summary: PassSummary, owner: str, stopped: Callable[[], bool],
           upload_slots: threading.BoundedSemaphore) -> None:
    base = settings.datev_documents_base if run.provider == Provider.datev else settings.lexware_base
    with provider_session(base) as http:  # one keep-alive connection per worker
        _drain_with(engine, settings, keyring, run, options, summary, owner, stopped, upload_slots, http)


def _drain_with(engine: Engine, settings: Settings, keyring: Keyring, run: _CompanyRun, options: PassOptions,
                summary: PassSummary, owner: str, stopped: Callable[[], bool],
                upload_slots: threading.BoundedSemaphore, http: requests.Session) -> None:
    batch: list[_Claimed] = []
    while True:
        if not batch:
            if stopped():
                return
            batch = claim_batch(engine, run.company.id, owner, settings.transfer_lease_seconds,  # type: ignore[arg-type]
                                options.document_ids, limit=1 if run.provider == Provider.lexware else CLAIM_BATCH)
            if not batch:
                return
        claimed = batch.pop(0)
        if stopped() or run.halted.is_set():  # give the rest back at once instead of letting leases run out
            _release(engine, [claimed, *batch], owner)
            return
        try:
            delivered = _deliver_one(engine, settings, keyring, run, claimed, owner, options, http, upload_slots)
            if delivered is None:  # halted, or the claim was lost while waiting for a slot: hand back the rest
                _release(engine, [claimed, *batch], owner)
                return
            outcome, result = delivered
        except Exception:  # noqa: BLE001  (one broken document must not stop the others)
            log.exception("transfer of document %s failed unexpectedly", claimed.document.id)
            result = UploadResult(Outcome.retry, "Interner Fehler bei der Übertragung; wird wiederholt.")
            outcome = _record(engine, settings, claimed, owner, options, run.provider, result, utcnow(),
                              uuid.uuid4().hex)
        summary.count(outcome)
        if options.on_result is not None:
            options.on_result(DocumentResult(claimed.document.id, claimed.document.company_id,  # type: ignore[arg-type]
                                             claimed.document.file_name, outcome, result.message, result.help_uri))
        if result.outcome in (Outcome.forbidden, Outcome.unauthorized):
            # Paused, or the token is gone (a refresh after the 401 did not help): the company's other
            # documents wait instead of each collecting its own refusal.
            summary.waiting[run.company.id] = result.message  # type: ignore[index]
            _release(engine, batch, owner)
            return


def run_pass(engine: Engine, settings: Settings, keyring: Keyring, options: PassOptions) -> PassSummary:
    """One pass over due documents. Safe to run in several processes at once."""
    summary = PassSummary(started_at=utcnow())
    owner = options.owner or f"{options.trigger}:{lease_owner_id()}"
    stopped = options.stop.is_set if options.stop is not None else (lambda: False)
    work = companies_with_work(engine, options, summary.started_at)
    summary.companies_with_work = len(work)
    if not work:
        summary.duration_ms = int((utcnow() - summary.started_at).total_seconds() * 1000)
        return summary
    # TRANSFER_CONCURRENCY uploads are in flight at once (the semaphore); a few more worker threads
    # claim and record meanwhile, so the upload slots never wait for the database.
    upload_slots = threading.BoundedSemaphore(settings.transfer_concurrency)
    workers_per_datev_company = 2 * settings.transfer_concurrency
    with ThreadPoolExecutor(max_workers=workers_per_datev_company, thread_name_prefix="transfer") as pool:
        futures = []
        for company_id, count in work.items():
            if stopped():
                break
            run = _prepare(engine, settings, keyring, company_id, options, summary)
            if run is None:
                continue
            summary.companies_served += 1
            workers = min(count, workers_per_datev_company if run.provider == Provider.datev else 1)
            futures += [pool.submit(_drain, engine, settings, keyring, run, options, summary, owner, stopped,
                                    upload_slots) for _ in range(workers)]
        for future in futures:
            future.result()
    summary.duration_ms = int((utcnow() - summary.started_at).total_seconds() * 1000)
    return summary


def _release(engine: Engine, claims: Sequence[_Claimed], owner: str) -> None:
    """Hand unstarted claims back: due again at once, the claim not counted as an attempt."""
    if not claims:
        return
    now = utcnow()
    with unit_of_work(engine) as session:
        for claimed in claims:
            session.exec(update(Document).where(  # type: ignore[call-overload]
                col(Document.id) == claimed.document.id, col(Document.lease_owner) == owner,
                col(Document.status) == DocumentStatus.transferring.value).values(
                status=DocumentStatus.approved.value if not claimed.taken_over else DocumentStatus.transferring.value,
                lease_owner=None, lease_until=now, attempts=claimed.document.attempts - 1, updated_at=now))


def release_claims(engine: Engine, owner: str) -> int:
    """On shutdown: make this process's unfinished claims available at once (lease expired now)."""
    now = utcnow()
    with unit_of_work(engine) as session:
        return session.exec(  # type: ignore[call-overload]
            update(Document).where(col(Document.status) == DocumentStatus.transferring.value,
                                   col(Document.lease_owner) == owner)
            .values(lease_until=now)
        ).rowcount or 0
