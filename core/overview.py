"""The Übersicht (overview): token health of every company at a glance, the companies that need a
person today, and the facts behind one company's page.

Read-only data functions returning dataclasses; the pages only render them. Every judgement comes
from the module that owns it: the token's health and binding from `core.connections.health`
(`evaluate_health`, `evaluate_binding`), why documents wait from `core.transfers.readiness.waiting_reason`
(the rule the transfer engine applies), the days left from `core.alarms.rules.days_left` (the rule the
expiry reminders count with). Nothing here repeats one of those rules.

Speed at 1,000 companies and a million documents: one query for the companies, one for their
long-term connections, one grouped count per (company, status) over ix_document_company_status,
one grouped max over the delivered attempts, one count of recent failures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Engine, func
from sqlmodel import col, select

from core.alarms.rules import days_left
from core.alarms.views import delivery_state
from core.companies import INTERFACE_LABELS
from core.connections import store
from core.connections.health import (
    USABLE,
    Binding,
    Health,
    TokenCard,
    evaluate_binding,
    evaluate_health,
    token_cards,
)
from core.documents.queries import STATUS_LABELS
from core.logs import AuditFilter, audit_events
from core.platform.config import Settings
from core.platform.db import unit_of_work
from core.platform.errors import NotFound
from core.platform.models import (
    AlarmSent,
    Company,
    Connection,
    Document,
    DocumentStatus,
    Interface,
    Provider,
    Role,
    TransferAttempt,
    shown_data_set,
    utcnow,
)
from core.platform.timefmt import format_date, format_local
from core.providers.outcome import Outcome
from core.transfers import history
from core.transfers.history import HistoryFilter, HistoryRow
from core.transfers.readiness import waiting_reason

FAILED_OUTCOMES = (Outcome.failed.value, Outcome.waiting.value)
RECENT_FAILURE_DAYS = 7


class State(StrEnum):
    """A company's state on the overview's tiles and in its table: the token's health, except that a
    usable DATEV token bound to another data set shows "fremder Datenbestand", a usable token of a paused
    company "pausiert" and a usable DATEV token without binding "nicht gebunden"."""

    active = Health.active.value
    expiring = Health.expiring.value
    unclear = Health.unclear.value
    expired = Health.expired.value
    invalid = Health.invalid.value
    revoked = Health.revoked.value
    missing = Health.missing.value
    unbound = Binding.unbound.value
    foreign = Binding.foreign.value  # the token names another data set: not used (readiness.waiting_reason)
    paused = "pausiert"
    no_interface = "keine Schnittstelle"


# The tiles, in the order the issue names them (Erneuerung unklar and keine Schnittstelle only when present).
TILE_STATES = (State.active, State.expiring, State.expired, State.invalid, State.revoked, State.missing,
               State.unbound, State.paused)
OPTIONAL_TILE_STATES = (State.unclear, State.foreign, State.no_interface)


class Action(StrEnum):
    """What fixes a company's problem; the page offers it to roles that may (`ACTION_ROLES`)."""

    request_token = "Langzeittoken anfordern"
    store_key = "API-Schlüssel hinterlegen"
    replace_key = "API-Schlüssel ersetzen"
    clarify_refresh = "Erneuerung klären"
    resume = "Fortsetzen"
    retry_failed = "Erneut senden"
    resolve = "Ungeklärte Belege prüfen"
    set_interface = "Schnittstelle einrichten"


ACTION_ROLES = {Action.request_token: Role.admin, Action.store_key: Role.admin, Action.replace_key: Role.admin, Action.clarify_refresh: Role.admin,
                Action.resume: Role.operator, Action.retry_failed: Role.operator, Action.resolve: Role.operator,
                Action.set_interface: Role.admin}


