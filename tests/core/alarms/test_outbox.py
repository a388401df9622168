"""core.alarms.outbox: each alarm once (also across processes), sent to a real local SMTP server and a
real local webhook; failing targets are recorded, never raised. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import col, select

from core.alarms.delivery import alarm_targets, split_addresses, split_targets, webhook_target
from core.alarms.messages import Alarm
from core.alarms.outbox import (
    NO_TARGETS,
    RETRY_BATCH,
    SENDING,
    claim_lease,
    purge_old_alarms,
    raise_alarm,
    retry_due_alarms,
)
from core.platform.config import Settings
from core.platform.db import unit_of_work
from core.platform.models import AlarmSent, Company, utcnow
from testkit.rows import present
from testkit.workers import run_together
from tests.support.sinks import HookSink, SmtpSink, free_port

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

ALARM = Alarm("token_invalid:company:1:datev:2026-11-28", "Token ungültig: Nord GmbH (DATEV)",
              "Der Zugang von „Nord GmbH“ zu DATEV funktioniert nicht mehr.", "error")


# --- local servers (also used by test_scheduler_jobs) ---------------------------------------


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink.running() as sink:
        yield sink


@pytest.fixture
def hook() -> Iterator[HookSink]:
    with HookSink.running() as sink:
        yield sink


@pytest.fixture
def closed_port() -> Iterator[int]:
    """Bound but never listening: connections are refused at once."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


def settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, app_env="test", **overrides)


def rows(engine: Engine) -> list[AlarmSent]:
    with unit_of_work(engine) as session:
        result = list(session.exec(select(AlarmSent).order_by(col(AlarmSent.id))).all())
        session.expunge_all()
        return result


# --- tests ----------------------------------------------------------------------------------


def test_mail_arrives_once_even_when_raised_twice(engine: Engine, smtp: SmtpSink) -> None:
    config = settings(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_tls="none",
                      smtp_sender="alarm@tokendesk.example", alarm_emails="buchhaltung@example.com")

    first = raise_alarm(engine, config, ALARM, company_id=1, recipients="chefin@example.de; Buchhaltung@example.com",
                        timeout=5)
    second = raise_alarm(engine, config, ALARM, company_id=1, recipients="chefin@example.de", timeout=5)

    assert first is not None and first.delivered and second is None
    # one message per distinct recipient (Apprise sends them one by one), global and company ones
    assert sorted(r for rcpts, _ in smtp.messages for r in rcpts) == ["buchhaltung@example.com", "chefin@example.de"]
    assert smtp.subjects() == [ALARM.title, ALARM.title]
    [row] = rows(engine)
    assert (row.key, row.company_id, row.delivered) == (ALARM.key, 1, True)
    assert row.detail == "mailto://127.0.0.1: zugestellt"


def test_two_processes_at_once_send_one_mail(engine: Engine, database_url: str, smtp: SmtpSink) -> None:
    results = run_together("tests.support.notify_worker", [["raise", database_url, str(smtp.port), ALARM.key]] * 3, timeout=60)

    assert all(r.returncode == 0 for r in results), [r.stderr[-2000:] for r in results]
    outcomes = [json.loads(r.stdout.strip().splitlines()[-1]) for r in results]
    assert sorted(o["sent"] for o in outcomes) == [False, False, True]
    assert [o["delivered"] for o in outcomes if o["sent"]] == [True]
    assert [rcpts for rcpts, _ in smtp.messages] == [["buchhaltung@example.com"]]
    assert len(rows(engine)) == 1


def test_webhook_gets_the_json_and_the_secret_path_stays_out_of_the_record(engine: Engine, hook: HookSink) -> None:
    config = settings(alarm_targets=webhook_target(hook.url("/hooks/T0KEN?sig=geheim")))

    outcome = raise_alarm(engine, config, ALARM, timeout=5)

    assert outcome is not None and outcome.delivered
    [request] = hook.received
    assert request["path"] == "/hooks/T0KEN?sig=geheim"
    assert (request["json"]["title"], request["json"]["message"], request["json"]["type"]) == (
        ALARM.title, ALARM.body, "failure")
    [row] = rows(engine)
    assert row.delivered and row.detail == "json://127.0.0.1: zugestellt"
    assert "T0KEN" not in (row.detail or "") and "geheim" not in (row.detail or "")


