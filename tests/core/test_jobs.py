"""Scheduler jobs called directly (docs/style.md §1.4): token care with alarms to a real local SMTP server,
keepalive refresh against the emulator, housekeeping. SQLite and PostgreSQL via `world`."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, update
from sqlmodel import col, select

from core.alarms.messages import Alarm
from core.alarms.outbox import raise_alarm
from core.connections.test_call import run_test
from core.documents import intake
from core.jobs import JobContext, alarm_retry, care_for_tokens, housekeeping, token_care
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.models import (
    AlarmSent,
    Company,
    Connection,
    ConnectionKind,
    Document,
    DocumentStatus,
    HttpLogEntry,
    PendingAuthorization,
    SchedulerHeartbeat,
    StoredSecret,
    TransferAttempt,
    utcnow,
)
from core.platform.secret_store import put_secret
from core.transfers.engine import PassOptions, companies_with_work
from core.users import process
from testkit.rows import id_of, present
from testkit.samples import pdf
from tests.support.sinks import SmtpSink, free_port
from tests.support.world import World, add_approved

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

COMPANY = "Musterfirma GmbH"


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink.running() as sink:
        yield sink


@pytest.fixture
def alarmed(world: World, smtp: SmtpSink) -> World:
    """The world with alarms by e-mail to a global address and the company's own recipient."""
    world.settings = world.settings.model_copy(update={
        "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_tls": "none", "alarm_emails": "ops@example.com"})
    with unit_of_work(world.engine) as s:
        company = present(s.get(Company, world.company_id))
        company.alarm_recipients = "buchhaltung@musterfirma.de"
        s.add(company)
    return world


def context(world: World) -> JobContext:
    return JobContext(world.engine, world.settings, world.keyring, "test-1", threading.Event())


def mails(smtp: SmtpSink) -> list[tuple[str, list[str]]]:
    return sorted((str(message["Subject"]), rcpts) for rcpts, message in smtp.messages)


def set_connection(world: World, **values: object) -> None:
    with unit_of_work(world.engine) as s:
        s.exec(update(Connection).where(col(Connection.company_id) == world.company_id,
                                        col(Connection.slot) == "long_term").values(**values))


def alarm_keys(world: World) -> list[str]:
    with unit_of_work(world.engine) as s:
        return sorted(s.exec(select(AlarmSent.key)).all())


# --- token care ---------------------------------------------------------------------------------


def test_revoked_token_raises_invalid_and_paused_once(alarmed: World, smtp: SmtpSink) -> None:
    """The test call that finds the token revoked raises the alarms at once (not at the next hourly
    token care), and the token care raises nothing twice."""
    world = alarmed
    assert world.request_token().ok
    add_approved(world, 2)
    world.admin_post("/datev/grants/revoke", {"all": True})
    connection = world.find_connection()
    assert connection is not None
    assert not run_test(world.engine, world.settings, world.keyring, connection_id=id_of(connection),
                        actor=process("admin@x.de")).ok
    assert world.connection().invalid_at is not None
    refreshes = world.stats()["refresh_requests"]
    assert len(smtp.messages) == 4  # at detection: two alarms, each to two recipients

    first = token_care(context(world))

    assert first["alarms"] == 0 and first["refreshed"] == 0
    recipients = ["buchhaltung@musterfirma.de", "ops@example.com"]
    subjects = sorted({subject for subject, _ in mails(smtp)})
    assert subjects == [f"Belege warten: {COMPANY}", f"Token ungültig: {COMPANY} (DATEV)"]
    assert sorted(r for _, rcpts in mails(smtp) for r in rcpts) == sorted(recipients * 2)
    paused_body = next(m for _, m in smtp.messages if "Belege warten" in str(m["Subject"])).get_content()
    assert "Token ungültig" in paused_body and "2 freigegebene Belege warten" in paused_body

    second = token_care(context(world))

    assert second["alarms"] == 0 and len(smtp.messages) == 4
    assert [k.split(":")[0] for k in alarm_keys(world)] == ["company_paused", "token_invalid"]
    assert world.stats()["refresh_requests"] == refreshes  # token care did not call DATEV


