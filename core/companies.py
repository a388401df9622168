"""Companies: validation as DATEV defines the numbers, create / edit / archive, all audited.

Decisions (see docs/architecture.md):
- Berater-Nr. is 4 to 7 digits without a leading zero, Mandanten-Nr. 1 to 5 digits (1-99999), the
  pattern DATEV's technical client id `<consultant>-<client>` follows (docs/datev-contract.md §2.3).
- Both numbers are required for the DATEV interface and optional otherwise; if one is given, so
  must be the other. A pair belongs to one company for good, archived ones included (archiving
  keeps the history; restore the archived company instead of creating a twin).
- Automatic transfer needs an interface; it only takes effect once a valid token exists.
- An inbox folder must lie inside INBOX_ROOT (real path, no links, no `~` or `..`); without
  INBOX_ROOT none can be set (core.documents.inbox.confine; the scheduler checks again at every run).

Every public function takes the engine and runs its own short transaction (the audit event in the
same one); returned rows are detached and keep their loaded values (`unit_of_work` does not expire
them on commit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.documents import inbox as inbox_folders
from core.platform import audit
from core.platform.config import Settings, get_settings
from core.platform.db import unit_of_work
from core.platform.errors import NotFound, ValidationFailed
from core.platform.models import Company, Interface, Role, shown_data_set, utcnow
from core.users import Actor, authorize

CONSULTANT_RE = re.compile(r"^[1-9]\d{3,6}$")
CLIENT_RE = re.compile(r"^[1-9]\d{0,4}$")
NAME_MAX = 100
DOCUMENT_TYPE_MAX = 30  # DATEV #DCO01227

INTERFACE_LABELS = {Interface.datev: "DATEV", Interface.lexware: "Lexware Office", Interface.none: "keine"}
AUDITED_FIELDS = ("name", "consultant_number", "client_number", "interface", "auto_transfer",
                  "default_document_type", "alarm_recipients", "inbox_dir", "archived_at")
EMAIL_RE = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")


@dataclass(frozen=True)
class CompanyInput:
    """Raw values as typed into the form (strings for the numbers, so bad input can be reported)."""

    name: str
    consultant_number: str = ""
    client_number: str = ""
    interface: str = Interface.datev.value
    auto_transfer: bool = False
    default_document_type: str = ""
    alarm_recipients: str = ""  # e-mail addresses, separated by commas, semicolons or spaces
    inbox_dir: str = ""


@dataclass(frozen=True)
class ValidCompany:
    name: str
    consultant_number: int | None
    client_number: int | None
    interface: str
    auto_transfer: bool
    default_document_type: str | None
    alarm_recipients: str
    inbox_dir: str | None


def validate(data: CompanyInput, settings: Settings | None = None) -> ValidCompany:
    """Check every field; raise ValidationFailed with one German message per bad field.

    `settings` (default: the process settings) gives INBOX_ROOT for the inbox folder check."""
    errors: dict[str, str] = {}
    name = " ".join(data.name.split())
    if not name:
        errors["name"] = "Bitte einen Namen eingeben."
    elif len(name) > NAME_MAX:
        errors["name"] = f"Der Name darf höchstens {NAME_MAX} Zeichen lang sein."

    consultant = data.consultant_number.strip()
    client = data.client_number.strip()
    if consultant and not CONSULTANT_RE.match(consultant):
        errors["consultant_number"] = "Die Berater-Nr. besteht aus 4 bis 7 Ziffern ohne führende Null (z. B. 455148)."
    if client and not CLIENT_RE.match(client):
        errors["client_number"] = "Die Mandanten-Nr. besteht aus 1 bis 5 Ziffern ohne führende Null (1 bis 99999)."

    try:
        interface = Interface(data.interface)
    except ValueError:
        errors["interface"] = "Bitte eine Schnittstelle wählen: DATEV, Lexware Office oder keine."
        interface = None
    if interface == Interface.datev:
        if not consultant and "consultant_number" not in errors:
            errors["consultant_number"] = "Für DATEV ist die Berater-Nr. erforderlich."
        if not client and "client_number" not in errors:
            errors["client_number"] = "Für DATEV ist die Mandanten-Nr. erforderlich."
    elif bool(consultant) != bool(client):
        key = "client_number" if consultant else "consultant_number"
        errors.setdefault(key, "Berater-Nr. und Mandanten-Nr. nur zusammen angeben.")

    if data.auto_transfer and interface == Interface.none:
        errors["auto_transfer"] = "Automatische Übertragung braucht eine Schnittstelle (DATEV oder Lexware Office)."

    document_type = data.default_document_type.strip()
    if len(document_type) > DOCUMENT_TYPE_MAX:
        errors["default_document_type"] = f"Der Belegtyp darf höchstens {DOCUMENT_TYPE_MAX} Zeichen lang sein."

    recipients = [r.strip().lower() for r in re.split(r"[,;\s]+", data.alarm_recipients) if r.strip()]
    bad = [r for r in recipients if not EMAIL_RE.match(r)]
    if bad:
        errors["alarm_recipients"] = f"Keine gültige E-Mail-Adresse: {', '.join(bad[:3])}."
    elif len(", ".join(recipients)) > 1000:
        errors["alarm_recipients"] = "Zu viele Empfänger (höchstens 1000 Zeichen)."

    inbox = data.inbox_dir.strip()
    if len(inbox) > 500:
        errors["inbox_dir"] = "Der Eingangsordner darf höchstens 500 Zeichen lang sein."
    elif "\0" in inbox or ".." in inbox.replace("\\", "/").split("/"):
        errors["inbox_dir"] = "Der Eingangsordner darf kein „..“ enthalten."
    elif inbox and (problem := inbox_folders.check_inbox_dir(settings or get_settings(), inbox)):
        errors["inbox_dir"] = problem

    if errors:
        raise ValidationFailed(errors)
    assert interface is not None
    return ValidCompany(
        name=name,
        consultant_number=int(consultant) if consultant else None,
        client_number=int(client) if client else None,
        interface=interface.value,
        auto_transfer=data.auto_transfer,
        default_document_type=document_type or None,
        alarm_recipients=", ".join(recipients),
        inbox_dir=inbox or None,
    )


def snapshot(company: Company) -> dict[str, Any]:
    return {field: getattr(company, field) for field in AUDITED_FIELDS}


def _pair_taken(session: Session, valid: ValidCompany, exclude_id: int | None) -> Company | None:
    if valid.consultant_number is None:
        return None
    query = select(Company).where(
        Company.consultant_number == valid.consultant_number, Company.client_number == valid.client_number
    )
    if exclude_id is not None:
        query = query.where(Company.id != exclude_id)
    return session.exec(query).first()


def name_key(name: str) -> str:
    """What makes two company names the same for people: case and spacing aside ("Muster GmbH" = "muster  gmbh")."""
    return " ".join(name.split()).casefold()


_NAME_KEYS = "company_name_keys"  # Session.info: name_key → company id, for the session's transaction


def _name_keys(session: Session) -> dict[str, int]:
    """Every company's `name_key`, read once per session (an import creates up to 2,000 companies in one
    transaction; reading the names per row made a 2,000-row import into 2,000 companies take 8 s instead of 1)."""
    keys: dict[str, int] | None = session.info.get(_NAME_KEYS)
    if keys is None:
        keys = session.info[_NAME_KEYS] = {name_key(name): company_id for company_id, name in
                                           session.exec(select(Company.id, Company.name)).all() if company_id}
    return keys


def _name_taken(session: Session, valid: ValidCompany, exclude_id: int | None) -> Company | None:
    """Another company (archived ones too) with the same name: every list, selector, alarm and "Heute zu tun"
    names a company by its name, so two with one name could not be told apart (a Beleg uploaded to the
    wrong one). Compared in Python (casefold: "MÜLLER" = "müller", which SQLite's lower() does not know).
    Two admins creating the same name in the same second could both succeed (no unique index on a casefolded
    name); the pair rule above is the one the database enforces."""
    found = _name_keys(session).get(name_key(valid.name))
    return None if found is None or found == exclude_id else session.get(Company, found)


def _name_error(other: Company) -> ValidationFailed:
    state = " (archiviert – bitte dort reaktivieren)" if other.archived_at else ""
    number = f" ({shown_data_set(other.datev_client_id)})" if other.datev_client_id else ""
    return ValidationFailed({"name": f"Ein Unternehmen mit diesem Namen gibt es bereits{number}{state}: bitte einen "
                                     "unterscheidbaren Namen wählen (z. B. mit Ort oder Niederlassung)."})


def _pair_error(other: Company) -> ValidationFailed:
    state = " (archiviert – bitte dort reaktivieren)" if other.archived_at else ""
    return ValidationFailed({
        "client_number": f"Für diese Berater-Nr. und Mandanten-Nr. gibt es bereits das Unternehmen "
        f"„{other.name}“{state}."
    })


def _flush_or_pair_error(session: Session, valid: ValidCompany, exclude_id: int | None) -> None:
    try:
        session.flush()
    except IntegrityError:  # a concurrent insert won the unique pair
        session.rollback()
        raise ValidationFailed({
            "client_number": "Für diese Berater-Nr. und Mandanten-Nr. gibt es bereits ein Unternehmen."
        }) from None


def create_company(engine: Engine, *, actor: Actor, data: CompanyInput) -> Company:
    """Validate and store a new company with its audit event, in one transaction (admins)."""
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.admin)
        return _create_company(session, actor=actor.name, data=data)


def update_company(engine: Engine, *, actor: Actor, company_id: int, data: CompanyInput) -> Company:
    """Validate and store the changed fields with their audit event, in one transaction (admins)."""
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.admin)
        company = _get_company(session, company_id)
        valid = validate(data)
        if (other := _pair_taken(session, valid, company_id)) is not None:
            raise _pair_error(other)
        # Checked when the name changes: two companies that share a name from before this rule can still be
        # edited (to switch off automatic transfer, say) without first being renamed.
        if name_key(valid.name) != name_key(company.name) and (other := _name_taken(session, valid, company_id)):
            raise _name_error(other)
        before = snapshot(company)
        for field, value in valid.__dict__.items():
            setattr(company, field, value)
        after = snapshot(company)
        changed_before, changed_after = audit.changed_fields(before, after)
        if not changed_after:
            return company
        company.updated_at = utcnow()
        session.add(company)
        _flush_or_pair_error(session, valid, company_id)
        audit.record(session, actor=actor.name, action="company.updated", entity_type="company",
                     entity_id=company.id, before=changed_before, after=changed_after)
        return company


def set_archived(engine: Engine, *, actor: Actor, company_id: int, archived: bool) -> Company:
    """Archive (hide from work lists, stop automatic transfer) or restore (admins). History stays."""
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.admin)
        company = _get_company(session, company_id)
        if (company.archived_at is not None) == archived:
            return company
        before = snapshot(company)
        company.archived_at = utcnow() if archived else None
        if archived:
            company.auto_transfer = False
        company.updated_at = utcnow()
        session.add(company)
        session.flush()
        changed_before, changed_after = audit.changed_fields(before, snapshot(company))
        audit.record(session, actor=actor.name, action="company.archived" if archived else "company.restored",
                     entity_type="company", entity_id=company.id, before=changed_before, after=changed_after)
        return company


def get_company(engine: Engine, company_id: int) -> Company:
    with unit_of_work(engine) as session:
        return _get_company(session, company_id)


def list_companies(engine: Engine, *, include_archived: bool = False) -> list[Company]:
    query = select(Company).order_by(col(Company.name))
    if not include_archived:
        query = query.where(col(Company.archived_at).is_(None))
    with unit_of_work(engine) as session:
        return list(session.exec(query).all())


def _create_company(session: Session, *, actor: str, data: CompanyInput) -> Company:
    """The insert inside the caller's transaction (create_company, and the demo seed's one transaction)."""
    valid = validate(data)
    if (other := _pair_taken(session, valid, None)) is not None:
        raise _pair_error(other)
    if (other := _name_taken(session, valid, None)) is not None:
        raise _name_error(other)
    company = Company(**valid.__dict__)
    session.add(company)
    _flush_or_pair_error(session, valid, None)
    assert company.id is not None
    _name_keys(session)[name_key(company.name)] = company.id  # the next company of this transaction sees it
    audit.record(session, actor=actor, action="company.created", entity_type="company",
                 entity_id=company.id, after=snapshot(company))
    return company


def _get_company(session: Session, company_id: int) -> Company:
    company = session.get(Company, company_id)
    if company is None:
        raise NotFound("Dieses Unternehmen gibt es nicht (mehr).")
    return company


def input_from(company: Company) -> CompanyInput:
    """The form values that reproduce a stored company (for the edit form)."""
    return CompanyInput(
        name=company.name,
        consultant_number="" if company.consultant_number is None else str(company.consultant_number),
        client_number="" if company.client_number is None else str(company.client_number),
        interface=company.interface,
        auto_transfer=company.auto_transfer,
        default_document_type=company.default_document_type or "",
        alarm_recipients=company.alarm_recipients or "",
        inbox_dir=company.inbox_dir or "",
    )