def test_failing_targets_are_recorded_and_nothing_raises(engine: Engine, hook: HookSink, closed_port: int) -> None:
    config = settings(alarm_targets=f"json://127.0.0.1:{closed_port}/x, {webhook_target(hook.url('/fail/S3CRET'))},"
                                    f" {webhook_target(hook.url('/ok'))}",
                      alarm_emails="ops@example.com")  # no SMTP_HOST: no e-mail target

    outcome = raise_alarm(engine, config, ALARM, timeout=3)

    assert outcome is not None
    assert [(r.target, r.ok) for r in outcome.results] == [("json://127.0.0.1", False), ("json://127.0.0.1", False),
                                                           ("json://127.0.0.1", True)]
    assert [r["path"] for r in hook.received] == ["/fail/S3CRET", "/ok"]
    [row] = rows(engine)
    assert row.delivered is False  # not every target got it
    assert row.detail is not None and row.detail.count("Senden fehlgeschlagen") == 2 and "zugestellt" in row.detail
    assert "S3CRET" not in row.detail


def test_without_any_target_the_alarm_is_recorded_as_not_delivered_and_not_retried(engine: Engine) -> None:
    outcome = raise_alarm(engine, settings(), ALARM)
    assert outcome is not None and outcome.results == [] and not outcome.delivered
    [row] = rows(engine)
    assert (row.delivered, row.detail, row.next_attempt_at) == (False, NO_TARGETS, None)
    assert retry_due_alarms(engine, settings(), now=utcnow() + timedelta(days=30)) == 0


def test_target_and_address_lists() -> None:
    assert split_targets("json://a.example/x, mailto://u:p@mail.example?to=a@x.de,b@x.de  slack://T/B/C") == [
        "json://a.example/x", "mailto://u:p@mail.example?to=a@x.de,b@x.de", "slack://T/B/C"]
    assert split_targets("  ") == []
    assert split_addresses("a@x.de, B@x.de", "b@X.de; c@x.de kein-name") == ["a@x.de", "B@x.de", "c@x.de"]
    with_smtp = alarm_targets(settings(smtp_host="mail.example", smtp_port=25, smtp_tls="none", alarm_emails="a@x.de",
                                       alarm_targets="json://hook.example/x"), "b@x.de")
    assert with_smtp[0] == "json://hook.example/x"
    assert with_smtp[1].startswith("mailto://mail.example:25?") and "to=a%40x.de%2Cb%40x.de" in with_smtp[1]
    assert alarm_targets(settings(alarm_emails="a@x.de"), "b@x.de") == []  # e-mail needs SMTP_HOST


# --- retries of undelivered alarms ----------------------------------------------------------


def mail_settings(port: int, **overrides: Any) -> Settings:
    return settings(smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none", alarm_emails="ops@example.com",
                    **overrides)


def failed_alarm(engine: Engine, port: int, alarm: Alarm = ALARM, company_id: int | None = None) -> AlarmSent:
    """Raise `alarm` while nothing listens on `port`: the first attempt fails."""
    outcome = raise_alarm(engine, mail_settings(port), alarm, company_id=company_id, timeout=3)
    assert outcome is not None and not outcome.delivered
    [row] = [r for r in rows(engine) if r.key == alarm.key]
    return row