def test_expiry_reminder_once_per_step(alarmed: World, smtp: SmtpSink) -> None:
    world = alarmed
    assert world.request_token().ok
    set_connection(world, refresh_expires_at=utcnow() + timedelta(days=29))
    stats = world.stats()

    assert token_care(context(world))["alarms"] == 1
    assert token_care(context(world))["alarms"] == 0

    [subject] = {subject for subject, _ in mails(smtp)}
    assert re.fullmatch(rf"Token läuft in 2[89] Tagen ab: {COMPANY} \(DATEV\)", subject)  # 28 only past midnight
    assert len(smtp.messages) == 2  # one alarm, two recipients
    [key] = alarm_keys(world)
    assert key.startswith(f"token_expiring:company:{world.company_id}:datev:") and key.endswith(":30")

    set_connection(world, refresh_expires_at=utcnow() + timedelta(days=13))
    assert token_care(context(world))["alarms"] == 1
    assert [k.rsplit(":", 1)[1] for k in alarm_keys(world)] == ["14", "30"]
    assert world.stats() == stats  # reminders come from the database alone


def test_an_expired_token_is_reported_once_even_when_nothing_waits(alarmed: World, smtp: SmtpSink) -> None:
    """The reminders before expiry may go unread: when the token has run out, the token care says so once,
    whether or not approved documents wait (those get their own "Belege warten" alarm), and a renewed token
    that runs out again is reported again."""
    world = alarmed
    assert world.request_token().ok
    ran_out = utcnow() - timedelta(hours=2)
    set_connection(world, refresh_expires_at=ran_out)
    refreshes = world.stats()["refresh_requests"]

    assert token_care(context(world))["alarms"] == 1
    assert token_care(context(world))["alarms"] == 0

    assert mails(smtp) == [(f"Token abgelaufen: {COMPANY} (DATEV)", ["buchhaltung@musterfirma.de"]),
                           (f"Token abgelaufen: {COMPANY} (DATEV)", ["ops@example.com"])]
    body = smtp.messages[0][1].get_content()
    assert "ist am " in body and "keine Belege an DATEV übertragen" in body and "neues Langzeittoken an" in body
    assert [k.split(":")[0] for k in alarm_keys(world)] == ["token_expired"]
    assert world.stats()["refresh_requests"] == refreshes  # an expired token is not tried at DATEV

    add_approved(world, 1)
    assert token_care(context(world))["alarms"] == 1  # now documents wait: that alarm, not the expiry again
    assert [k.split(":")[0] for k in alarm_keys(world)] == ["company_paused", "token_expired"]

    set_connection(world, refresh_expires_at=ran_out - timedelta(days=730))  # ran out on another day: its own alarms
    assert token_care(context(world))["alarms"] == 2  # the expiry and the wait since then, each keyed by that day
    assert [k.split(":")[0] for k in alarm_keys(world)] == ["company_paused"] * 2 + ["token_expired"] * 2


def test_keepalive_refreshes_a_rolling_token_once(world: World) -> None:
    assert world.request_token().ok
    set_connection(world, last_refresh_at=utcnow() - timedelta(days=8))
    before = world.find_connection()
    refreshes = world.stats()["refresh_requests"]

    first = token_care(context(world))

    assert first["refreshed"] == 1 and first["refresh_failed"] == 0
    assert world.stats()["refresh_requests"] == refreshes + 1
    after = world.find_connection()
    assert after is not None and before is not None
    assert after.version == before.version + 1 and present(after.last_refresh_at) > present(before.last_refresh_at)
    assert after.invalid_at is None

    assert token_care(context(world))["refreshed"] == 0
    assert world.stats()["refresh_requests"] == refreshes + 1


def test_no_keepalive_when_the_window_is_not_rolling(world: World) -> None:
    assert world.request_token().ok
    set_connection(world, last_refresh_at=utcnow() - timedelta(days=30))
    refreshes = world.stats()["refresh_requests"]
    settings = world.settings.model_copy(update={"datev_refresh_rolling": False})
    assert care_for_tokens(world.engine, settings, world.keyring)["refreshed"] == 0
    assert world.stats()["refresh_requests"] == refreshes


