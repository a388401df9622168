"""The showcase of `make run`: a demo in which every token state of the Übersicht is there.

`scripts/run_local.py` runs `build_showcase` once, on a database the bootstrap has just seeded
(`core.demo`), after the emulator is up and before the dashboard and the scheduler start. Every state
is reached the way it happens in real life, through the product's own functions and the emulator's
real login pages, never by writing a state column:

| company | data set | state | how |
|---|---|---|---|
| Musterfirma GmbH | 455148-1 | fehlt | no token yet: the README's walk-through requests it (3 new Belege) |
| Beispiel Handel KG | 455148-2 | aktiv | Max's Langzeittoken; 30 days of transfer history |
| Demo Bau AG | 455148-3 | fehlt | no token; DATEV has no Belege online for it |
| Bäckerei Sonnenschein e.K. | 455148-4 | läuft bald ab | a two-year grant whose login the emulator moved back; 20 days left |
| Nordlicht Logistik GmbH & Co. KG | 455148-5 | ungültig | the grant was revoked at DATEV; the test call found it |
| Rheinblick Gastronomie GmbH | 455148-6 | abgelaufen | a two-year grant whose login the emulator moved back; it ends seconds later |
| Alpenblick Hotel KG | 455148-7 | widerrufen | deleted as an admin would (revoked at DATEV; the audit names the showcase) |
| Hansewerft Service GmbH | 455148-8 | nicht gebunden | the provider did not grant the data-set scope |
| Waldmeister Gartenbau e.K. | 455148-9 | pausiert | DATEV refused access to the data set (403 on the pass's check; right since restored) |
| Lexware Demo GmbH | – | aktiv | the emulator's demo API key; transfer history |

**No alarm fires before the user has done anything.** The showcase runs with the alarm targets
switched off, so what its states raise (the reminder for the expiring token, "Token ungültig",
"Belege warten" for the paused company) is recorded once, as the rules say, but sent nowhere; the rows
say "Nicht gesendet: Demo-Daten, beim Einrichten der Demo entstanden" (state "nicht gesendet"). The scheduler then finds each
alarm raised before and sends nothing for it. What the user breaks afterwards is alarmed as usual.

**History.** For each working day of the last 30 the showcase takes in Belege for Beispiel Handel
and Lexware Demo, approves them and runs a real transfer pass against the emulator (with a few
injected faults: a 503, a dropped answer, a rate limit), then moves what that pass wrote back to that
day (`_move_back`). Moving timestamps is the one thing done outside the owners; it changes times only,
never a status, and only here, in demo data. The audit trail is append-only and is not moved: it shows
the set-up when it happened.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import requests
from sqlalchemy import Engine, or_
from sqlmodel import SQLModel, col, select

from core import companies
from core.alarms import outbox
from core.connections import disconnect, lexware_key, store
from core.connections.access import get_valid_token
from core.connections.test_call import test_and_record
from core.demo import DEMO_COMPANIES
from core.documents import intake, lifecycle
from core.jobs import care_for_tokens
from core.overview import company_rows
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.models import (
    AlarmSent,
    AppUser,
    Company,
    Connection,
    Document,
    HttpLogEntry,
    Interface,
    Provider,
    TransferAttempt,
    utcnow,
)
from core.transfers.engine import PassOptions, run_pass
from core.users import process
from testkit.datev_user import log_in_at_datev
from testkit.samples import pdf

log = logging.getLogger(__name__)

ACTOR = "system:demo-showcase"
ADMIN_EMAIL = "admin@tokendesk.demo"
NOT_SENT = f"{outbox.NOT_SENT_PREFIX}: Demo-Daten, beim Einrichten der Demo entstanden."
HISTORY_DAYS = 30
EXPIRING_DAYS = 20  # inside TOKEN_EXPIRY_WARNING_DAYS (30): "läuft bald ab"
EXPIRED_LEFT_SECONDS = 3  # over before the showcase is done (the history alone takes longer): "abgelaufen"

# The showcase's extra companies (the emulator knows these data sets: emulator/demo_data.py).
EXTRA = (
    ("Bäckerei Sonnenschein e.K.", "4", False),
    ("Nordlicht Logistik GmbH & Co. KG", "5", True),
    ("Rheinblick Gastronomie GmbH", "6", False),
    ("Alpenblick Hotel KG", "7", False),
    ("Hansewerft Service GmbH", "8", False),
    ("Waldmeister Gartenbau e.K.", "9", True),
)
CONSULTANT = "455148"


@dataclass
class ShowcaseReport:
    states: dict[str, str] = field(default_factory=dict)  # company name → health or binding shown
    documents: int = 0
    alarms_recorded: int = 0


class Emulator:
    """The emulator's /_admin API (loopback only): switches, grants, rights, faults."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = requests.post(f"{self.base}/_admin{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def get(self, path: str) -> Any:
        response = requests.get(f"{self.base}/_admin{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    @contextmanager
    def config(self, **switches: Any) -> Iterator[None]:
        """Change runtime switches for the block, then put the previous values back."""
        before = self.get("/config")
        self.post("/config", switches)
        try:
            yield
        finally:
            self.post("/config", {name: before[name] for name in switches})

    def revoke_grant_of(self, client_id: str) -> None:
        grants = [g for g in self.get("/datev/grants")
                  if f"datev:iam:client:{client_id}" in g.get("scope", []) and not g.get("revoked")]
        for grant in grants:
            self.post("/datev/grants/revoke", {"grant_id": grant["id"]})


def quiet(settings: Settings) -> Settings:
    """The settings with every alarm target switched off: alarms are recorded, never sent."""
    return settings.model_copy(update={"alarm_targets": "", "alarm_emails": ""})


def showcase_due(engine: Engine) -> bool:
    """The database holds the untouched demo seed (its four companies, no token, no transfer): the
    showcase has not been built and nobody has worked with the demo yet."""
    with unit_of_work(engine) as session:
        names = set(session.exec(select(Company.name)).all())
        touched = session.exec(select(Connection.id)).first() is not None or \
            session.exec(select(TransferAttempt.id)).first() is not None
    return not touched and names == {data.name for data in DEMO_COMPANIES}


def build_showcase(engine: Engine, settings: Settings, keyring: Keyring, *,
                   say: Callable[[str], None] = print) -> ShowcaseReport:
    """Create every token state and the transfer history (see the module docstring)."""
    settings = quiet(settings)
    emulator = Emulator(settings.emulator_url)
    with unit_of_work(engine) as session:
        admin = session.exec(select(AppUser).where(AppUser.email == ADMIN_EMAIL)).one()
        session.expunge(admin)
    ids = _companies(engine)
    report = ShowcaseReport()

    def login(name: str) -> None:  # Max Mustermann logs in with SmartLogin and agrees
        outcome = log_in_at_datev(engine, settings, keyring, company_id=ids[name], user=admin)
        if not outcome.ok:
            raise RuntimeError(f"showcase: the DATEV login for {name} failed: {outcome.message}")

    say("showcase: tokens in every state …")
    login("Rheinblick Gastronomie GmbH")
    _age(engine, settings, keyring, emulator, ids["Rheinblick Gastronomie GmbH"], f"{CONSULTANT}-6",
         left_seconds=EXPIRED_LEFT_SECONDS)  # its two years end a moment later: abgelaufen
    login("Beispiel Handel KG")
    login("Bäckerei Sonnenschein e.K.")
    _age(engine, settings, keyring, emulator, ids["Bäckerei Sonnenschein e.K."], f"{CONSULTANT}-4",
         left_seconds=EXPIRING_DAYS * 86400)
    login("Nordlicht Logistik GmbH & Co. KG")
    emulator.revoke_grant_of(f"{CONSULTANT}-5")  # revoked by a DATEV user under "Verbundene Anwendungen"
    test_and_record(engine, settings, keyring, connection_id=_connection_id(engine, ids["Nordlicht Logistik GmbH & Co. KG"]),
                    actor=ACTOR)
    login("Alpenblick Hotel KG")
    disconnect.delete_token(engine, settings, keyring, actor=process(ACTOR), reason="Mandat beendet (Demo)",
                            connection_id=_connection_id(engine, ids["Alpenblick Hotel KG"]))
    with emulator.config(client_scope_grant="drop"):
        login("Hansewerft Service GmbH")
    login("Waldmeister Gartenbau e.K.")
    lexware_key.store_lexware_key(engine, settings, keyring, company_id=ids["Lexware Demo GmbH"],
                                  api_key="demo-lexware-key", valid_until=None, actor=process(ACTOR))
    _pause_by_refusal(engine, settings, keyring, emulator, ids["Waldmeister Gartenbau e.K."])

    say("showcase: 30 days of transfer history …")
    report.documents = _history(engine, settings, keyring, emulator,
                                [ids["Beispiel Handel KG"], ids["Lexware Demo GmbH"]])
    care_for_tokens(engine, settings, keyring)  # what the scheduler's first token care would raise, recorded
    report.alarms_recorded = _mark_not_sent(engine)
    report.states = shown_states(engine, settings)
    return report


def shown_states(engine: Engine, settings: Settings) -> dict[str, str]:
    """Each active company's state as the Übersicht names it (core.overview, the one mapping)."""
    return {row.name: row.state.value for row in company_rows(engine, settings)}


def _companies(engine: Engine) -> dict[str, int]:
    """The showcase's companies next to the seeded ones; Beispiel Handel transfers automatically."""
    for name, client, auto in EXTRA:
        companies.create_company(engine, actor=process(ACTOR), data=companies.CompanyInput(
            name, CONSULTANT, client, Interface.datev.value, auto, "Rechnungseingang"))
    with unit_of_work(engine) as session:
        ids = {c.name: c.id for c in session.exec(select(Company)).all() if c.id is not None}
    handel = companies.get_company(engine, ids["Beispiel Handel KG"])
    companies.update_company(engine, actor=process(ACTOR), company_id=ids["Beispiel Handel KG"],
                             data=replace(companies.input_from(handel), auto_transfer=True))
    return ids


def _datev_token(engine: Engine, company_id: int) -> Connection:
    """The company's DATEV Langzeittoken (the showcase just stored it)."""
    connection = store.find(engine, company_id, Provider.datev)
    assert connection is not None and connection.id is not None
    return connection


def _connection_id(engine: Engine, company_id: int) -> int:
    connection_id = _datev_token(engine, company_id).id
    assert connection_id is not None
    return connection_id


def _age(engine: Engine, settings: Settings, keyring: Keyring, emulator: Emulator, company_id: int,
         client_id: str, *, left_seconds: int) -> None:
    """A real two-year grant, logged in `left_seconds` short of two years ago: the emulator moves the login
    back, and one refresh under a fixed (not rolling) lifetime brings the true rest (the desk keeps it a
    Langzeittoken: what the login granted). In the demo the emulator is rolling again afterwards, so a
    token with time left renews to two years once it is next refreshed (its access token lasts 15
    minutes; the keepalive comes after TOKEN_KEEPALIVE_DAYS); an expired one is never refreshed."""
    lifetime = emulator.get("/config")["refresh_ttl_offline"]
    emulator.post("/datev/grants/age", {"client_id": client_id, "seconds": lifetime - left_seconds})
    connection = _datev_token(engine, company_id)
    assert connection.id is not None
    with emulator.config(offline_refresh_mode="fixed"):
        get_valid_token(engine, connection.id, settings=settings, keyring=keyring, stale_version=connection.version)


def _pause_by_refusal(engine: Engine, settings: Settings, keyring: Keyring, emulator: Emulator,
                      company_id: int) -> None:
    """DATEV refuses Max's access to the data set (his right was taken away; 403 on the pass's check before
    the upload): the pass pauses the company with DATEV's reason and its Belege wait. The right is given
    back afterwards, so "Fortsetzen" works in the demo."""
    actor = process(ACTOR)
    report = intake.intake(engine, company_id=company_id, actor=actor, source="demo",
                           files=[(f"Rechnung 2026-{n} Pflanzen.pdf", pdf(f"waldmeister-{n}")) for n in (311, 312)])
    lifecycle.approve(engine, document_ids=[d.id for d in report.accepted if d.id is not None], actor=actor)
    client_id = f"{CONSULTANT}-9"
    emulator.post("/datev/rights/remove", {"person": "max", "client_id": client_id})
    try:
        run_pass(engine, settings, keyring, PassOptions(trigger="scheduler", actor=actor, company_ids=[company_id]))
    finally:
        _restore_right(emulator, "max", client_id)
    if companies.get_company(engine, company_id).paused_at is None:
        raise RuntimeError("showcase: DATEV's refusal did not pause Waldmeister Gartenbau e.K.")


def _restore_right(emulator: Emulator, person: str, client_id: str) -> None:
    emulator.post("/datev/rights/add", {"person": person, "client_id": client_id})


# Faults on some days, so the charts show each outcome (emulator/faults.py): DATEV answers 503 (retried
# the next day), Lexware drops its answer after accepting (ungeklärt: Lexware has no idempotent upload,
# a person decides) and rate-limits an upload (it waits for a manual transfer). Keyed by working days
# before today (1 = the last working day), so every weekday of the week gets them all.
FAULTS = {
    16: [{"target": "documents", "kind": "503", "count": 1}],
    11: [{"target": "lexware", "kind": "accept_then_drop", "count": 1}],
    6: [{"target": "documents", "kind": "503", "count": 2}],
    3: [{"target": "lexware", "kind": "429", "count": 1, "retry_after": 1}],
}
SUBJECTS = ("Büromaterial", "Reisekosten", "Wareneinkauf", "Miete", "Telefon", "Bewirtung", "Software",
            "Fracht", "Energie", "Versicherung")


def _history(engine: Engine, settings: Settings, keyring: Keyring, emulator: Emulator, company_ids: list[int]) -> int:
    """Working days of the last HISTORY_DAYS: Belege in, approved, a real pass, moved back to that day."""
    rng = random.Random(4551482)  # the same history on every machine
    zone = ZoneInfo(settings.display_timezone)
    today = utcnow().astimezone(zone).date()
    actor = process(ACTOR)
    made = 0
    datev_id, lexware_id = company_ids
    working_days = [day for day in (today - timedelta(days=n) for n in range(HISTORY_DAYS, 0, -1)) if day.weekday() < 5]
    for day, days_ago in zip(working_days, range(len(working_days), 0, -1), strict=True):
        batch_started = utcnow()
        lexware_fault = any(f["target"] == "lexware" for f in FAULTS.get(days_ago, []))
        for company_id, count in ((datev_id, rng.randint(2, 5)), (lexware_id, 1 if lexware_fault else rng.randint(0, 1))):
            files = [(f"Rechnung {day:%Y-%m-%d}-{i + 1} {rng.choice(SUBJECTS)}.pdf", pdf(f"{company_id}-{day}-{i}"))
                     for i in range(count)]
            if files:
                report = intake.intake(engine, company_id=company_id, actor=actor, source="demo", files=files)
                lifecycle.approve(engine, document_ids=[d.id for d in report.accepted if d.id is not None],
                                  actor=actor)
                made += len(report.accepted)
        for fault in FAULTS.get(days_ago, []):
            emulator.post("/faults", fault)
        try:
            run_pass(engine, settings, keyring, PassOptions(trigger="scheduler", actor=actor, company_ids=company_ids))
        finally:
            requests.delete(f"{emulator.base}/_admin/faults", timeout=10).raise_for_status()
        at = datetime.combine(day, time(9, rng.randint(0, 50)), zone)
        _move_back(engine, since=batch_started, by=utcnow() - at)
    return made


# The audit trail is append-only (a database trigger refuses updates): it keeps the set-up's true times.
MOVED: tuple[type[SQLModel], ...] = (Document, TransferAttempt, HttpLogEntry)


def _move_back(engine: Engine, *, since: datetime, by: timedelta) -> None:
    """Move every time written since `since` (by the pass just run) back by `by`: demo data only."""
    with unit_of_work(engine) as session:
        for model in MOVED:
            columns = [name for name, info in model.model_fields.items()
                       if info.annotation in (datetime, datetime | None)]
            written = or_(*(col(getattr(model, name)) >= since for name in columns))  # only what the pass wrote
            for row in session.exec(select(model).where(written)).all():
                for name in columns:
                    value = getattr(row, name)
                    if value is not None and value >= since:
                        setattr(row, name, value - by)
                session.add(row)


def _mark_not_sent(engine: Engine) -> int:
    """Say on each alarm the showcase raised that it was demo data and not sent (outbox's wording)."""
    with unit_of_work(engine) as session:
        keys = list(session.exec(select(AlarmSent.key)).all())
    return outbox.mark_not_sent(engine, keys, NOT_SENT)
