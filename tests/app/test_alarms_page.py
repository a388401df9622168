"""Alarme page: delivery states of recent alarms for everyone with a role; the test alarm for admins,
sent to a real local SMTP server (and to a closed port, where it waits for its retry)."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from sqlmodel import select
from streamlit.testing.v1 import AppTest

from core.platform.db import get_engine, unit_of_work
from core.platform.models import AlarmSent, AuditEvent, Company, utcnow
from tests.support.sinks import SmtpSink

PAGE = "pages/alarms.py"
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")


def seed_alarms(database_url: str) -> None:
    now = utcnow()
    with unit_of_work(get_engine(database_url)) as s:
        company = s.exec(select(Company).where(Company.name == "Musterfirma GmbH")).one()
        s.add_all([
            AlarmSent(key="a", company_id=company.id, title="Token ungültig: Musterfirma GmbH (DATEV)",
                      sent_at=now - timedelta(hours=3), delivered=True, detail="mailto://mail.example: zugestellt"),
            AlarmSent(key="b", company_id=company.id, title="Unternehmen pausiert: Musterfirma GmbH",
                      sent_at=now - timedelta(hours=2), delivered=False, attempts=2,
                      next_attempt_at=now + timedelta(minutes=30), detail="mailto://mail.example: Zeitüberschreitung"),
            AlarmSent(key="c", title="Test-Alarm von Token Desk", sent_at=now - timedelta(hours=1), delivered=False,
                      attempts=8, detail="json://hooks.example: fehlgeschlagen – aufgegeben nach 8 Versuchen"),
            AlarmSent(key="d", company_id=company.id, title="Belege warten: Musterfirma GmbH",
                      sent_at=now - timedelta(hours=4), delivered=False, attempts=1,
                      detail="Nicht gesendet: Demo-Daten, beim Einrichten der Demo entstanden."),
        ])


def table(at: AppTest) -> list[dict]:
    rows: list[dict] = at.dataframe[0].value.to_dict("records")
    return rows


def test_viewer_sees_each_alarm_with_its_delivery_state_and_no_test_button(app, app_db: str) -> None:
    seed_alarms(app_db)
    at = app("viewer", PAGE).run()
    assert not at.exception
    rows = table(at)
    assert [(r["Unternehmen"], r["Zustellung"].split(" ")[0], r["Versuche"]) for r in rows] == [
        ("–", "nicht", 8), ("Musterfirma GmbH", "nächster", 2), ("Musterfirma GmbH", "zugestellt", 1),
        ("Musterfirma GmbH", "nicht", 1)]
    assert rows[1]["Zustellung"].startswith("nächster Versuch ") and rows[0]["Zustellung"] == "nicht zugestellt"
    assert rows[3]["Zustellung"] == "nicht gesendet"  # never went to a target (the demo's set-up): not a failure
    assert "Test-Alarm senden" not in [b.label for b in at.button]

    at.toggle(key="alarms_only_undelivered").set_value(True).run()
    assert [r["Alarm"] for r in table(at)] == ["Test-Alarm von Token Desk", "Unternehmen pausiert: Musterfirma GmbH",
                                               "Belege warten: Musterfirma GmbH"]


def test_admin_without_targets_is_told_what_to_set(app, app_db: str) -> None:
    at = app("admin", PAGE).run()
    assert not at.exception
    assert any("keine Alarm-Empfänger eingerichtet" in i.value for i in at.info)
    assert "Test-Alarm senden" not in [b.label for b in at.button]


def test_admin_sends_a_test_alarm_that_arrives(app, app_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with SmtpSink.running() as smtp:
        for name, value in {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port), "SMTP_TLS": "none",
                            "ALARM_EMAILS": "buchhaltung@example.com"}.items():
            monkeypatch.setenv(name, value)
        at = app("admin", PAGE).run()
        at.button(key="send_test_alarm").click().run()
        assert not at.exception
        assert smtp.subjects() == ["Test-Alarm von Token Desk"]
        assert [rcpt for rcpt, _ in smtp.messages] == [["buchhaltung@example.com"]]
    assert [s.value for s in at.success] == ["Test-Alarm zugestellt (mailto://127.0.0.1: zugestellt)."]
    assert [(r["Alarm"], r["Zustellung"]) for r in table(at)] == [("Test-Alarm von Token Desk", "zugestellt")]
    with unit_of_work(get_engine(app_db)) as s:
        events = [(e.action, e.actor) for e in s.exec(select(AuditEvent)).all() if e.action.startswith("alarm.")]
    assert events == [("alarm.test_sent", "admin@tokendesk.demo")]


def test_a_test_alarm_that_fails_says_so_and_waits_for_its_retry(app, app_db: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:  # bound, never listening: the mail server is down
        closed.bind(("127.0.0.1", 0))
        for name, value in {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(closed.getsockname()[1]), "SMTP_TLS": "none",
                            "ALARM_EMAILS": "buchhaltung@example.com"}.items():
            monkeypatch.setenv(name, value)
        at = app("admin", PAGE).run()
        at.button(key="send_test_alarm").click().run()
    assert not at.exception
    (error,) = [e.value for e in at.error]
    assert error.startswith("Test-Alarm nicht überall zugestellt (mailto://127.0.0.1: ")
    assert "buchhaltung" not in error  # targets are shown by scheme and host only
    (row,) = table(at)
    assert row["Zustellung"].startswith("nächster Versuch ") and row["Versuche"] == 1