def test_repeated_failures_since_the_last_delivery_raise_one_alarm(alarmed: World, smtp: SmtpSink) -> None:
    world = alarmed
    report = intake.intake(world.engine, company_id=world.company_id, actor=process("o@x.de"),
                              files=[(f"R{i}.pdf", pdf(f"f{i}")) for i in range(3)])
    document_id = id_of(report.accepted[0])
    now = utcnow()

    def attempt(outcome: str, minutes_ago: int, text: str = "#DCO01245 PDF beschädigt") -> TransferAttempt:
        at = now - timedelta(minutes=minutes_ago)
        return TransferAttempt(document_id=document_id, company_id=world.company_id, provider="datev",
                               trigger="scheduler", triggered_by="scheduler:x", attempt_no=1, started_at=at,
                               finished_at=at, outcome=outcome, error_text=None if outcome == "delivered" else text,
                               correlation_id=f"c{minutes_ago}")

    with unit_of_work(world.engine) as s:  # two failures before the last delivery do not count
        s.add_all([attempt("failed", 50), attempt("failed", 40), attempt("delivered", 30),
                   attempt("failed", 20), attempt("retry", 15), attempt("failed", 10)])
    assert token_care(context(world))["alarms"] == 0  # 2 < threshold 3

    with unit_of_work(world.engine) as s:
        s.add(attempt("failed", 5, "#DCO01216 Datei zu groß"))
    assert token_care(context(world))["alarms"] == 1
    assert token_care(context(world))["alarms"] == 0

    [(subject, _), *_] = mails(smtp)
    assert subject == f"Übertragung fehlgeschlagen: {COMPANY}"
    body = smtp.messages[0][1].get_content()
    assert "3 Belege konnten nicht übertragen werden" in body and "#DCO01216 Datei zu groß" in body


def test_missing_token_with_approved_documents_pauses_once(alarmed: World, smtp: SmtpSink) -> None:
    world = alarmed
    assert token_care(context(world))["alarms"] == 0  # no token, but nothing waiting either
    add_approved(world, 1)
    assert token_care(context(world))["alarms"] == 1
    assert token_care(context(world))["alarms"] == 0
    body = smtp.messages[0][1].get_content()
    assert "Grund: Token fehlt. 1 freigegebener Beleg wartet auf die Übertragung." in body


# --- housekeeping -------------------------------------------------------------------------------


def test_housekeeping(world: World) -> None:
    engine, now = world.engine, utcnow()
    # one-off logins (first: a new login also deletes expired pending rows): the operator's has run out, the admin's has not
    assert world.request_token(world.operator, ConnectionKind.one_off).ok
    assert world.request_token(world.admin, ConnectionKind.one_off).ok
    expired_slot, kept_slot = f"one_off:{world.operator.id}", f"one_off:{world.admin.id}"
    with unit_of_work(engine) as s:
        s.exec(update(Connection).where(col(Connection.slot) == expired_slot).values(
            refresh_expires_at=now - timedelta(minutes=1)))
    with unit_of_work(engine) as s:
        for days in (40, 20, 13):
            s.add(HttpLogEntry(at=now - timedelta(days=days), provider="datev", method="GET", host="old.example",
                               path=f"/{days}"))
    # pending logins: one expired, one fresh, plus a verifier whose login is gone
    pending_ids = []
    with unit_of_work(engine) as s:
        for minutes in (-1, 5):
            row = PendingAuthorization(state_hash=f"{minutes:+}".ljust(64, "0"), company_id=world.company_id,
                                       provider="datev", kind="long_term", user_id=id_of(world.admin),
                                       redirect_uri="http://localhost/cb", expires_at=now + timedelta(minutes=minutes))
            s.add(row)
            s.flush()
            pending_ids.append(id_of(row))
            for purpose in ("pkce_verifier", "nonce"):
                put_secret(s, world.keyring, owner_type="pending_authorization", owner_id=id_of(row),
                           purpose=purpose, value="v" * 64)
        put_secret(s, world.keyring, owner_type="pending_authorization", owner_id=99999, purpose="nonce", value="x")
    # documents left "in Übertragung": a dead worker's (lease over) and a live one
    abandoned, live = add_approved(world, 2)
    with unit_of_work(engine) as s:
        for document_id, lease in ((abandoned, now - timedelta(minutes=1)), (live, now + timedelta(minutes=5))):
            s.exec(update(Document).where(col(Document.id) == document_id).values(
                status="transferring", lease_owner="scheduler:dead", lease_until=lease, attempts=1))
    lexware_doc = _lexware_document_in_transfer(world, now - timedelta(minutes=1))
    # process heartbeats: one silent for 8 days (a killed scheduler), one that beat yesterday
    with unit_of_work(engine) as s:
        for name, age in (("gone", timedelta(days=8)), ("recent", timedelta(days=1))):
            s.add(SchedulerHeartbeat(instance_id=name, host="h", pid=1, started_at=now - age, last_tick_at=now - age))

    summary = housekeeping(context(world))

    assert summary == {"http_log_purged": 1, "pending_logins_expired": 1, "abandoned_claims": 2,
                       "one_off_logins_discarded": 1, "alarms_purged": 0, "request_links_expired": 0,
                       "heartbeats_purged": 1}
    with unit_of_work(engine) as s:
        assert sorted(s.exec(select(HttpLogEntry.path).where(HttpLogEntry.host == "old.example")).all()) == [
            "/13", "/20"]  # 14 days are always kept
        assert list(s.exec(select(PendingAuthorization.id)).all()) == [pending_ids[1]]
        assert sorted(s.exec(select(StoredSecret.owner_id).where(
            StoredSecret.owner_type == "pending_authorization")).all()) == [pending_ids[1]] * 2
        docs = {d.id: d for d in s.exec(select(Document)).all()}
        assert (docs[abandoned].status, docs[abandoned].lease_owner, docs[abandoned].lease_until) == (
            DocumentStatus.approved.value, None, None)
        assert (docs[live].status, docs[live].lease_owner) == ("transferring", "scheduler:dead")
        assert docs[lexware_doc].status == DocumentStatus.unresolved.value  # never re-sent to Lexware
        assert list(s.exec(select(SchedulerHeartbeat.instance_id)).all()) == ["recent"]
        [lex_attempt] = s.exec(select(TransferAttempt).where(TransferAttempt.document_id == lexware_doc)).all()
        assert lex_attempt.outcome == "unresolved"
        expired = s.exec(select(Connection).where(Connection.slot == expired_slot)).one()
        kept = s.exec(select(Connection).where(Connection.slot == kept_slot)).one()
        assert (expired.has_token, kept.has_token) == (False, True)
        secret_owners = set(s.exec(select(StoredSecret.owner_id).where(StoredSecret.owner_type == "connection")).all())
        assert expired.id not in secret_owners and kept.id in secret_owners
    assert companies_with_work(engine, PassOptions(trigger="scheduler", actor=process("t")), utcnow()) == {world.company_id: 1}  # the released one
    assert housekeeping(context(world)) == {"http_log_purged": 0, "pending_logins_expired": 0,
                                            "abandoned_claims": 0, "one_off_logins_discarded": 0,
                                            "alarms_purged": 0, "request_links_expired": 0, "heartbeats_purged": 0}