@dataclass(frozen=True)
class CompanyRow:
    """One company as the overview's table shows it."""

    company_id: int
    name: str
    interface: str  # German label
    state: State
    health: Health | None  # None: no interface
    bound_data_set: str  # "455148–1", "nicht gebunden", "fremd: …", "–"
    grantor_name: str | None  # DATEV user / Lexware organisation
    valid_until: datetime | None
    days_left: int | None
    last_refresh_at: datetime | None
    last_delivered_at: datetime | None
    waiting: int  # approved documents
    failed: int  # documents in state failed
    unresolved: int
    reason: str | None  # readiness.waiting_reason: why approved documents cannot flow (None: they can)
    paused_reason: str | None
    invalid_reason: str | None
    refresh_unclear_since: datetime | None
    client_id: str | None = None  # the company's own Berater-Nr.-Mandanten-Nr. (DATEV), as stored: "455148-1"

    @property
    def can_transfer(self) -> str:
        """The table's "kann übertragen / warum nicht" column."""
        return "ja" if self.reason is None else f"nein: {self.reason}"


@dataclass(frozen=True)
class TodoItem:
    """A company that needs a person, with its one reason, what explains it, and what fixes it."""

    company_id: int
    name: str
    reason: str
    explanation: str
    action: Action
    rank: tuple[int, int, int, str]  # smaller is more urgent

    @property
    def min_role(self) -> Role:
        return ACTION_ROLES[self.action]


@dataclass(frozen=True)
class Overview:
    rows: list[CompanyRow]
    todo: list[TodoItem]
    tiles: dict[State, int]
    waiting: int  # approved documents in all companies
    failed_recently: int  # failed attempts in the last RECENT_FAILURE_DAYS days

    def tile_states(self) -> list[State]:
        return [*TILE_STATES, *(s for s in OPTIONAL_TILE_STATES if self.tiles.get(s))]


def company_state(company: Company, health: Health | None, binding: Binding, reason: str | None) -> State:
    """The one mapping from health, binding and the waiting reason to the overview's state."""
    if health is None:
        return State.no_interface
    if health not in USABLE:
        return State(health.value)
    if binding == Binding.foreign:
        return State.foreign
    if reason is not None and company.paused_at is not None:
        return State.paused
    if binding == Binding.unbound:
        return State.unbound
    return State(health.value)


def _bound_data_set(binding: Binding, connection: Connection | None) -> str:
    if binding == Binding.bound and connection is not None:
        return shown_data_set(connection.bound_client)
    if binding == Binding.foreign and connection is not None:
        return "fremd: " + shown_data_set(connection.bound_client)
    return binding.value


def _document_counts(engine: Engine, company_ids: Sequence[int] | None) -> dict[int, dict[str, int]]:
    """Documents per company in the states the overview counts: one grouped query per state, each a range
    of ix_document_company_status (an IN over the states made SQLite scan the whole index: 0.1 s at a
    million documents, 4 ms per state this way)."""
    counts: dict[int, dict[str, int]] = {}
    with unit_of_work(engine) as session:
        for status in (DocumentStatus.approved.value, DocumentStatus.failed.value, DocumentStatus.unresolved.value):
            query = (select(Document.company_id, func.count()).where(col(Document.status) == status)
                     .group_by(col(Document.company_id)))
            if company_ids is not None:
                query = query.where(col(Document.company_id).in_(company_ids))
            for company_id, n in session.exec(query).all():
                counts.setdefault(company_id, {})[status] = n
    return counts


def _last_delivered(engine: Engine, company_ids: Sequence[int] | None) -> dict[int, datetime]:
    """When each company's last delivering attempt started: per company the newest delivered attempt, found
    backwards on ix_attempt_company_started (a grouped max over every delivered attempt took 60 ms at
    100,000 attempts; this takes 9 ms)."""
    newest = (select(TransferAttempt.started_at)
              .where(col(TransferAttempt.company_id) == col(Company.id),
                     col(TransferAttempt.outcome) == Outcome.delivered.value)
              .order_by(col(TransferAttempt.started_at).desc()).limit(1).scalar_subquery())
    query = select(Company.id, newest).where(col(Company.archived_at).is_(None))
    if company_ids is not None:
        query = query.where(col(Company.id).in_(company_ids))
    with unit_of_work(engine) as session:
        return {company_id: at for company_id, at in session.exec(query).all() if company_id is not None and at}


