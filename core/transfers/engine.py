"""The transfer engine: one pass over the approved documents, for the scheduler and for manual
transfers alike.

A pass:
1. finds the companies that have due work (one grouped SQL query; nobody is contacted otherwise);
2. prepares each company once: a usable connection and token, DATEV's permission check
   (`GET /clients/{id}`) and document types, so reads stay few per upload (contract §2.8);
3. lets a pool of workers claim documents one at a time (conditional UPDATE with rowcount check,
   `FOR UPDATE SKIP LOCKED` on PostgreSQL, the claim committed at once), upload outside any
   transaction, and record the outcome, the attempt row and the upload's HTTP log lines in one short
   transaction. Each worker thread holds one database connection and one keep-alive HTTP connection
   for the pass (`worker_tools`); the claim and the outcome are statements built once
   (core.documents.lifecycle), so a document costs two short transactions and one HTTP call.

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
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func
from sqlmodel import col, select

from core.alarms.rules import raise_alarms_for
from core.connections import store as connection_store
from core.connections.access import AccessToken, TokenUnavailable, get_valid_token, lease_owner_id
from core.connections.health import datev_data_set
from core.documents import lifecycle
from core.documents.lifecycle import AfterAttempt, AttemptRecord, Claimed
from core.platform.backoff import next_delay, parse_retry_after
from core.platform.config import Settings
from core.platform.crypto import Keyring, fingerprint
from core.platform.db import unit_of_work
from core.platform.models import Company, Document, Provider, Role, utcnow
from core.platform.models import Connection as ConnectionRow
from core.platform.ratelimit import acquire
from core.providers.datev import DatevApiError, get_client, get_document_types, upload_datev
from core.providers.http import CallContext, KeepAliveClient
from core.providers.lexware import upload_lexware
from core.providers.outcome import Outcome, UploadResult
from core.transfers.document_types import store_document_types
from core.transfers.readiness import pause, waiting_reason
from core.users import Actor, authorized

log = logging.getLogger(__name__)

# A document whose claims keep being abandoned (its worker dies every time) still ends: after this many
# times the retry budget in claims, it fails instead of looping for ever.
ABANDONED_CLAIMS_FACTOR = 3
SETTLED = {Outcome.delivered: AfterAttempt.delivered, Outcome.failed: AfterAttempt.failed,
           Outcome.unresolved: AfterAttempt.unresolved}


@dataclass
class PassOptions:
    trigger: str  # "scheduler" | "manual"
    actor: Actor  # the scheduler instance (a process), or the user who started a manual transfer
    company_ids: Sequence[int] | None = None
    document_ids: Sequence[int] | None = None
    connection_slot: str = connection_store.LONG_TERM_SLOT  # manual one-off login: store.one_off_slot(user id)
    only_auto_transfer: bool = False  # the scheduler only serves companies with automatic transfer on
    owner: str | None = None  # lease owner; the scheduler passes its instance id to release claims on exit
    stop: threading.Event | None = None
    on_result: Callable[[DocumentResult], None] | None = None


@dataclass(frozen=True)
class DocumentResult:
    document_id: int
    company_id: int
    file_name: str
    outcome: Outcome
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
    waiting_documents: int = 0  # back in the queue, waiting for a person (no automatic retry)
    failed: int = 0
    unresolved: int = 0
    duration_ms: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, outcome: Outcome) -> None:
        with self._lock:
            self.uploads += 1
            if outcome == Outcome.delivered:
                self.delivered += 1
            elif outcome == Outcome.unresolved:
                self.unresolved += 1
            elif outcome == Outcome.failed:
                self.failed += 1
            elif outcome == Outcome.waiting:
                self.waiting_documents += 1
            else:
                self.retried += 1

    def finish(self) -> None:
        self.duration_ms = int((utcnow() - self.started_at).total_seconds() * 1000)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_") and k != "started_at"} | {
            "started_at": self.started_at.isoformat(), "waiting": {str(k): v for k, v in self.waiting.items()}}


def companies_with_work(engine: Engine, options: PassOptions, now: datetime) -> dict[int, int]:
    query = select(Document.company_id, func.count()).where(lifecycle.due(now)).group_by(col(Document.company_id))
    if options.document_ids is not None:
        query = query.where(col(Document.id).in_(options.document_ids))
    if options.company_ids is not None:
        query = query.where(col(Document.company_id).in_(options.company_ids))
    with unit_of_work(engine) as session:
        return {company_id: count for company_id, count in session.exec(query).all()}


@dataclass
class _CompanyRun:
    """One company within a pass: its token (shared by its workers) and whether it must stop."""

    company: Company
    company_id: int
    provider: Provider
    connection_id: int
    token: AccessToken
    client_id: str
    token_lock: threading.Lock = field(default_factory=threading.Lock)
    halted: threading.Event = field(default_factory=threading.Event)  # paused or token gone: stop uploading
    gone: TokenUnavailable | None = None  # why no new token could be had after a 401


@dataclass
class _Pass:
    """Everything one pass shares between its workers."""

    engine: Engine
    settings: Settings
    keyring: Keyring
    options: PassOptions
    summary: PassSummary
    owner: str
    # TRANSFER_CONCURRENCY uploads are in flight at once; more worker threads claim and record
    # meanwhile, so the upload slots never wait for the database.
    upload_slots: threading.BoundedSemaphore
    # Each worker thread's HTTP client and database connection, opened at its first drain and kept for the
    # pass: the pool's threads serve one company after another (12 companies: 12 drains per thread, not
    # 12 connections; on PostgreSQL a connection the pool does not keep is a new server process).
    _local: threading.local = field(default_factory=threading.local)
    _opened: list[tuple[KeepAliveClient, Connection]] = field(default_factory=list)
    _opened_lock: threading.Lock = field(default_factory=threading.Lock)

    def stopped(self) -> bool:
        return self.options.stop is not None and self.options.stop.is_set()

    def wait(self, company_id: int, reason: str) -> None:
        self.summary.waiting[company_id] = reason

    def token_gone(self, company_id: int, exc: TokenUnavailable) -> None:
        """The token cannot be used: the company waits; if this call found it broken, the alarm goes out now."""
        self.wait(company_id, exc.message)
        if exc.newly_invalid:
            raise_alarms_for(self.engine, self.settings, company_id)

    # --- per company, once per pass ---------------------------------------------------------------

    def prepare(self, company_id: int) -> _CompanyRun | None:
        now = utcnow()
        with unit_of_work(self.engine) as session:
            company = session.get(Company, company_id)
            if company is None:
                return None
            session.expunge(company)
        provider = company.provider
        connection: ConnectionRow | None = None
        if provider is not None:
            connection = connection_store.find(self.engine, company_id, provider, self.options.connection_slot)
        if self.options.only_auto_transfer and not company.auto_transfer:
            self.wait(company_id, "automatische Übertragung ausgeschaltet")
            return None
        reason = waiting_reason(company, connection, self.settings, now)
        if reason is not None or provider is None or connection is None or connection.id is None:
            self.wait(company_id, reason or "keine Verbindung")
            return None
        try:
            token = get_valid_token(self.engine, connection.id, settings=self.settings, keyring=self.keyring)
        except TokenUnavailable as exc:
            self.token_gone(company_id, exc)
            return None
        # Uploads always address the company's own data set (a token bound to another one waits: waiting_reason).
        run = _CompanyRun(company, company_id, provider, connection.id, token, datev_data_set(company))
        if provider == Provider.datev and not self.check_datev_access(run):
            return None
        return run

    def check_datev_access(self, run: _CompanyRun) -> bool:
        """Permission check and document types, once per company and pass."""
        ctx = CallContext(provider="datev", purpose="permission_check", company_id=run.company_id,
                          connection_id=run.connection_id)
        for attempt in (1, 2):
            try:
                self.summary.reads += 1
                client = get_client(self.engine, ctx, self.settings, run.token.value, run.client_id)
                self.summary.reads += 1
                types = get_document_types(self.engine, ctx.with_purpose("document_types"), self.settings,
                                           run.token.value, run.client_id)
                break
            except DatevApiError as exc:
                if exc.status == 401 and attempt == 1 and self.renew(run):
                    continue
                if exc.status == 401:  # refused, and a renewal did not help (or gave a token that is refused too)
                    if run.gone is None:
                        self.wait(run.company_id, "Token widerrufen oder ungültig: DATEV lehnt das Zugriffstoken "
                                                  "ab (401).")
                    return False
                if exc.status in (403, 404):
                    reason = f"DATEV verweigert den Zugriff auf Mandant {run.client_id} ({exc.summary()})"
                    pause(self.engine, run.company_id, reason, self.options.actor.name)
                    self.wait(run.company_id, f"pausiert: {reason}")
                else:
                    self.wait(run.company_id, f"DATEV nicht erreichbar: {exc.summary()}")
                return False
            except TokenUnavailable as exc:
                self.token_gone(run.company_id, exc)
                return False
        if client.get("is_document_management_available") is False:
            reason = f"Belege online ist für Mandant {run.client_id} nicht verfügbar"
            pause(self.engine, run.company_id, reason, self.options.actor.name)
            self.wait(run.company_id, f"pausiert: {reason}")
            return False
        store_document_types(self.engine, run.company_id, types)
        return True

    def renew(self, run: _CompanyRun) -> bool:
        """After a 401: one refresh for everybody who saw the same token refused. False: none to be had
        (why: `run.gone`, reported once, with the alarm if the token was found broken now)."""
        with run.token_lock:
            if run.gone is not None:
                return False
            stale = run.token
            try:
                run.token = get_valid_token(self.engine, run.connection_id, settings=self.settings,
                                            keyring=self.keyring, stale_version=stale.version)
            except TokenUnavailable as exc:
                run.gone = exc
                self.token_gone(run.company_id, exc)
                return False
            return True

    # --- per worker -----------------------------------------------------------------------------

    def worker_tools(self) -> tuple[KeepAliveClient, Connection]:
        """This worker thread's keep-alive HTTP client (DATEV uploads; Lexware's few calls per second go
        through upload_lexware's own session) and database connection, for the whole pass."""
        tools: tuple[KeepAliveClient, Connection] | None = getattr(self._local, "tools", None)
        if tools is None:
            http = KeepAliveClient(self.settings.datev_documents_base, self.settings)
            tools = self._local.tools = (http, lifecycle.worker_connection(self.engine))
            with self._opened_lock:
                self._opened.append(tools)
        return tools

    def close_workers(self) -> None:
        """At the end of the pass: every worker's connections closed (the database's back to the pool)."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for http, db in opened:
            try:
                http.close()
            finally:
                lifecycle.close_worker_connection(db)

    def drain(self, run: _CompanyRun) -> None:
        """One worker: claim, upload and record documents of the company until none is due."""
        http, db = self.worker_tools()
        while not self.stopped():
            claimed = lifecycle.claim(db, run.company_id, self.owner, self.settings.transfer_lease_seconds,
                                      self.options.document_ids)
            if claimed is None:
                return
            if run.halted.is_set() or self.stopped():  # give it back at once instead of letting the lease run out
                lifecycle.release(self.engine, [claimed], self.owner)
                return
            if not self.work_on(run, claimed, http, db):
                return

    def work_on(self, run: _CompanyRun, claimed: Claimed, http: KeepAliveClient, db: Connection) -> bool:
        """Deliver one claimed document; False when the company's worker should stop."""
        try:
            delivered = self.deliver_one(run, claimed, http, db)
            if delivered is None:  # halted, or the claim was lost while waiting for a slot: hand it back
                lifecycle.release(self.engine, [claimed], self.owner)
                return False
            outcome, result = delivered
        except Exception:  # one broken document must not stop the others
            log.exception("transfer of document %s failed unexpectedly", claimed.document.id)
            result = UploadResult(Outcome.retry, "Interner Fehler bei der Übertragung; wird wiederholt.")
            outcome = self.record(run, claimed, result, utcnow(), uuid.uuid4().hex, db=db)
        self.summary.count(outcome)
        if self.options.on_result is not None:
            document = claimed.document
            self.options.on_result(DocumentResult(document.id, document.company_id, document.file_name, outcome,
                                                  result.message, result.help_uri))
        if result.outcome in (Outcome.forbidden, Outcome.unauthorized):
            # Paused, or the token is gone (a refresh after the 401 did not help): the company's other
            # documents wait instead of each collecting its own refusal.
            self.wait(run.company_id, result.message)
            return False
        return True

    def lease_still_ours(self, claimed: Claimed) -> bool:
        settings = self.settings  # the upload ends at its deadline: the lease must outlast that
        return lifecycle.lease_still_ours(self.engine, claimed, self.owner,
                                          needed=timedelta(seconds=settings.http_deadline_seconds),
                                          extend_by=timedelta(seconds=settings.transfer_lease_seconds))

    def deliver_one(self, run: _CompanyRun, claimed: Claimed, http: KeepAliveClient,
                    db: Connection) -> tuple[Outcome, UploadResult] | None:
        """Upload one claimed document and record the outcome. None: the company halted, nothing sent."""
        engine, settings = self.engine, self.settings
        document = claimed.document
        correlation_id = uuid.uuid4().hex
        log_entries: list[dict[str, Any]] = []
        ctx = CallContext(provider=run.provider.value, purpose="upload", company_id=document.company_id,
                          connection_id=run.connection_id, correlation_id=correlation_id, sink=log_entries)
        started = utcnow()
        if run.provider == Provider.datev:
            # At most TRANSFER_CONCURRENCY uploads in flight; claims and records happen outside. A 401 is
            # renewed (and retried once) while the slot is still held, and a refusal halts the company
            # before the slot is given up, so refusals never exceed the uploads already in flight.
            with self.upload_slots:
                if run.halted.is_set() or not self.lease_still_ours(claimed):
                    return None
                result = upload_datev(engine, ctx, settings, access_token=run.token.value, client_id=run.client_id,
                                      document=document, content=claimed.content, client=http)
                if result.outcome == Outcome.unauthorized and self.renew(run):
                    result = upload_datev(engine, ctx, settings, access_token=run.token.value,
                                          client_id=run.client_id, document=document, content=claimed.content,
                                          client=http)
                if result.outcome in (Outcome.unauthorized, Outcome.forbidden):
                    run.halted.set()  # the company's other workers stop before their next upload
                if result.outcome == Outcome.unauthorized:
                    reason = run.gone.message if run.gone is not None else "DATEV lehnt das Zugriffstoken ab (401)"
                    result = replace(result, message=f"Token widerrufen oder ungültig: {reason}")
            if result.outcome == Outcome.forbidden:
                pause(engine, document.company_id, result.message, self.options.actor.name)
                raise_alarms_for(engine, settings, run.company_id)
        elif claimed.taken_over:
            # A Lexware upload was under way when its worker died: it may have arrived. Never re-send.
            result = UploadResult(Outcome.unresolved, lifecycle.LEXWARE_INTERRUPTED)
        else:
            # Lexware's limit is per API key (two companies may share one): the slot is keyed by its fingerprint.
            acquire(engine, f"lexware:{fingerprint(run.token.value)}", settings.lexware_requests_per_second)
            with self.upload_slots:
                if run.halted.is_set() or not self.lease_still_ours(claimed):
                    return None
                result = upload_lexware(engine, ctx, settings, api_key=run.token.value, document=document,
                                        content=claimed.content)
            if result.outcome == Outcome.unauthorized:
                run.halted.set()
                if connection_store.mark_invalid(engine, run.connection_id, expected_version=run.token.version,
                                                 reason="Lexware Office lehnt den API-Schlüssel ab (401).",
                                                 actor=self.options.actor.name):
                    raise_alarms_for(engine, settings, run.company_id)  # found broken now: the alarm goes out now
        return self.record(run, claimed, result, started, correlation_id, log_entries, db=db), result

    def record(self, run: _CompanyRun, claimed: Claimed, result: UploadResult, started: datetime,
               correlation_id: str, log_entries: Sequence[dict[str, Any]] = (), *, db: Connection) -> Outcome:
        """Decide what the answer means for the document (the retry policy), then let the document's
        lifecycle store it with the attempt row. Returns the outcome recorded in the history."""
        settings, document = self.settings, claimed.document
        outcome, last_error, next_attempt_at = result.outcome, result.message, None
        history_text = result.message
        if outcome in (Outcome.forbidden, Outcome.unauthorized):
            # Not the document's fault: back to the queue, the attempt does not count, and nothing sends it
            # before a person acts (a new token or key, resuming the company).
            after, outcome = AfterAttempt.requeue, Outcome.waiting
            needed = "ein neues Token" if result.outcome == Outcome.unauthorized else "die Freigabe des Zugriffs"
            history_text = f"{result.message} – wartet auf {needed}"
        elif outcome == Outcome.retry:  # bounded by answered attempts (a crashed worker's claim does not count)
            failures = lifecycle.answered_retries(self.engine, document.id) + 1
            if (failures >= settings.transfer_max_attempts
                    or document.attempts >= ABANDONED_CLAIMS_FACTOR * settings.transfer_max_attempts):
                after, outcome = AfterAttempt.failed, Outcome.failed
                last_error = f"Nach {failures} Versuchen aufgegeben: {result.message}"
            else:
                now = utcnow()
                delay = next_delay(document.attempts, base=settings.retry_base_seconds, cap=settings.retry_cap_seconds,
                                   retry_after=parse_retry_after(result.retry_after, now=now))
                after, next_attempt_at = AfterAttempt.retry_later, now + timedelta(seconds=delay)
                if not run.company.auto_transfer:  # no scheduler sends it: "wird wiederholt" would not be true
                    outcome = Outcome.waiting
                    history_text = f"{result.message} – wartet auf die nächste manuelle Übertragung"
        else:
            after = SETTLED[outcome]
        attempt = AttemptRecord(
            provider=run.provider.value, trigger=self.options.trigger, triggered_by=self.options.actor.name,
            started_at=started, outcome=outcome, correlation_id=correlation_id, http_status=result.http_status,
            error_code=result.error_code,
            error_text=None if outcome == Outcome.delivered and not result.error_code else history_text,
            help_uri=result.help_uri, global_transaction_id=result.global_transaction_id,
            request_id=result.request_id, remote_id=result.remote_id)
        lifecycle.record_attempt(db, claimed, self.owner, after, attempt, last_error=last_error,
                                 next_attempt_at=next_attempt_at, log_entries=log_entries)
        return outcome


