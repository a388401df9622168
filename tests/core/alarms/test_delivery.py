"""Alarms through Apprise against real servers on 127.0.0.1: SMTP (aiosmtpd) and a JSON webhook."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import apprise
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from apprise.plugins.custom_json import NotifyJSON
from apprise.plugins.email import NotifyEmail

from core.alarms.delivery import DeliveryResult, TlsMode, redact_target, send_alarm, smtp_target, webhook_target
from core.alarms.messages import (
    Alarm,
    Severity,
    company_paused,
    expiry_step,
    token_expired,
    token_expiring,
    token_invalid,
    transfers_failing,
)

# Apprise imports imghdr lazily on its first send (its concern, not ours).
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

WHEN = datetime(2026, 11, 28, 8, 30, tzinfo=UTC)  # 09:30 in Berlin
ALARM = token_invalid(
    company_id=7, company_name="Müller & Söhne GmbH", provider_label="DATEV", reason="Token widerrufen", when=WHEN
)
SMTP_USER = "alarm@example.com"
SMTP_PASSWORD = "p@ss:w/rd?#&%+ x"  # smtplib sends ASCII credentials only


# --- local servers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections at once: bound, never listening, held for the test."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield holder.getsockname()[1]


@dataclass
class MailBox:
    port: int
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd hook name
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        return AuthResult(success=(login, password) == (SMTP_USER, SMTP_PASSWORD))


@pytest.fixture
def mailbox() -> Iterator[MailBox]:
    """A plain SMTP server (no TLS) that accepts AUTH LOGIN/PLAIN for SMTP_USER only."""
    box = MailBox(port=free_port())
    controller = Controller(
        box, hostname="127.0.0.1", port=box.port, authenticator=box.authenticate, auth_require_tls=False
    )
    controller.start()  # returns once the server answers
    yield box
    controller.stop()


@dataclass
class Hook:
    port: int
    requests: list[dict[str, Any]]


@pytest.fixture
def webhook() -> Iterator[Hook]:
    """A JSON webhook receiver; any path under /fail answers 500."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server hook name
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(raw.decode("utf-8"))})
            self.send_response(500 if self.path.startswith("/fail") else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # listening from here on
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield Hook(port=server.server_address[1], requests=received)
    server.shutdown()
    server.server_close()
    thread.join()


# --- e-mail ---------------------------------------------------------------------------------


def test_smtp_alarm_arrives_with_subject_german_body_and_addresses(mailbox: MailBox) -> None:
    target = smtp_target(
        "127.0.0.1", mailbox.port, "alarm@example.com", ["buchhaltung@example.com", "chefin@example.de"], tls="none"
    )
    results = send_alarm(ALARM, [target], timeout=3)

    assert results == [DeliveryResult(target="mailto://127.0.0.1", ok=True, error=None)]
    # Apprise sends one message per recipient.
    assert sorted(rcpt for _, rcpts, _ in mailbox.messages for rcpt in rcpts) == [
        "buchhaltung@example.com",
        "chefin@example.de",
    ]
    for mail_from, rcpts, message in mailbox.messages:
        assert mail_from == "alarm@example.com"
        assert message["To"] == rcpts[0]
        assert message["From"].addresses[0].addr_spec == "alarm@example.com"
        assert message["From"].addresses[0].display_name == "Token Desk"
        assert message["Subject"] == "Token ungültig: Müller & Söhne GmbH (DATEV)"
        assert message.get_content_type() == "text/plain"
        body = message.get_content()
        assert "Der Zugang von „Müller & Söhne GmbH“ zu DATEV funktioniert nicht mehr." in body
        assert "Grund: Token widerrufen" in body
        assert "28.11.2026 09:30" in body
    assert mailbox.logins == []  # no user given, no AUTH attempted


def test_smtp_login_with_special_characters_in_credentials(mailbox: MailBox) -> None:
    target = smtp_target(
        "127.0.0.1",
        mailbox.port,
        "alarm@example.com",
        ["buchhaltung@example.com"],
        user=SMTP_USER,
        password=SMTP_PASSWORD,
        tls="none",
    )
    results = send_alarm(ALARM, [target], timeout=3)

    assert mailbox.logins == [(SMTP_USER, SMTP_PASSWORD)]
    assert results == [DeliveryResult(target="mailto://127.0.0.1", ok=True, error=None)]
    assert len(mailbox.messages) == 1
    assert "p@ss" not in repr(results)


def test_non_ascii_smtp_password_fails_quietly(mailbox: MailBox) -> None:
    """smtplib encodes AUTH data as ASCII; Apprise reports that as a failed delivery, no exception."""
    target = smtp_target(
        "127.0.0.1", mailbox.port, "alarm@example.com", ["a@example.com"], user=SMTP_USER, password="Grüße", tls="none"
    )
    [result] = send_alarm(ALARM, [target], timeout=3)
    assert result.ok is False
    assert "Grüße" not in repr(result)
    assert mailbox.messages == []


def test_starttls_against_a_plain_server_fails_without_sending(mailbox: MailBox) -> None:
    """Proves the mode reaches Apprise: with "starttls" it insists on TLS, with "none" it does not try."""
    target = smtp_target("127.0.0.1", mailbox.port, "alarm@example.com", ["a@example.com"], tls="starttls")
    [result] = send_alarm(ALARM, [target], timeout=3)
    assert result.ok is False
    assert result.target == "mailtos://127.0.0.1"
    assert mailbox.messages == []


@pytest.mark.parametrize(
    ("tls", "scheme", "mode"),
    [("none", "mailto", "insecure"), ("starttls", "mailtos", "starttls"), ("ssl", "mailtos", "ssl")],
)
def test_smtp_target_round_trips_through_apprise(tls: TlsMode, scheme: str, mode: str) -> None:
    target = smtp_target(
        "smtp.example.com",
        2525,
        "alarm@example.com",
        ["a@example.com", "b@example.de"],
        user="konto@example.com",
        password=SMTP_PASSWORD,
        tls=tls,
    )
    assert target.startswith(f"{scheme}://")
    assert SMTP_PASSWORD not in target
    service = apprise.Apprise.instantiate(target)
    assert service is not None
    assert isinstance(service, NotifyEmail)  # the plugin the URL names (typed access to its fields)
    assert (service.secure_mode, service.smtp_host, service.port) == (mode, "smtp.example.com", 2525)
    assert (service.user, service.password) == ("konto@example.com", SMTP_PASSWORD)
    assert [addr for _, addr in service.targets] == ["a@example.com", "b@example.de"]
    assert service.from_addr[1] == "alarm@example.com"


def test_smtp_target_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        smtp_target("h", 25, "a@example.com", [], tls="none")
    with pytest.raises(ValueError):
        smtp_target("h", 25, "a@example.com", ["b@example.com"], password="x")
    with pytest.raises(ValueError):
        not_a_mode: Any = "tls"  # outside TlsMode on purpose: the runtime check is under test
        smtp_target("h", 25, "a@example.com", ["b@example.com"], tls=not_a_mode)


# --- webhook -------------------------------------------------------------------------------


def test_webhook_receives_title_body_and_type(webhook: Hook) -> None:
    target = webhook_target(f"http://127.0.0.1:{webhook.port}/hooks/T0KEN-SECRET?sig=abc123")
    results = send_alarm(ALARM, [target], timeout=3)

    assert results == [DeliveryResult(target="json://127.0.0.1", ok=True, error=None)]
    [request] = webhook.requests
    assert request["path"] == "/hooks/T0KEN-SECRET?sig=abc123"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["User-Agent"] == "Token Desk"
    payload = request["json"]
    assert payload["title"] == ALARM.title
    assert payload["message"] == ALARM.body
    assert payload["type"] == "failure"  # severity "error"
    assert payload["version"] == "1.0"


@pytest.mark.parametrize(("severity", "apprise_type"), [("info", "info"), ("warning", "warning"), ("error", "failure")])
def test_severity_maps_to_apprise_type(webhook: Hook, severity: Severity, apprise_type: str) -> None:
    alarm = Alarm(key="k", title="Titel", body="Text", severity=severity)
    assert send_alarm(alarm, [f"json://127.0.0.1:{webhook.port}/"], timeout=3)[0].ok
    assert webhook.requests[0]["json"]["type"] == apprise_type


def test_one_failing_target_does_not_hide_the_others(webhook: Hook, closed_port: int) -> None:
    targets = [
        f"json://127.0.0.1:{closed_port}/hooks/SECRETPATH",
        f"json://127.0.0.1:{webhook.port}/ok",
        f"json://127.0.0.1:{webhook.port}/fail/SECRETPATH",
        f"mailto://127.0.0.1:{closed_port}?smtp=127.0.0.1&mode=insecure&from=a%40example.com",
    ]
    results = send_alarm(ALARM, targets, timeout=2)

    assert [r.ok for r in results] == [False, True, False, False]
    assert [r.target for r in results] == ["json://127.0.0.1"] * 3 + ["mailto://127.0.0.1"]
    assert all(r.error for r in results if not r.ok)
    assert "SECRETPATH" not in repr(results)
    assert [r["path"] for r in webhook.requests] == ["/ok", "/fail/SECRETPATH"]


@pytest.mark.parametrize(
    "target",
    ["garbage", "", "nonsense://host", "json://", "mailto://nobody", "msteams://a/b", "mailto://user:S3cr3t@"],
)
def test_bad_targets_fail_quietly(target: str) -> None:
    [result] = send_alarm(ALARM, [target], timeout=1)
    assert result.ok is False
    assert result.error
    assert "S3cr3t" not in repr(result)


def test_no_targets_no_results() -> None:
    assert send_alarm(ALARM, []) == []


def test_webhook_target_keeps_port_path_and_query() -> None:
    assert webhook_target("http://hooks.example.com:8080/a/b") == "json://hooks.example.com:8080/a/b"
    assert webhook_target("https://hooks.example.com") == "jsons://hooks.example.com/"
    assert (
        webhook_target("https://u:pw@x.example.com/webhook/XYZ?token=abc&empty=")
        == "jsons://u:pw@x.example.com/webhook/XYZ?-token=abc&-empty="
    )
    service = apprise.Apprise.instantiate(webhook_target("https://x.example.com:8443/p/q?token=abc"))
    assert service is not None
    assert isinstance(service, NotifyJSON)  # the plugin the URL names (typed access to its fields)
    assert (service.secure, service.port, service.fullpath, service.params) == (True, 8443, "/p/q", {"token": "abc"})
    with pytest.raises(ValueError):
        webhook_target("ftp://x.example.com/")
    with pytest.raises(ValueError):
        webhook_target("hooks.example.com/path")


# --- redaction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown", "secrets"),
    [
        (
            "mailtos://konto%40example.com:Geheim%21@smtp.example.com:587?to=a%40example.com",
            "mailtos://smtp.example.com",
            ["Geheim", "konto", "587", "a%40"],
        ),
        (
            "json://user:pw123@hooks.example.com:8443/services/T00/B00/XXXX?-token=tok",
            "json://hooks.example.com",
            ["pw123", "XXXX", "tok", "user"],
        ),
        ("jsons://hooks.example.com/secret-path", "jsons://hooks.example.com", ["secret-path"]),
        ("https://example.com/hook/abc", "https://example.com", ["abc"]),
        ("slack://TokenA/TokenB/TokenC/#buchhaltung", "slack://…", ["TokenA", "TokenB", "buchhaltung"]),
        ("msteams://myteam/tokenA/tokenB/tokenC", "msteams://…", ["myteam", "tokenA"]),
        ("discord://webhook_id/webhook_token", "discord://…", ["webhook"]),
        ("MAILTO://SMTP.Example.com", "mailto://smtp.example.com", []),
        ("no scheme at all", "ungültige Adresse", ["scheme"]),
        ("json://[broken", "ungültige Adresse", ["broken"]),
    ],
)
def test_redact_target_shows_scheme_and_host_only(url: str, shown: str, secrets: list[str]) -> None:
    assert redact_target(url) == shown
    for secret in secrets:
        assert secret not in redact_target(url)