def failed_attempts_since(engine: Engine, since: datetime) -> int:
    with unit_of_work(engine) as session:
        return int(session.exec(select(func.count()).select_from(TransferAttempt).where(
            col(TransferAttempt.outcome).in_(FAILED_OUTCOMES), col(TransferAttempt.started_at) >= since)).one())


def company_rows(engine: Engine, settings: Settings, *, company_ids: Sequence[int] | None = None,
                 now: datetime | None = None) -> list[CompanyRow]:
    """The table rows of every active company (or of the given ones), by name."""
    now = now or utcnow()
    with unit_of_work(engine) as session:
        query = select(Company).where(col(Company.archived_at).is_(None)).order_by(col(Company.name), col(Company.id))
        if company_ids is not None:
            query = query.where(col(Company.id).in_(company_ids))
        companies = session.exec(query).all()
        session.expunge_all()
    ids = [c.id for c in companies if c.id is not None]
    connections = store.in_slot(engine, store.LONG_TERM_SLOT, ids if company_ids is not None else None)
    counts = _document_counts(engine, company_ids)
    delivered = _last_delivered(engine, company_ids)
    rows = []
    for company in companies:
        assert company.id is not None
        provider = company.provider
        connection = connections.get((company.id, provider.value)) if provider is not None else None
        health = evaluate_health(connection, now, settings.token_expiry_warning_days) if provider else None
        binding = evaluate_binding(company, connection)
        reason = waiting_reason(company, connection, settings, now)
        has_token = connection is not None and connection.has_token
        valid_until = connection.refresh_expires_at if has_token and connection is not None else None
        n = counts.get(company.id, {})
        rows.append(CompanyRow(
            company_id=company.id, name=company.name,
            interface=INTERFACE_LABELS.get(Interface(company.interface), company.interface),
            state=company_state(company, health, binding, reason), health=health,
            bound_data_set=_bound_data_set(binding, connection),
            grantor_name=connection.grantor_name if has_token and connection is not None else None,
            valid_until=valid_until,
            days_left=days_left(valid_until, now, settings.display_timezone) if valid_until is not None else None,
            last_refresh_at=connection.last_refresh_at if connection is not None else None,
            last_delivered_at=delivered.get(company.id),
            waiting=n.get(DocumentStatus.approved.value, 0), failed=n.get(DocumentStatus.failed.value, 0),
            unresolved=n.get(DocumentStatus.unresolved.value, 0), reason=reason, paused_reason=company.paused_reason,
            invalid_reason=connection.invalid_reason if connection is not None else None,
            refresh_unclear_since=connection.refresh_unclear_since if connection is not None else None,
            client_id=company.datev_client_id,
        ))
    return rows


def company_states(engine: Engine, settings: Settings, *, now: datetime | None = None) -> dict[int, State]:
    """Every active company's state as the Übersicht's table shows it (`company_state`), without the table's
    document counts and last deliveries (the Unternehmen list shows the state only)."""
    now = now or utcnow()
    states: dict[int, State] = {}
    for card in token_cards(engine, settings, now=now):  # the companies with an interface
        assert card.company.id is not None
        reason = waiting_reason(card.company, card.connection, settings, now)
        states[card.company.id] = company_state(card.company, card.health, card.binding, reason)
    return states


def _documents(n: int, what: str) -> str:
    return f"1 Beleg {what}" if n == 1 else f"{n} Belege {what.replace('wartet', 'warten')}"


def _renew_action(row: CompanyRow) -> Action:
    if row.interface != INTERFACE_LABELS[Interface.lexware]:
        return Action.request_token
    return Action.store_key if row.health in (None, Health.missing) else Action.replace_key