def test_mail_that_failed_is_sent_once_when_its_retry_is_due(engine: Engine) -> None:
    port = free_port()  # the mail server is down at first: nothing listens
    first = failed_alarm(engine, port)
    assert (first.attempts, first.delivered, first.body, first.severity) == (1, False, ALARM.body, "error")
    assert first.next_attempt_at is not None and "Senden fehlgeschlagen" in (first.detail or "")
    due = first.next_attempt_at

    with SmtpSink.running(port) as smtp:  # the server is back
        early = retry_due_alarms(engine, mail_settings(port), now=due - timedelta(minutes=1), timeout=5)
        assert (early, smtp.messages) == (0, [])
        assert retry_due_alarms(engine, mail_settings(port), now=due, timeout=5) == 1
        assert retry_due_alarms(engine, mail_settings(port), now=due + timedelta(days=1), timeout=5) == 0

    assert [(rcpts, str(message["Subject"])) for rcpts, message in smtp.messages] == [(["ops@example.com"], ALARM.title)]
    assert ALARM.body in smtp.messages[0][1].get_content()
    [row] = rows(engine)
    assert (row.delivered, row.attempts, row.next_attempt_at, row.detail) == (True, 2, None, "mailto://127.0.0.1: zugestellt")


def test_webhook_answering_500_is_given_up_after_the_maximum_attempts(engine: Engine, hook: HookSink) -> None:
    config = settings(alarm_targets=webhook_target(hook.url("/fail/S3CRET")), alarm_max_attempts=3)
    outcome = raise_alarm(engine, config, ALARM, timeout=3)
    assert outcome is not None and not outcome.delivered
    start = utcnow()

    resent = [retry_due_alarms(engine, config, now=start + timedelta(days=day), timeout=3) for day in (1, 2, 3, 4)]

    assert resent == [1, 1, 0, 0]
    assert len(hook.received) == 3
    [row] = rows(engine)
    assert (row.delivered, row.attempts, row.next_attempt_at) == (False, 3, None)
    assert row.detail is not None and row.detail.endswith(" – aufgegeben nach 3 Versuchen")
    assert "Senden fehlgeschlagen" in row.detail and "S3CRET" not in row.detail


def test_two_processes_retrying_at_once_send_each_alarm_once(engine: Engine, database_url: str, smtp: SmtpSink,
                                                             closed_port: int) -> None:
    # several due alarms (one retry pass's worth), so the processes overlap on many claims rather than on one
    alarms = [Alarm(f"token_invalid:company:{n}:datev:2026-11-28", f"Token ungültig: Firma {n}", "Bitte neu anmelden.",
                    "error") for n in range(1, RETRY_BATCH + 1)]
    for alarm in alarms:
        failed_alarm(engine, closed_port, alarm)
    when = (utcnow() + timedelta(days=1)).isoformat()

    results = run_together("tests.support.notify_worker", [["retry", database_url, str(smtp.port), when]] * 3, timeout=60)

    assert all(r.returncode == 0 for r in results), [r.stderr[-2000:] for r in results]
    assert sum(int(r.stdout.strip().splitlines()[-1]) for r in results) == len(alarms)
    assert sorted(smtp.subjects()) == sorted(alarm.title for alarm in alarms)  # each exactly once
    assert [(row.delivered, row.attempts) for row in rows(engine)] == [(True, 2)] * len(alarms)


class Crash(BaseException):
    """Stands for the process dying while it sends."""


def crash(*_args: Any, **_kwargs: Any) -> None:
    raise Crash()


