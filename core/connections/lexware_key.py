"""Lexware Office API keys: pasted by an admin, checked with the profile call, stored encrypted.

A Lexware key is the Lexware counterpart of a Langzeittoken: it lets the scheduler transfer
unattended; it is valid at most 24 months (contract §3).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from dateutil.relativedelta import relativedelta
from sqlalchemy import Engine

from core.connections import store
from core.connections.test_call import TestResult
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError, ValidationFailed
from core.platform.models import Company, Connection, Interface, Provider, Role, clip, utcnow
from core.platform.timefmt import display_zone, local_day
from core.providers.http import CallContext
from core.providers.lexware import LexwareApiError, get_profile
from core.users import Actor, authorized


def end_of_day(day: date) -> datetime:
    """A key "valid until" a date is valid to the end of that day where the users are (display zone), in UTC."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=display_zone()).astimezone(UTC)


def default_key_expiry(settings: Settings, today: date) -> date:
    return today + relativedelta(months=settings.lexware_key_validity_months)


def store_lexware_key(engine: Engine, settings: Settings, keyring: Keyring, *, company_id: int, api_key: str,
                      valid_until: date | None, actor: Actor) -> TestResult:
    """Store a pasted Lexware API key (encrypted) after the profile call accepted it (admins)."""
    authorized(engine, actor, Role.admin)
    key = api_key.strip()
    errors = {}
    if not key:
        errors["api_key"] = "Bitte den API-Schlüssel einfügen."
    elif len(key) > 500 or any(ch.isspace() for ch in key):
        errors["api_key"] = "Das sieht nicht wie ein Lexware-API-Schlüssel aus (Leerzeichen oder zu lang)."
    today = local_day(utcnow())
    valid_until = valid_until or default_key_expiry(settings, today)
    if valid_until <= today:
        errors["valid_until"] = "Das Ablaufdatum muss in der Zukunft liegen."
    elif valid_until > today + relativedelta(months=24):
        errors["valid_until"] = "Lexware-API-Schlüssel gelten höchstens 24 Monate."
    if errors:
        raise ValidationFailed(errors)
    with unit_of_work(engine) as session:
        company = session.get(Company, company_id)
        if company is None or company.archived_at is not None or company.interface != Interface.lexware.value:
            raise UserFacingError("Für dieses Unternehmen ist Lexware Office nicht als Schnittstelle eingerichtet.")
    ctx = CallContext(provider=Provider.lexware.value, purpose="connection_test", company_id=company_id)
    try:
        profile = get_profile(engine, ctx, settings, key)
    except LexwareApiError as exc:
        if exc.status == 401:
            raise ValidationFailed({"api_key": "Lexware Office lehnt diesen API-Schlüssel ab."}) from None
        raise UserFacingError(f"Lexware Office ist nicht erreichbar ({exc.summary()}); nichts gespeichert.") from None
    organisation = clip(Connection.grantor_name, str(profile.get("companyName") or profile.get("organizationId") or "")) or None
    message = f"Verbunden mit „{organisation}“." if organisation else "Profilabfrage erfolgreich."
    store.store_lexware_key(engine, keyring, company_id=company_id, api_key=key, expires_at=end_of_day(valid_until),
                            organisation=organisation, message=message, actor=actor.name)
    return TestResult(True, message)