def _refusal(reason: str | None) -> str:
    """The invalid token's reason as one sentence: the provider's own sentence as it is ("DATEV hat das
    Token abgelehnt: …"), a bare code after "Der Anbieter hat das Token abgelehnt"."""
    if reason and "abgelehnt" in reason:
        return reason.rstrip(". ") + "."
    return f"Der Anbieter hat das Token abgelehnt{': ' + reason.rstrip('. ') if reason else ''}."


def todo_item(row: CompanyRow) -> TodoItem | None:
    """The company's one most urgent need, or None when nobody has to do anything."""
    waiting = _documents(row.waiting, "wartet") if row.waiting else "Keine Belege warten"
    if row.reason is not None:
        if row.state == State.no_interface:
            if not row.waiting:
                return None  # a company without an interface needs nobody until documents wait for it
            return TodoItem(row.company_id, row.name, row.reason, f"{waiting}.", Action.set_interface,
                            (0, -row.waiting, 0, row.name))
        if row.state == State.paused:
            why = f"{waiting}. Fortsetzen, sobald die Ursache behoben ist; der nächste Lauf prüft erneut."
            return TodoItem(row.company_id, row.name, row.reason, why, Action.resume, (0, -row.waiting, 0, row.name))
        detail = {
            Health.invalid: _refusal(row.invalid_reason),
            Health.expired: f"Abgelaufen am {format_date(row.valid_until)}.",
            Health.revoked: "Der API-Schlüssel wurde gelöscht." if row.interface == INTERFACE_LABELS[Interface.lexware]
            else "Das Langzeittoken wurde gelöscht oder widerrufen.",
            Health.missing: "Es wurde noch keiner hinterlegt." if row.interface == INTERFACE_LABELS[Interface.lexware]
            else "Es wurde noch keins angefordert.",
        }.get(row.health or Health.missing, "")
        # Documents that cannot flow first; then a token that broke or ran out (it stops the next document, ahead
        # of one that merely expires soon); a company that never had one, or whose token was deleted, last.
        tier = 0 if row.waiting else (1 if row.health in (Health.invalid, Health.expired) else 3)
        return TodoItem(row.company_id, row.name, row.reason, f"{detail} {waiting}.".strip(), _renew_action(row),
                        (tier, -row.waiting, 0, row.name))
    if row.failed:
        return TodoItem(row.company_id, row.name, _documents(row.failed, "fehlgeschlagen"),
                        "Der Anbieter hat ihn abgelehnt; nach einer Korrektur erneut senden." if row.failed == 1 else
                        "Der Anbieter hat sie abgelehnt; nach einer Korrektur erneut senden.", Action.retry_failed,
                        (1, -row.failed, 0, row.name))
    if row.unresolved:
        return TodoItem(row.company_id, row.name, _documents(row.unresolved, "ungeklärt"),
                        "Ob er angekommen ist, ist offen; bitte beim Anbieter nachsehen und entscheiden." if row.unresolved == 1
                        else "Ob sie angekommen sind, ist offen; bitte beim Anbieter nachsehen und entscheiden.",
                        Action.resolve, (1, -row.unresolved, 0, row.name))
    if row.state == State.unclear:
        return TodoItem(row.company_id, row.name, f"Token {Health.unclear.value}",
                        "Die Antwort auf die letzte Erneuerung ging verloren; die nächste Verwendung klärt es.",
                        Action.clarify_refresh, (2, 0, 0, row.name))
    if row.health == Health.expiring:
        days = row.days_left if row.days_left is not None else 0
        left = "läuft heute ab" if days <= 0 else ("noch 1 Tag" if days == 1 else f"noch {days} Tage")
        return TodoItem(row.company_id, row.name, f"Token {Health.expiring.value}",
                        f"Gültig bis {format_date(row.valid_until)} ({left}); rechtzeitig neu anfordern.",
                        _renew_action(row), (2, days, 0, row.name))
    if row.state == State.unbound:
        return TodoItem(row.company_id, row.name, "Token nicht an den Datenbestand gebunden",
                        "DATEV hat den Zugriff ohne Bindung erteilt; bei Gelegenheit neu anfordern.",
                        Action.request_token, (4, 0, 0, row.name))
    return None