def test_a_claim_whose_process_died_is_sent_after_its_lease(engine: Engine, smtp: SmtpSink,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config = mail_settings(smtp.port)
    before = utcnow()
    with monkeypatch.context() as patched:
        patched.setattr("core.alarms.outbox.send_alarm", crash)
        with pytest.raises(Crash):
            raise_alarm(engine, config, ALARM, timeout=5)
    [claimed] = rows(engine)
    assert (claimed.detail, claimed.attempts, claimed.delivered) == (SENDING, 1, False)
    assert claimed.next_attempt_at is not None and claimed.next_attempt_at >= before + claim_lease(1, 5)

    assert retry_due_alarms(engine, config, now=claimed.next_attempt_at - timedelta(minutes=1), timeout=5) == 0
    assert smtp.messages == []  # the lease still protects the (dead) sender
    assert retry_due_alarms(engine, config, now=claimed.next_attempt_at, timeout=5) == 1

    assert smtp.subjects() == [ALARM.title]
    [row] = rows(engine)
    assert (row.delivered, row.attempts, row.next_attempt_at) == (True, 2, None)


def test_a_died_last_attempt_is_given_up_without_sending(engine: Engine, smtp: SmtpSink,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    config = mail_settings(smtp.port, alarm_max_attempts=1)
    with monkeypatch.context() as patched:
        patched.setattr("core.alarms.outbox.send_alarm", crash)
        with pytest.raises(Crash):
            raise_alarm(engine, config, ALARM, timeout=5)

    assert retry_due_alarms(engine, config, now=utcnow() + timedelta(days=1), timeout=5) == 0

    assert smtp.messages == []
    [row] = rows(engine)
    assert (row.delivered, row.next_attempt_at, row.detail) == (
        False, None, "Versand unterbrochen – aufgegeben nach 1 Versuch")


def test_a_retry_goes_to_the_targets_configured_now(engine: Engine, smtp: SmtpSink, closed_port: int) -> None:
    with unit_of_work(engine) as session:
        active = Company(name="Nord GmbH", alarm_recipients="chefin@nord.example")
        archived = Company(name="Süd GmbH", alarm_recipients="chef@sued.example")
        session.add_all([active, archived])
    for company in (active, archived):
        alarm = Alarm(f"token_invalid:company:{company.id}:datev:2026-11-28", f"Token ungültig: {company.name}",
                      "Bitte neu anmelden.", "error")
        raise_alarm(engine, mail_settings(closed_port), alarm, company_id=company.id,
                    recipients=company.alarm_recipients, timeout=3)
    failed_alarm(engine, closed_port, Alarm("company_paused:company:999:2026-11-28", "Unternehmen pausiert: Alt",
                                            "Gelöscht.", "warning"), company_id=999)  # the company is gone
    with unit_of_work(engine) as session:
        gone = present(session.get(Company, archived.id))
        gone.archived_at = utcnow()
        session.add(gone)

    assert retry_due_alarms(engine, mail_settings(smtp.port), now=utcnow() + timedelta(days=1), timeout=5) == 3

    assert sorted((str(message["Subject"]), rcpt) for rcpts, message in smtp.messages for rcpt in rcpts) == [
        ("Token ungültig: Nord GmbH", "chefin@nord.example"), ("Token ungültig: Nord GmbH", "ops@example.com"),
        ("Token ungültig: Süd GmbH", "ops@example.com"), ("Unternehmen pausiert: Alt", "ops@example.com")]
    assert all(row.delivered for row in rows(engine))


def test_old_final_alarms_are_purged_and_pending_retries_kept(engine: Engine) -> None:
    now = utcnow()
    old, recent = now - timedelta(days=401), now - timedelta(days=399)
    with unit_of_work(engine) as session:
        for key, sent_at, delivered, next_attempt_at in (
                ("old-delivered", old, True, None), ("old-given-up", old, False, None),
                ("old-retry-due", old, False, now - timedelta(minutes=1)),
                ("old-being-sent", old, False, now + timedelta(minutes=1)), ("recent-delivered", recent, True, None)):
            session.add(AlarmSent(key=key, title=key, body="", severity="info", sent_at=sent_at,
                                  delivered=delivered, next_attempt_at=next_attempt_at))

    counts = [purge_old_alarms(engine, settings(), now, batch=1) for _ in range(3)]

    assert counts == [1, 1, 0]
    assert sorted(row.key for row in rows(engine)) == ["old-being-sent", "old-retry-due", "recent-delivered"]


def test_claim_lease_covers_every_target() -> None:
    assert claim_lease(0, 10) == claim_lease(1, 10) == timedelta(seconds=21 + 60)
    assert claim_lease(3, 5) == timedelta(seconds=3 * 11 + 60)