# --- message builders --------------------------------------------------------------------------


def test_token_invalid_text_and_key() -> None:
    assert ALARM.key == "token_invalid:company:7:datev:2026-11-28"
    assert ALARM.severity == "error"
    assert "Belege" in ALARM.body and "erneut" in ALARM.body
    other_provider = token_invalid(
        company_id=7, company_name="Müller", provider_label="Lexware Office", reason="401", when=WHEN
    )
    assert other_provider.key == "token_invalid:company:7:lexware-office:2026-11-28"
    late_evening = datetime(2026, 11, 28, 23, 30, tzinfo=UTC)  # already 29.11. in Berlin
    assert token_invalid(
        company_id=7, company_name="M", provider_label="DATEV", reason="x", when=late_evening
    ).key.endswith("2026-11-29")
    with pytest.raises(ValueError):
        token_invalid(company_id=7, company_name="M", provider_label="DATEV", reason="x", when=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("days_left", "step"),
    [(90, None), (61, None), (60, 60), (31, 60), (30, 30), (15, 30), (14, 14), (8, 14), (7, 7), (2, 7), (1, 1), (0, 1)],
)
def test_expiry_steps(days_left: int, step: int | None) -> None:
    assert expiry_step(days_left) == step


def test_token_expiring_text_key_and_severity() -> None:
    def build(days_left: int, valid_until: str = "27.01.2027") -> Alarm:
        return token_expiring(
            company_id=3,
            company_name="Beispiel KG",
            provider_label="DATEV",
            days_left=days_left,
            valid_until_text=valid_until,
        )

    thirty = build(30)
    assert thirty.key == "token_expiring:company:3:datev:27.01.2027:30"
    assert thirty.title == "Token läuft in 30 Tagen ab: Beispiel KG (DATEV)"
    assert "gültig bis 27.01.2027" in thirty.body and "Übertragung" in thirty.body
    assert build(29).key == thirty.key  # same step: the caller sends it once
    assert build(29, "27.03.2027").key != thirty.key  # renewed token: reminders start over
    assert [build(d).severity for d in (60, 30, 14, 7, 1)] == ["info", "info", "warning", "warning", "error"]
    assert "morgen" in build(1).title and "heute" in build(0).title
    with pytest.raises(ValueError):
        build(61)