def todo(rows: Iterable[CompanyRow]) -> list[TodoItem]:
    """Every company that needs a person, most urgent first."""
    items = [item for item in map(todo_item, rows) if item is not None]
    return sorted(items, key=lambda item: item.rank)


def overview(engine: Engine, settings: Settings, *, now: datetime | None = None) -> Overview:
    now = now or utcnow()
    rows = company_rows(engine, settings, now=now)
    tiles: dict[State, int] = {}
    for row in rows:
        tiles[row.state] = tiles.get(row.state, 0) + 1
    return Overview(rows=rows, todo=todo(rows), tiles=tiles, waiting=sum(r.waiting for r in rows),
                    failed_recently=failed_attempts_since(engine, now - timedelta(days=RECENT_FAILURE_DAYS)))


def matches_search(search: str, name: str, client_id: str | None) -> bool:
    """The one search of the Übersicht's table and the Langzeittoken page: part of the company's name
    (case-insensitive) or of its own Berater-Nr.–Mandanten-Nr., typed with a hyphen, a dash or spaces
    ("455148-3", "455148–3", "455148 3"). The company's own number, not the token's bound data set: a
    company without a token, or with an unbound one, is found by its number too."""
    needle = search.strip().casefold()
    if not needle:
        return True
    if needle in name.casefold():
        return True
    number = re.sub(r"[\s\-\u2010-\u2015]+", "-", needle)  # hyphens, dashes and spaces alike
    return client_id is not None and number in client_id


def filter_rows(rows: Iterable[CompanyRow], *, search: str = "", states: Iterable[State] = (),
                interfaces: Iterable[str] = ()) -> list[CompanyRow]:
    """The table's filters: a name or number search (case-insensitive), states and interfaces (empty: all)."""
    wanted_states, wanted_interfaces = set(states), set(interfaces)
    return [r for r in rows
            if matches_search(search, r.name, r.client_id)
            and (not wanted_states or r.state in wanted_states)
            and (not wanted_interfaces or r.interface in wanted_interfaces)]


def provider_label_of(row: CompanyRow) -> Provider | None:
    return {INTERFACE_LABELS[Interface.datev]: Provider.datev,
            INTERFACE_LABELS[Interface.lexware]: Provider.lexware}.get(row.interface)


MANUAL_ONLY = "wartet auf eine Übertragung von Hand (automatische Übertragung ist aus)"


def document_hint(document: Document, reason: str | None, now: datetime, *, automatic: bool = True) -> str:
    """Why one document is where it is (the Belege list, the company page): `reason` is the company's
    `waiting_reason`, `automatic` its automatic transfer (off: no scheduler sends it, only a person on
    "Übertragen"). Always a German sentence fragment, never empty for a document that waits."""
    status = document.status
    if status == DocumentStatus.new.value:
        return "noch nicht freigegeben"
    if status == DocumentStatus.approved.value:
        if reason:
            return f"wartet: {reason}"
        if not automatic:
            return MANUAL_ONLY
        if document.next_attempt_at is not None and document.next_attempt_at > now:
            return f"nächster Versuch ab {format_local(document.next_attempt_at)}"
        return "wird bei der nächsten Übertragung gesendet"
    if status == DocumentStatus.transferring.value:
        return "wird gerade übertragen"
    if status in (DocumentStatus.failed.value, DocumentStatus.unresolved.value):
        return document.last_error or ("fehlgeschlagen" if status == DocumentStatus.failed.value else "ungeklärt")
    return ""


OPEN_STATUSES = (DocumentStatus.new.value, DocumentStatus.approved.value, DocumentStatus.transferring.value,
                 DocumentStatus.failed.value, DocumentStatus.unresolved.value)


@dataclass(frozen=True)
class DocumentLine:
    document_id: int
    file_name: str
    status: str  # German label
    hint: str
    uploaded_at: datetime


@dataclass(frozen=True)
class AlarmLine:
    at: datetime
    title: str
    state: str


