"""The German alarm texts for finance staff (title, body, severity) with a stable dedupe `key`.

The caller (core.alarms.outbox) stores the key, so each alarm is raised once; core.alarms.rules
decides when an alarm is due, core.alarms.delivery sends it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from core.platform.timefmt import format_local

Severity = Literal["info", "warning", "error"]

APP_NAME = "Token Desk"
EXPIRY_STEPS = (60, 30, 14, 7, 1)  # days before expiry at which token_expiring is due
MAX_DETAIL_CHARS = 500  # reasons and error texts from elsewhere are cut to this length

_BERLIN = ZoneInfo("Europe/Berlin")


@dataclass(frozen=True)
class Alarm:
    key: str
    title: str
    body: str
    severity: Severity


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


def token_expired(*, company_id: int, company_name: str, provider_label: str, expired_at: datetime) -> Alarm:
    """The token's validity ran out (DATEV's Langzeittoken after about two years); due once per company,
    provider and validity (a renewed token that runs out again is reported again). The reminders before it
    (`token_expiring`) may have gone unread: this one says that transfers have stopped."""
    return Alarm(
        key=f"token_expired:company:{company_id}:{_slug(provider_label)}:{_day(expired_at)}",
        title=f"Token abgelaufen: {company_name} ({provider_label})",
        body=(
            f"Der Zugang von „{company_name}“ zu {provider_label} ist am {format_local(expired_at)} abgelaufen.\n\n"
            f"Bis ein neuer Zugang hinterlegt ist, werden für dieses Unternehmen keine Belege an {provider_label} "
            f"übertragen. {_RENEWAL.get(provider_label, _RENEWAL_OTHER)}"
        ),
        severity="error",
    )


def company_paused(*, company_id: int, company_name: str, reason: str, when: datetime) -> Alarm:
    """Approved documents of the company cannot be transferred; due once per company and day. Called
    "pausiert" only when the company is paused (a provider refused access), as on the Übersicht's tile;
    otherwise (no token, token invalid or expired) "Belege warten", with the reason."""
    paused = reason.startswith("pausiert")
    return Alarm(
        key=f"company_paused:company:{company_id}:{_day(when)}",
        title=f"Unternehmen pausiert: {company_name}" if paused else f"Belege warten: {company_name}",
        body=(
            (f"Die Übertragung von Belegen für „{company_name}“ wurde am {format_local(when)} pausiert.\n"
             if paused else
             f"Freigegebene Belege für „{company_name}“ können seit {format_local(when)} nicht übertragen werden.\n")
            + f"Grund: {_cut(reason)}\n\n"
            "Bis die Ursache behoben ist, werden keine Belege übertragen. "
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


# What renews an expired access, by provider label (DATEV: a new login; Lexware Office: a new API key).
_RENEWAL = {"DATEV": f"Bitte fordern Sie in {APP_NAME} ein neues Langzeittoken an.",
            "Lexware Office": f"Bitte hinterlegen Sie in {APP_NAME} einen neuen API-Schlüssel."}
_RENEWAL_OTHER = f"Bitte erneuern Sie den Zugang in {APP_NAME}."


def _day(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("naive datetime: pass timezone-aware values")
    return when.astimezone(_BERLIN).date().isoformat()


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"