def test_token_expired_text_key_and_severity() -> None:
    expired = token_expired(company_id=3, company_name="Beispiel KG", provider_label="DATEV", expired_at=WHEN)
    assert expired.key == "token_expired:company:3:datev:2026-11-28"
    assert expired.title == "Token abgelaufen: Beispiel KG (DATEV)"
    assert expired.severity == "error"
    assert "ist am 28.11.2026 09:30 abgelaufen" in expired.body  # Berlin time
    assert "Bitte fordern Sie in Token Desk ein neues Langzeittoken an." in expired.body
    lexware = token_expired(company_id=3, company_name="Beispiel KG", provider_label="Lexware Office", expired_at=WHEN)
    assert lexware.key == "token_expired:company:3:lexware-office:2026-11-28"
    assert "Bitte hinterlegen Sie in Token Desk einen neuen API-Schlüssel." in lexware.body


def test_company_paused_and_transfers_failing() -> None:
    paused = company_paused(company_id=5, company_name="Nord GmbH", reason="Token ungültig", when=WHEN)
    assert paused.key == "company_paused:company:5:2026-11-28"
    assert paused.title == "Belege warten: Nord GmbH"  # "pausiert" only for a real pause (the Übersicht's word)
    assert company_paused(company_id=5, company_name="Nord GmbH", reason="pausiert: Zugriff verweigert",
                          when=WHEN).title == "Unternehmen pausiert: Nord GmbH"
    assert "Grund: Token ungültig" in paused.body and paused.severity == "warning"

    failing = transfers_failing(
        company_id=5, company_name="Nord GmbH", failed_count=3, last_error="#DCO01245\nPDF", when=WHEN
    )
    assert failing.key == "transfers_failing:company:5:2026-11-28"
    assert "3 Belege konnten nicht übertragen werden" in failing.body
    assert "Letzter Fehler: #DCO01245 PDF" in failing.body
    one = transfers_failing(company_id=5, company_name="Nord GmbH", failed_count=1, last_error="x" * 2000, when=WHEN)
    assert "1 Beleg konnte nicht" in one.body
    assert len(one.body) < 800