@dataclass(frozen=True)
class AuditLine:
    at: datetime
    actor: str
    action: str
    detail: str


@dataclass(frozen=True)
class CompanyDetail:
    company: Company
    row: CompanyRow | None  # None: archived (the overview lists active companies only)
    open_documents: list[DocumentLine]
    open_total: int
    attempts: list[HistoryRow]
    alarms: list[AlarmLine]


DETAIL_LIMIT = 20


def company_detail(engine: Engine, settings: Settings, company_id: int, *, now: datetime | None = None) -> CompanyDetail:
    """What the company page shows: its row, open documents with their reasons, last attempts, alarms."""
    now = now or utcnow()
    with unit_of_work(engine) as session:
        company = session.get(Company, company_id)
        if company is None:
            raise NotFound("Dieses Unternehmen gibt es nicht.")
        session.expunge(company)
        open_query = select(Document).where(col(Document.company_id) == company_id,
                                            col(Document.status).in_(OPEN_STATUSES))
        documents = session.exec(open_query.order_by(col(Document.uploaded_at).desc(), col(Document.id).desc())
                                 .limit(DETAIL_LIMIT)).all()
        open_total = int(session.exec(select(func.count()).select_from(Document).where(
            col(Document.company_id) == company_id, col(Document.status).in_(OPEN_STATUSES))).one())
        alarm_rows = session.exec(select(AlarmSent).where(col(AlarmSent.company_id) == company_id)
                                  .order_by(col(AlarmSent.sent_at).desc(), col(AlarmSent.id).desc())
                                  .limit(DETAIL_LIMIT)).all()
        session.expunge_all()
    rows = company_rows(engine, settings, company_ids=[company_id], now=now)
    reason = waiting_reason_for(engine, settings, company, now)
    lines = [DocumentLine(d.id or 0, d.file_name, STATUS_LABELS[DocumentStatus(d.status)],
                          document_hint(d, reason, now, automatic=company.auto_transfer), d.uploaded_at)
             for d in documents]
    attempts = history.history_page(engine, HistoryFilter(company_id=company_id), page=1,
                                    page_size=DETAIL_LIMIT).rows
    alarms = [AlarmLine(a.sent_at, a.title, delivery_state(a)[0]) for a in alarm_rows]
    return CompanyDetail(company, rows[0] if rows else None, lines, open_total, attempts, alarms)


def waiting_reason_for(engine: Engine, settings: Settings, company: Company, now: datetime) -> str | None:
    provider = company.provider
    connection = store.find(engine, company.id, provider) if provider is not None and company.id is not None else None
    return waiting_reason(company, connection, settings, now)


def company_audit(engine: Engine, company_id: int, *, limit: int = DETAIL_LIMIT) -> list[AuditLine]:
    """The newest audit entries about the company and its connections (admins see them on its page)."""
    events = audit_events(engine, AuditFilter(company_id=company_id), limit=limit)
    return [AuditLine(e.at, e.actor, e.action, e.detail or "") for e in events]


CARDS_PER_PAGE = 10
# The token list's order: what needs a person first.
HEALTH_ORDER = {Health.invalid: 0, Health.expired: 1, Health.unclear: 2, Health.expiring: 3, Health.revoked: 4,
                Health.missing: 5, Health.active: 6}


def filter_cards(cards: Iterable[TokenCard], *, search: str = "", healths: Iterable[Health] = (),
                 providers: Iterable[Provider] = ()) -> list[TokenCard]:
    """The Langzeittoken page's list: name or data-set search, states and interfaces (empty: all),
    broken tokens first, then by name."""
    wanted_health, wanted_providers = set(healths), set(providers)
    chosen = [c for c in cards
              if matches_search(search, c.company.name, c.company.datev_client_id)
              and (not wanted_health or c.health in wanted_health)
              and (not wanted_providers or c.provider in wanted_providers)]
    return sorted(chosen, key=lambda c: (HEALTH_ORDER[c.health], c.company.name.casefold()))