def run_pass(engine: Engine, settings: Settings, keyring: Keyring, options: PassOptions) -> PassSummary:
    """One pass over due documents. Safe to run in several processes at once. A user's manual transfer
    needs the role Bearbeiter (checked here too, not only by the page)."""
    authorized(engine, options.actor, Role.operator)
    current = _Pass(engine, settings, keyring, options, PassSummary(started_at=utcnow()),
                    owner=options.owner or f"{options.trigger}:{lease_owner_id()}",
                    upload_slots=threading.BoundedSemaphore(settings.transfer_concurrency))
    work = companies_with_work(engine, options, current.summary.started_at)
    current.summary.companies_with_work = len(work)
    workers_per_datev_company = 2 * settings.transfer_concurrency
    if work:
        try:
            with ThreadPoolExecutor(max_workers=workers_per_datev_company, thread_name_prefix="transfer") as pool:
                futures = []
                for company_id, count in work.items():
                    if current.stopped():
                        break
                    run = current.prepare(company_id)
                    if run is None:
                        continue
                    current.summary.companies_served += 1
                    workers = min(count, workers_per_datev_company if run.provider == Provider.datev else 1)
                    futures += [pool.submit(current.drain, run) for _ in range(workers)]
                for future in futures:
                    future.result()
        finally:
            current.close_workers()  # after the pool's threads ended (or, on an error, once they have)
    current.summary.finish()
    return current.summary
