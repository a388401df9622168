"""Alarm delivery: the targets (Apprise URLs built from the settings), sending to each of them, and
how a target is shown (redacted).

Targets are Apprise URLs (mailto://, mailtos://, json://, jsons://, msteams://, slack://, …);
`smtp_target` and `webhook_target` build the two common ones from plain settings. Each target is
sent on its own, and `send_alarm` never raises: a broken target shows up as a failed
`DeliveryResult`. Results name a target only by scheme and host (`redact_target`), never by user,
password, token or webhook path.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import apprise

from core.alarms.messages import APP_NAME, Alarm
from core.platform.config import Settings

log = logging.getLogger(__name__)

TlsMode = Literal["none", "starttls", "ssl"]


@dataclass(frozen=True)
class DeliveryResult:
    target: str
    ok: bool
    error: str | None


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
        service = apprise.Apprise.instantiate(target, asset=asset)
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
    except Exception as exc:  # noqa: BLE001  (a target must never break the others or the caller)
        return DeliveryResult(shown, False, f"Unerwarteter Fehler beim Senden ({type(exc).__name__}).")
    if outcome:
        return DeliveryResult(shown, True, None)
    if getattr(outcome, "status", None) == apprise.AppriseResultStatus.TIMEOUT:
        return DeliveryResult(shown, False, "Zeitüberschreitung beim Senden.")
    return DeliveryResult(shown, False, "Senden fehlgeschlagen: Server nicht erreichbar oder Nachricht abgelehnt.")


# RETRY_BATCH × targets × (2 × timeout + 1) s against a mail server that swallows connections)
# A new Apprise URL starts where a comma or whitespace is followed by "scheme://"; commas inside a
# URL (e.g. mailto://…?to=a@x.de,b@x.de) stay part of it.
_URL_START = re.compile(r"[,\s]+(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def split_targets(text: str) -> list[str]:
    """ALARM_TARGETS: Apprise URLs separated by commas or whitespace."""
    parts = _URL_START.split(text.strip()) if text and text.strip() else []
    return [p.strip().strip(",").strip() for p in parts if p.strip().strip(",").strip()]


def split_addresses(*texts: str) -> list[str]:
    """E-mail addresses from comma/semicolon/whitespace separated lists, without duplicates."""
    seen: dict[str, str] = {}
    for text in texts:
        for address in re.split(r"[,;\s]+", text or ""):
            if "@" in address and address.lower() not in seen:
                seen[address.lower()] = address
    return list(seen.values())


def alarm_targets(settings: Settings, company_recipients: str = "") -> list[str]:
    """The Apprise URLs for one alarm: ALARM_TARGETS, plus one SMTP target for the global and the
    company's e-mail recipients when SMTP_HOST is set."""
    targets = split_targets(settings.alarm_targets)
    recipients = split_addresses(settings.alarm_emails, company_recipients)
    if settings.smtp_host and recipients:
        targets.append(smtp_target(settings.smtp_host, settings.smtp_port, settings.smtp_sender, recipients,
                                   user=settings.smtp_user, password=settings.smtp_password, tls=settings.smtp_tls))
    elif recipients:
        log.warning("alarm e-mail recipients are set but SMTP_HOST is not: no e-mail is sent")
    return targets


def direct_targets(settings: Settings, address: str) -> list[str]:
    """The one SMTP target for a message to one person (no alarm targets); none without SMTP_HOST."""
    if not settings.smtp_host:
        log.warning("a message to one person could not be sent: SMTP_HOST is not set")
        return []
    return [smtp_target(settings.smtp_host, settings.smtp_port, settings.smtp_sender, [address],
                        user=settings.smtp_user, password=settings.smtp_password, tls=settings.smtp_tls)]


def max_targets(settings: Settings) -> int:
    """An upper bound of `len(alarm_targets(...))`, known before the company is looked up."""
    return len(split_targets(settings.alarm_targets)) + (1 if settings.smtp_host else 0)


