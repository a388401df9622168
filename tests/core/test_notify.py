"""core.notify: each alarm once (also across processes), sent to a real local SMTP server and a
real local webhook; failing targets are recorded, never raised. SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine
from sqlmodel import select

from core.alarms import Alarm, webhook_target
from core.config import Settings
from core.db import unit_of_work
from core.models import AlarmSent
from core.notify import NO_TARGETS, alarm_targets, raise_alarm, split_addresses, split_targets
from tests.workers import run_together

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

ALARM = Alarm("token_invalid:company:1:datev:2026-11-28", "Token ungültig: Nord GmbH (DATEV)",
              "Der Zugang von „Nord GmbH“ zu DATEV funktioniert nicht mehr.", "error")


# --- local servers (also used by test_scheduler_jobs) ---------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class SmtpSink:
    """A plain local SMTP server (aiosmtpd) that keeps what it receives."""

    port: int = field(default_factory=free_port)
    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd hook)
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(message["Subject"]) for _, message in self.messages]

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[SmtpSink]:
        sink = cls()
        controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
        controller.start()  # returns once the server answers
        try:
            yield sink
        finally:
            controller.stop()


@dataclass
class HookSink:
    """A local JSON webhook receiver; paths under /fail answer 500."""

    port: int
    received: list[dict[str, Any]]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[HookSink]:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server hook)
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"path": self.path, "json": json.loads(raw.decode("utf-8"))})
                self.send_response(500 if self.path.startswith("/fail") else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield cls(server.server_address[1], received)
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


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
        result = list(session.exec(select(AlarmSent).order_by(AlarmSent.id)).all())
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
    results = run_together("tests.core.notify_worker", [[database_url, str(smtp.port), ALARM.key]] * 3, timeout=60)

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


def test_without_any_target_the_alarm_is_recorded_as_not_delivered(engine: Engine) -> None:
    outcome = raise_alarm(engine, settings(), ALARM)
    assert outcome is not None and outcome.results == [] and not outcome.delivered
    [row] = rows(engine)
    assert (row.delivered, row.detail) == (False, NO_TARGETS)


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