def alarm_context(engine: Engine, keyring: Keyring, smtp_port: int) -> JobContext:
    config = Settings(_env_file=None, app_env="test", smtp_host="127.0.0.1", smtp_port=smtp_port, smtp_tls="none",
                      alarm_emails="ops@example.com")
    return JobContext(engine, config, keyring, "test-1", threading.Event())


def test_alarm_retry_resends_due_alarms_and_housekeeping_purges_old_ones(engine: Engine, keyring: Keyring,
                                                                          smtp: SmtpSink) -> None:
    now = utcnow()
    failed = Alarm("token_invalid:company:1:datev:2026-11-28", "Token ungültig: Nord GmbH (DATEV)", "Bitte neu anmelden.",
                   "error")
    outcome = raise_alarm(engine, alarm_context(engine, keyring, free_port()).settings, failed, timeout=3)
    assert outcome is not None and not outcome.delivered  # the mail server was down
    with unit_of_work(engine) as s:
        s.exec(update(AlarmSent).where(col(AlarmSent.key) == failed.key).values(
            next_attempt_at=now - timedelta(minutes=1)))  # its retry is due
        s.add(AlarmSent(key="old-delivered", title="alt", sent_at=now - timedelta(days=401), delivered=True))
        s.add(AlarmSent(key="old-waiting", title="alt, wartet", sent_at=now - timedelta(days=401), delivered=False,
                        attempts=3, next_attempt_at=now + timedelta(hours=1)))
    ctx = alarm_context(engine, keyring, smtp.port)

    assert [alarm_retry(ctx), alarm_retry(ctx)] == [{"alarms_retried": 1}, {"alarms_retried": 0}]
    assert [housekeeping(ctx)["alarms_purged"], housekeeping(ctx)["alarms_purged"]] == [1, 0]
    assert mails(smtp) == [(failed.title, ["ops@example.com"])]
    with unit_of_work(engine) as s:
        assert {a.key: (a.delivered, a.attempts) for a in s.exec(select(AlarmSent)).all()} == {
            failed.key: (True, 2), "old-waiting": (False, 3)}


def _lexware_document_in_transfer(world: World, lease_until) -> int:
    with unit_of_work(world.engine) as s:
        company_id = present(s.exec(select(Company.id).where(Company.name == "Lexware Demo GmbH")).one())
    report = intake.intake(world.engine, company_id=company_id, actor=process("o@x.de"), files=[("L.pdf", pdf("lex"))])
    document_id = id_of(report.accepted[0])
    with unit_of_work(world.engine) as s:
        s.exec(update(Document).where(col(Document.id) == document_id).values(
            status="transferring", lease_owner="scheduler:dead", lease_until=lease_until, attempts=1))
    return document_id
