"""Alarms to finance staff by e-mail and webhook, sent through Apprise.

Targets are Apprise URLs (mailto://, mailtos://, json://, jsons://, msteams://, slack://, …);
`smtp_target` and `webhook_target` build the two common ones from plain settings. Each target is
sent on its own, and `send_alarm` never raises: a broken target shows up as a failed
`DeliveryResult`. Results name a target only by scheme and host (`redact_target`), never by user,
password, token or webhook path.

The message builders return German texts with a stable dedupe `key`, so the caller can store the
key and send each alarm once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import apprise

from core.platform.timefmt import format_local

Severity = Literal["info", "warning", "error"]
TlsMode = Literal["none", "starttls", "ssl"]

APP_NAME = "Token Desk"
EXPIRY_STEPS = (60, 30, 14, 7, 1)  # days before expiry at which token_expiring is due
MAX_DETAIL_CHARS = 500  # reasons and error texts from elsewhere are cut to this length

# Schemes whose URL host is a real server name. Elsewhere (slack://, msteams://, discord://, …)
# Apprise puts tokens in the host position, so redaction shows the scheme only.
_HOST_SCHEMES = frozenset({"mailto", "mailtos", "json", "jsons", "http", "https", "form", "forms", "xml", "xmls"})
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_APPRISE_MAIL_MODES = {"none": "insecure", "starttls": "starttls", "ssl": "ssl"}
_NOTIFY_TYPES = {
    "info": apprise.NotifyType.INFO,
    "warning": apprise.NotifyType.WARNING,
    "error": apprise.NotifyType.FAILURE,
}
_BERLIN = ZoneInfo("Europe/Berlin")


@dataclass(frozen=True)
class Alarm:
    key: str
    title: str
    body: str
    severity: Severity


@dataclass(frozen=True)
class DeliveryResult:
    target: str
    ok: bool
    error: str | None


# --- targets --------------------------------------------------------------------------------


def redact_target(url: str) -> str:
    """Scheme and host of a target, safe to show and log; "ungültige Adresse" if unparseable."""
    try:
        parts = urlsplit(str(url).strip())
        scheme = parts.scheme.lower()
        host = parts.hostname
    except ValueError:
        return "ungültige Adresse"
    if not _SCHEME.match(scheme):
        return "ungültige Adresse"
    if scheme in _HOST_SCHEMES and host:
        return f"{scheme}://{host}"
    return f"{scheme}://…"


def smtp_target(
    host: str,
    port: int,
    sender: str,
    recipients: Sequence[str],
    *,
    user: str | None = None,
    password: str | None = None,
    tls: TlsMode = "starttls",
) -> str:
    """The Apprise mailto URL for an SMTP server.

    `smtp=` pins the server (Apprise then skips its provider presets, e.g. for gmail.com), and
    `mode=` sets transport security: "insecure" (plain SMTP, no STARTTLS), "starttls" or "ssl".
    """
    if tls not in _APPRISE_MAIL_MODES:
        raise ValueError(f"Unbekannte TLS-Einstellung: {tls}")
    if not recipients:
        raise ValueError("Mindestens ein Empfänger ist nötig.")
    if password and not user:
        raise ValueError("Ein Passwort ohne Benutzername ist nicht möglich.")
    auth = ""
    if user:
        auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    netloc_host = f"[{host}]" if ":" in host else host
    query = urlencode(
        {
            "smtp": host,
            "mode": _APPRISE_MAIL_MODES[tls],
            "from": sender,
            "name": APP_NAME,
            "to": ",".join(recipients),
        },
        quote_via=quote,
    )
    scheme = "mailto" if tls == "none" else "mailtos"
    return f"{scheme}://{auth}{netloc_host}:{int(port)}?{query}"


def webhook_target(url: str) -> str:
    """http(s)://host[:port]/path?q=v → json(s)://host[:port]/path?-q=v (Apprise's JSON POST).

    Apprise passes query arguments prefixed with "-" on as query arguments of the POST, so the
    webhook's own query (often a token) survives.
    """
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("Die Webhook-Adresse muss mit http:// oder https:// beginnen.")
    scheme = "jsons" if parts.scheme.lower() == "https" else "json"
    query = urlencode([("-" + k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)], quote_via=quote)
    return urlunsplit((scheme, parts.netloc, parts.path or "/", query, ""))


# --- sending ---------------------------------------------------------------------------------


def send_alarm(alarm: Alarm, targets: Sequence[str], *, timeout: float = 10) -> list[DeliveryResult]:
    """Send the alarm to each target separately; one result per target, in order. Never raises."""
    return [_deliver(alarm, target, timeout) for target in targets]


def _deliver(alarm: Alarm, target: str, timeout: float) -> DeliveryResult:
    shown = redact_target(target)
    try:
        asset = apprise.AppriseAsset(
            app_id=APP_NAME,
            app_desc=f"{APP_NAME} Alarme",
            async_mode=False,
            storage_mode="memory",
            service_timeout=2 * timeout + 1,
            pgp_autogen=False,
            pem_autogen=False,
        )
        service = apprise.Apprise.instantiate(target, asset=asset) if isinstance(target, str) else None
        if service is None:
            return DeliveryResult(shown, False, "Ungültige oder nicht unterstützte Alarm-Adresse.")
        service.socket_connect_timeout = timeout
        service.socket_read_timeout = timeout
        sender = apprise.Apprise(asset=asset)
        sender.add(service)
        outcome = sender.notify(
            title=alarm.title,
            body=alarm.body,
            notify_type=_NOTIFY_TYPES[alarm.severity],
            body_format=apprise.NotifyFormat.TEXT,
        )
    except Exception as exc:  # a target must never break the others or the caller
        return DeliveryResult(shown, False, f"Unerwarteter Fehler beim Senden ({type(exc).__name__}).")
    if outcome:
        return DeliveryResult(shown, True, None)
    if getattr(outcome, "status", None) == apprise.AppriseResultStatus.TIMEOUT:
        return DeliveryResult(shown, False, "Zeitüberschreitung beim Senden.")
    return DeliveryResult(shown, False, "Senden fehlgeschlagen: Server nicht erreichbar oder Nachricht abgelehnt.")


# --- message builders -------------------------------------------------------------------------


def token_invalid(*, company_id: int, company_name: str, provider_label: str, reason: str, when: datetime) -> Alarm:
    """The provider rejected the token; due once per company, provider and day."""
    return Alarm(
        key=f"token_invalid:company:{company_id}:{_slug(provider_label)}:{_day(when)}",
        title=f"Token ungültig: {company_name} ({provider_label})",
        body=(
            f"Der Zugang von „{company_name}“ zu {provider_label} funktioniert nicht mehr.\n"
            f"Grund: {_cut(reason)}\n"
            f"Festgestellt am {format_local(when)}.\n\n"
            f"Bis zur erneuten Anmeldung werden für dieses Unternehmen keine Belege an {provider_label} "
            f"übertragen. Bitte melden Sie sich in {APP_NAME} erneut bei {provider_label} an."
        ),
        severity="error",
    )


def expiry_step(days_left: int) -> int | None:
    """The reminder step (60/30/14/7/1 days) that `days_left` falls into; None above 60 days."""
    due = [step for step in EXPIRY_STEPS if days_left <= step]
    return min(due) if due else None


def token_expiring(
    *, company_id: int, company_name: str, provider_label: str, days_left: int, valid_until_text: str
) -> Alarm:
    """Reminder before the token expires; due once per step and validity (a renewed token starts over)."""
    step = expiry_step(days_left)
    if step is None:
        raise ValueError(f"no reminder due {days_left} days before expiry")
    when = "heute" if days_left <= 0 else ("morgen" if days_left == 1 else f"in {days_left} Tagen")
    severity: Severity = "info" if step >= 30 else ("warning" if step >= 7 else "error")
    return Alarm(
        key=f"token_expiring:company:{company_id}:{_slug(provider_label)}:{valid_until_text}:{step}",
        title=f"Token läuft {when} ab: {company_name} ({provider_label})",
        body=(
            f"Der Zugang von „{company_name}“ zu {provider_label} läuft {when} ab "
            f"(gültig bis {valid_until_text}).\n\n"
            f"Bitte erneuern Sie den Zugang rechtzeitig in {APP_NAME}, damit die Übertragung "
            "von Belegen nicht unterbrochen wird."
        ),
        severity=severity,
    )


def company_paused(*, company_id: int, company_name: str, reason: str, when: datetime) -> Alarm:
    """Übertragungen for the company were paused; due once per company and day."""
    return Alarm(
        key=f"company_paused:company:{company_id}:{_day(when)}",
        title=f"Unternehmen pausiert: {company_name}",
        body=(
            f"Die Übertragung von Belegen für „{company_name}“ wurde am {format_local(when)} pausiert.\n"
            f"Grund: {_cut(reason)}\n\n"
            "Solange das Unternehmen pausiert ist, werden keine Belege übertragen. "
            f"Bitte prüfen Sie das Unternehmen in {APP_NAME}."
        ),
        severity="warning",
    )


def transfers_failing(
    *, company_id: int, company_name: str, failed_count: int, last_error: str, when: datetime
) -> Alarm:
    """Several Übertragungen failed in a row; due once per company and day."""
    belege = "1 Beleg konnte" if failed_count == 1 else f"{failed_count} Belege konnten"
    return Alarm(
        key=f"transfers_failing:company:{company_id}:{_day(when)}",
        title=f"Übertragung fehlgeschlagen: {company_name}",
        body=(
            f"Für „{company_name}“ {belege} nicht übertragen werden (Stand {format_local(when)}).\n"
            f"Letzter Fehler: {_cut(last_error)}\n\n"
            f"Bitte prüfen Sie die Übertragungen in {APP_NAME}."
        ),
        severity="error",
    )


def _day(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("naive datetime: pass timezone-aware values")
    return when.astimezone(_BERLIN).date().isoformat()


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"
