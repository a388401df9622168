"""The showcase of `make run` (testkit/showcase.py) on SQLite and PostgreSQL, against the emulator
process: every state of the Übersicht is there, 30 days of history feed the charts, and nothing is sent
to an alarm target before a person has done anything (the scheduler's own token care and pass run
with the real targets afterwards). The real `make run` process is tested in tests/proof/test_make_run.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import requests
from sqlalchemy import Engine
from sqlmodel import select

from core.connections.health import Health
from core.demo import seed_demo
from core.jobs import care_for_tokens
from core.overview import State, company_rows, company_states
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.models import AlarmSent, Connection
from core.statistics import failure_reasons, transfers_per_day
from core.transfers.engine import PassOptions, run_pass
from core.users import process
from emulator.server import EmulatorServer
from testkit.showcase import NOT_SENT, build_showcase, showcase_due

EVERY_STATE = {"aktiv", "läuft bald ab", "abgelaufen", "ungültig", "widerrufen", "fehlt", "nicht gebunden", "pausiert"}


def test_the_showcase_shows_every_state_with_history_and_sends_no_alarm(
        engine: Engine, database_url: str, keyring: Keyring, emulator: EmulatorServer,
        settings_for: Callable[..., Settings]) -> None:
    seed_demo(engine, with_documents=True)
    settings = settings_for(database_url, alarm_targets=f"json://127.0.0.1:{emulator.port}/_demo/alarms")
    assert showcase_due(engine)

    report = build_showcase(engine, settings, keyring, say=lambda _line: None)

    assert set(report.states.values()) == EVERY_STATE, report.states
    assert report.states["Musterfirma GmbH"] == Health.missing.value  # the README's walk-through starts here
    assert not showcase_due(engine)  # a second start builds nothing again
    # What the Übersicht reads (core.overview): the same states, one unbound, one paused with Belege waiting.
    rows = {row.name: row for row in company_rows(engine, settings)}
    # the Unternehmen list's states (without the table's counts) are the table's, for a company in every state
    assert company_states(engine, settings) == {r.company_id: r.state for r in rows.values()
                                                if r.state != State.no_interface}
    assert rows["Hansewerft Service GmbH"].bound_data_set == "nicht gebunden"
    # "läuft bald ab" is a real two-year grant near its end, not a short grant the desk calls no Langzeittoken
    bakery = rows["Bäckerei Sonnenschein e.K."]
    assert bakery.days_left is not None and 19 <= bakery.days_left <= 21
    with unit_of_work(engine) as session:
        bakery_token = session.exec(select(Connection).where(Connection.company_id == bakery.company_id)).one()
    assert bakery_token.offline_granted and bakery_token.kind == "long_term"
    # "abgelaufen" likewise: a Langzeittoken whose two years are over, not a grant the desk never called one
    expired = rows["Rheinblick Gastronomie GmbH"]
    with unit_of_work(engine) as session:
        expired_token = session.exec(select(Connection).where(Connection.company_id == expired.company_id)).one()
    assert expired.state == State.expired and expired_token.offline_granted
    assert rows["Waldmeister Gartenbau e.K."].waiting == 2
    assert (rows["Waldmeister Gartenbau e.K."].paused_reason or "").startswith("DATEV verweigert")
    assert rows["Lexware Demo GmbH"].state == State.active and rows["Lexware Demo GmbH"].grantor_name

    # The scheduler's first token care and transfer pass, with the real alarm target: nothing new is due.
    assert care_for_tokens(engine, settings, keyring)["alarms"] == 0
    run_pass(engine, settings, keyring, PassOptions(trigger="scheduler", actor=process("scheduler:test"),
                                                    only_auto_transfer=True))
    received = requests.get(f"{emulator.base_url}/_admin/alarms", timeout=5).json()
    assert received == []
    with unit_of_work(engine) as session:
        alarms = session.exec(select(AlarmSent)).all()
    assert {a.key.split(":", 1)[0] for a in alarms} == {"token_invalid", "token_expiring", "token_expired",
                                                      "company_paused"}
    assert all(not a.delivered and a.detail == NOT_SENT for a in alarms)

    # 30 days of history for the charts: most working days delivered, and each other outcome once at least.
    days = transfers_per_day(engine)
    by_outcome = Counter(d.outcome for d in days if d.count)
    assert by_outcome["übertragen"] >= 15 and by_outcome["fehlgeschlagen"] >= 1 and by_outcome["ungeklärt"] >= 1, days
    assert failure_reasons(engine)
