"""The Anforderungslink: the person who can log in to DATEV for a company's data set (often the tax
advisor) grants the Langzeittoken without a Token Desk account.

An admin creates a link for one company (valid 1 to REQUEST_LINK_MAX_DAYS days, default 7), copies it
or has it sent by e-mail through the outbox. The link carries 256 random bits; only their sha256 is
stored. The link page (no sign-in) shows the company, the data set and who asked; "Weiter zur
DATEV-Anmeldung" consumes the link atomically (a conditional UPDATE: one use) and starts the same DATEV
login an admin starts (PKCE, state, nonce, prompt=consent, the company's client scope), with DATEV's
answer coming back to the link page. There the same checks run (binding, no orphan grants) and the
token is stored exactly as one the admin requested, marked "über Anforderungslink für …".

States: offen → verwendet (started; then erfolgreich or fehlgeschlagen) | abgelaufen | zurückgezogen.
This module is the one writer of `request_link` rows. Tries with unknown, used, expired or withdrawn
links get one German message and are limited per client address; every creation, e-mail, use,
success, failure and withdrawal is an audit event.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Engine, update
from sqlmodel import col, select

from core import users
from core.alarms.messages import Alarm
from core.alarms.outbox import forget_link, send_message
from core.connections import datev_login, store
from core.connections.datev_login import CallbackOutcome, state_hash
from core.connections.disconnect import DATEV_CONNECTED_APPS_URL
from core.platform import audit
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError, ValidationFailed
from core.platform.models import (
    AppUser,
    Company,
    Connection,
    ConnectionKind,
    LinkAttempt,
    PendingAuthorization,
    Provider,
    RequestLink,
    Role,
    clip,
    shown_data_set,
    utcnow,
)
from core.platform.timefmt import day_start_utc, format_date, format_local

LINK_PARAM = "link"
REFUSED = "Dieser Link ist ungültig, abgelaufen, bereits verwendet oder zurückgezogen."
TOO_MANY = "Zu viele Versuche mit ungültigen Links von dieser Adresse. Bitte später erneut versuchen."
STATE_OPEN, STATE_USED, STATE_EXPIRED, STATE_WITHDRAWN = "offen", "verwendet", "abgelaufen", "zurückgezogen"
BATCH = 500


class LinkRefused(UserFacingError):
    """The link cannot be used: one German message, whatever the reason (nothing to probe)."""


def hash_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_url(settings: Settings, token: str) -> str:
    return f"{settings.datev_link_callback_uri}?{LINK_PARAM}={token}"


def mail_key(link_id: int) -> str:
    return f"request_link:{link_id}"


def state_of(link: RequestLink, now: datetime) -> str:
    if link.withdrawn_at is not None:
        return STATE_WITHDRAWN
    if link.started_at is not None:
        return STATE_USED
    if link.expires_at <= now:
        return STATE_EXPIRED
    return STATE_OPEN


@dataclass(frozen=True)
class LinkView:
    id: int
    company_id: int
    company_name: str
    recipient: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime
    state: str
    result: str | None
    succeeded: bool | None
    grantor_name: str | None

    @property
    def summary(self) -> str:
        """One German line, e.g. "Link an stb@kanzlei.de offen bis 06.12.2026"."""
        to = f" an {self.recipient}" if self.recipient else ""
        if self.state == STATE_OPEN:
            return f"Link{to} offen bis {format_date(self.expires_at)}"
        if self.state == STATE_USED and self.succeeded is not None:
            return f"Link{to} verwendet: {'erfolgreich' if self.succeeded else 'fehlgeschlagen'}"
        return f"Link{to} {self.state}"


@dataclass(frozen=True)
class CreatedLink:
    link_id: int
    url: str  # shown once to the admin (to copy); never stored in clear
    expires_at: datetime
    mailed: bool | None  # None: no e-mail wanted; else whether it went out now (it is retried otherwise)


def _datev_company(engine: Engine, company_id: int) -> Company:
    """The company, if it may have a DATEV login (datev_login's own check, in a transaction of its own)."""
    with unit_of_work(engine) as session:
        company = datev_login.datev_company(session, company_id)
        session.expunge(company)
    return company


def create_link(engine: Engine, settings: Settings, keyring: Keyring, *, company_id: int, actor: AppUser,
                valid_days: int | None = None, recipient: str = "") -> CreatedLink:
    """Create an Anforderungslink (admins only); with `recipient`, e-mail it through the outbox."""
    users.authorized(engine, users.Actor.of(actor), Role.admin)
    days = settings.request_link_default_days if valid_days is None else valid_days
    errors: dict[str, str] = {}
    if not 1 <= days <= settings.request_link_max_days:
        errors["valid_days"] = f"Ein Link gilt 1 bis {settings.request_link_max_days} Tage."
    address = recipient.strip()
    if address:
        try:
            address = users.validate_email(address)
        except ValidationFailed:
            errors["recipient"] = "Bitte eine gültige E-Mail-Adresse eingeben (oder das Feld leer lassen)."
    if errors:
        raise ValidationFailed(errors)
    company = _datev_company(engine, company_id)
    assert actor.id is not None and company.id is not None
    token = secrets.token_urlsafe(32)  # 256 bits
    now = utcnow()
    with unit_of_work(engine) as session:
        link = RequestLink(token_hash=hash_of(token), company_id=company.id, created_by_user_id=actor.id,
                           created_by=actor.email, created_by_name=clip(RequestLink.created_by_name,
                                                                        actor.display_name or actor.email),
                           recipient=address or None, created_at=now, expires_at=now + timedelta(days=days))
        session.add(link)
        session.flush()
        assert link.id is not None
        link_id, expires_at = link.id, link.expires_at
        audit.record(session, actor=actor.email, action="request_link.created", entity_type="request_link",
                     entity_id=link.id, after={"company_id": company.id, "recipient": address or None,
                                               "expires_at": link.expires_at})
    url = link_url(settings, token)
    mailed = None
    if address:
        outcome = send_message(engine, settings, keyring, _mail(company, actor, expires_at, address, link_id),
                               to=address, link=url, company_id=company.id)
        mailed = bool(outcome and outcome.delivered)
        with unit_of_work(engine) as session:
            audit.record(session, actor=actor.email, action="request_link.mailed", entity_type="request_link",
                         entity_id=link_id, after={"to": address, "delivered_now": mailed})
    return CreatedLink(link_id, url, expires_at, mailed)


def _mail(company: Company, actor: AppUser, expires_at: datetime, recipient: str, link_id: int) -> Alarm:
    data_set = shown_data_set(company.datev_client_id)
    who = actor.display_name or actor.email
    return Alarm(
        key=mail_key(link_id),
        title=f"Token Desk: Bitte DATEV-Zugriff für {company.name} freigeben",
        body=(
            f"Guten Tag,\n\n{who} ({actor.email}) bittet Sie, Token Desk den dauerhaften Zugriff auf den "
            f"DATEV-Datenbestand {data_set} von „{company.name}“ zu erteilen (ein Langzeittoken).\n\n"
            "Der dauerhafte Zugriff erlaubt nur das Hochladen von Belegen in Belege online für diesen "
            "Datenbestand, nichts anderes. Sie melden sich dazu einmal wie gewohnt bei DATEV an (z. B. mit "
            "DATEV SmartLogin) und stimmen dem dauerhaften Zugriff zu.\n\n"
            f"Der Link gilt bis {format_local(expires_at)} und kann einmal verwendet werden:\n{{link}}\n\n"
            "Den dauerhaften Zugriff können Sie jederzeit bei DATEV unter „Verbundene Anwendungen“ "
            f"({DATEV_CONNECTED_APPS_URL}) widerrufen.\n"
        ),
        severity="info",
    )


def withdraw_link(engine: Engine, *, link_id: int, actor: AppUser) -> bool:
    """Withdraw an open link (admins only); its e-mail, if not sent yet, is not sent any more."""
    users.authorized(engine, users.Actor.of(actor), Role.admin)
    now = utcnow()
    with unit_of_work(engine) as session:
        changed = session.exec(update(RequestLink).where(
            col(RequestLink.id) == link_id, col(RequestLink.started_at).is_(None),
            col(RequestLink.withdrawn_at).is_(None)).values(withdrawn_at=now, withdrawn_by=actor.email)).rowcount
        if changed == 1:
            audit.record(session, actor=actor.email, action="request_link.withdrawn", entity_type="request_link",
                         entity_id=link_id)
    forget_link(engine, mail_key(link_id))
    return bool(changed == 1)


def list_links(engine: Engine, *, company_id: int | None = None, only_open: bool = False,
               limit: int = 200) -> list[LinkView]:
    """The newest links first (of one company, or all), with their state."""
    now = utcnow()
    query = (select(RequestLink, Company.name).join(Company, col(Company.id) == col(RequestLink.company_id))
             .order_by(col(RequestLink.created_at).desc(), col(RequestLink.id).desc()).limit(limit))
    if company_id is not None:
        query = query.where(col(RequestLink.company_id) == company_id)
    if only_open:
        query = query.where(col(RequestLink.started_at).is_(None), col(RequestLink.withdrawn_at).is_(None),
                            col(RequestLink.expires_at) > now)
    with unit_of_work(engine) as session:
        rows = session.exec(query).all()
    views = []
    for link, name in rows:
        assert link.id is not None
        views.append(LinkView(link.id, link.company_id, name, link.recipient, link.created_by, link.created_at,
                              link.expires_at, state_of(link, now), link.result, link.succeeded, link.grantor_name))
    return views


# --- the link page (no sign-in) ---------------------------------------------------------------


@dataclass(frozen=True)
class LinkPage:
    """What the link page may show: the company, the data set, who asked, until when. Nothing else (not
    even the address the link was sent to: it may have been forwarded)."""

    company_name: str
    data_set: str
    requested_by: str
    expires_at: datetime


def _address_hash(address: str) -> str:
    return hashlib.sha256(f"link-attempts|{address}".encode()).hexdigest()


def _limited(engine: Engine, settings: Settings, address: str, now: datetime) -> bool:
    with unit_of_work(engine) as session:
        row = session.get(LinkAttempt, _address_hash(address))
    window = timedelta(minutes=settings.request_link_failure_window_minutes)
    return (row is not None and row.window_started_at > now - window
            and row.failures >= settings.request_link_max_failures)


def _refuse(engine: Engine, settings: Settings, address: str, token: str, now: datetime) -> LinkRefused:
    """Count a try with a bad link for the address (audited), and the one German message."""
    window = timedelta(minutes=settings.request_link_failure_window_minutes)
    key = _address_hash(address)
    with unit_of_work(engine) as session:
        row = session.get(LinkAttempt, key)
        if row is None:
            session.add(LinkAttempt(address_hash=key, window_started_at=now, failures=1))
        elif row.window_started_at <= now - window:
            row.window_started_at, row.failures = now, 1
            session.add(row)
        else:
            row.failures += 1
            session.add(row)
        link = session.exec(select(RequestLink).where(RequestLink.token_hash == hash_of(token))).first()
        audit.record(session, actor="link", action="request_link.refused", entity_type="request_link",
                     entity_id=link.id if link is not None else None,
                     after={"state": state_of(link, now) if link is not None else "unbekannt",
                            "address": key[:12]})
    return LinkRefused(REFUSED)


def _open_link(engine: Engine, token: str, now: datetime) -> tuple[RequestLink, Company] | None:
    with unit_of_work(engine) as session:
        link = session.exec(select(RequestLink).where(RequestLink.token_hash == hash_of(token or "x"))).first()
        if link is None or state_of(link, now) != STATE_OPEN:
            return None
        company = session.get(Company, link.company_id)
        session.expunge_all()
    if company is None or company.archived_at is not None or company.datev_client_id is None:
        return None
    return link, company


def _open_or_refuse(engine: Engine, settings: Settings, token: str, address: str,
                    now: datetime) -> tuple[RequestLink, Company]:
    """The open link and its company; LinkRefused for an address over its limit or a bad link (counted)."""
    if _limited(engine, settings, address, now):
        raise LinkRefused(TOO_MANY)
    found = _open_link(engine, token, now)
    if found is None:
        raise _refuse(engine, settings, address, token, now)
    return found


def open_link(engine: Engine, settings: Settings, *, token: str, address: str) -> LinkPage:
    """The link page's facts for an open link; LinkRefused (one message) otherwise."""
    now = utcnow()
    link, company = _open_or_refuse(engine, settings, token, address, now)
    return LinkPage(company.name, shown_data_set(company.datev_client_id),
                    link.created_by_name or link.created_by, link.expires_at)


NO_BROWSER = ("Ihr Browser hat kein Sitzungs-Cookie gesendet. Bitte erlauben Sie Cookies für diese Seite und "
              "öffnen Sie den Link erneut.")


def start_link_login(engine: Engine, settings: Settings, keyring: Keyring, *, token: str, address: str,
                     browser: str) -> str:
    """"Weiter zur DATEV-Anmeldung": consume the link (one use) and start the DATEV login; the URL to go to.
    `browser` identifies the browser (its XSRF cookie secret): DATEV's answer is accepted only there."""
    if not browser:  # checked before the link is used up
        raise UserFacingError(NO_BROWSER)
    now = utcnow()
    link, company = _open_or_refuse(engine, settings, token, address, now)
    assert link.id is not None and company.id is not None
    with unit_of_work(engine) as session:  # the one use: whoever changes the row from open wins
        won = session.exec(update(RequestLink).where(
            col(RequestLink.id) == link.id, col(RequestLink.started_at).is_(None),
            col(RequestLink.withdrawn_at).is_(None), col(RequestLink.expires_at) > now).values(started_at=now)
        ).rowcount == 1
        creator = session.get(AppUser, link.created_by_user_id)
        if creator is not None:
            session.expunge(creator)
    if not won:
        raise _refuse(engine, settings, address, token, now)
    if creator is None or not users.has_role(creator, Role.admin):  # the admin who asked may no longer ask
        _finish(engine, link.id, ok=False, message="Die Person, die den Link erstellt hat, darf keine "
                                                   "Langzeittoken mehr anfordern.", grantor=None)
        raise LinkRefused(REFUSED)
    try:
        url = datev_login.begin_login(engine, settings, keyring, company_id=company.id, user=creator,
                                      kind=ConnectionKind.long_term, redirect_uri=settings.datev_link_callback_uri,
                                      request_link_id=link.id, browser=browser)
    except UserFacingError:  # e.g. DATEV unreachable: the link stays usable for another try
        with unit_of_work(engine) as session:
            session.exec(update(RequestLink).where(col(RequestLink.id) == link.id,
                                                   col(RequestLink.started_at) == now).values(started_at=None))
        raise
    forget_link(engine, mail_key(link.id))  # its e-mail, if still due, is not sent any more
    with unit_of_work(engine) as session:
        audit.record(session, actor="link", action="request_link.used", entity_type="request_link", entity_id=link.id,
                     after={"company_id": company.id})
    return url


@dataclass(frozen=True)
class LinkResult:
    ok: bool
    message: str  # German, for the link page
    company_name: str | None = None
    grantor_name: str | None = None
    valid_until: datetime | None = None
    warning: str | None = None


def finish_link_login(engine: Engine, settings: Settings, keyring: Keyring, *, params: dict[str, str],
                      browser: str) -> LinkResult:
    """DATEV's redirect back to the link page: the same checks and storing as an admin's login."""
    with unit_of_work(engine) as session:  # which link this login belongs to (the claim itself is atomic below)
        pending = session.exec(select(PendingAuthorization).where(
            PendingAuthorization.state_hash == state_hash(params.get("state", "")))).first()
        link = session.get(RequestLink, pending.request_link_id) if pending and pending.request_link_id else None
        company = session.get(Company, link.company_id) if link is not None else None
        session.expunge_all()
    requested_via = "Anforderungslink" + (f" für {link.recipient}" if link is not None and link.recipient else "")
    outcome, link_id = datev_login.finish_link_login(engine, settings, keyring, params=params, browser=browser,
                                                     requested_via=requested_via)
    if link_id is None or link is None:
        return LinkResult(False, outcome.message)
    grantor, valid_until = _stored_facts(engine, outcome, link.company_id)
    _finish(engine, link_id, ok=outcome.ok, message=outcome.message, grantor=grantor)
    return LinkResult(outcome.ok, _public_message(outcome), company.name if company else None, grantor, valid_until,
                      outcome.warning)


def _stored_facts(engine: Engine, outcome: CallbackOutcome, company_id: int) -> tuple[str | None, datetime | None]:
    if not outcome.ok:
        return None, None
    row = store.find(engine, company_id, Provider.datev)  # the connection the login just stored
    return (row.grantor_name, row.refresh_expires_at) if row is not None else (None, None)


def _public_message(outcome: CallbackOutcome) -> str:
    """What the link page may say: the result, never the test call's details about the company's books."""
    if outcome.ok:
        return "Der dauerhafte Zugriff ist eingerichtet. Vielen Dank, Sie können dieses Fenster schließen."
    return outcome.message


def _finish(engine: Engine, link_id: int, *, ok: bool, message: str, grantor: str | None) -> None:
    now = utcnow()
    with unit_of_work(engine) as session:
        session.exec(update(RequestLink).where(col(RequestLink.id) == link_id).values(
            finished_at=now, succeeded=ok, result=clip(RequestLink.result, message),
            grantor_name=clip(RequestLink.grantor_name, grantor)))
        audit.record(session, actor="link", action="request_link.succeeded" if ok else "request_link.failed",
                     entity_type="request_link", entity_id=link_id, detail=message)


def expire_links(engine: Engine, now: datetime) -> int:
    """Housekeeping: links past their time are recorded as expired (audited once) and their mails stopped."""
    with unit_of_work(engine) as session:
        ids = [i for i in session.exec(select(RequestLink.id).where(
            col(RequestLink.expires_at) <= now, col(RequestLink.started_at).is_(None),
            col(RequestLink.withdrawn_at).is_(None), col(RequestLink.finished_at).is_(None)).limit(BATCH)).all()
            if i is not None]
    for link_id in ids:
        with unit_of_work(engine) as session:
            changed = session.exec(update(RequestLink).where(
                col(RequestLink.id) == link_id, col(RequestLink.finished_at).is_(None),
                col(RequestLink.started_at).is_(None)).values(finished_at=now, result=STATE_EXPIRED)).rowcount
            if changed == 1:
                audit.record(session, actor="system", action="request_link.expired", entity_type="request_link",
                             entity_id=link_id)
        forget_link(engine, mail_key(link_id))
    return len(ids)


def open_links_by_company(engine: Engine) -> dict[int, LinkView]:
    """The newest open link per company (the overview's "Link an … offen bis …")."""
    found: dict[int, LinkView] = {}
    for view in list_links(engine, only_open=True, limit=5000):
        found.setdefault(view.company_id, view)
    return found


@dataclass(frozen=True)
class ExpiringCompany:
    company_id: int
    name: str
    expires_at: datetime
    open_link: str | None  # the summary of an open link the company already has


def expiring_in_month(engine: Engine, month: date) -> list[ExpiringCompany]:
    """The DATEV companies whose long-term token expires in `month` (the renewal plan's bar; `month` is the
    first day of a month in the display time zone), with an open link they already have."""
    start = day_start_utc(month.replace(day=1))
    index = month.year * 12 + month.month  # the next month
    end = day_start_utc(date(index // 12, index % 12 + 1, 1))
    with unit_of_work(engine) as session:
        rows = session.exec(
            select(Company.id, Company.name, Connection.refresh_expires_at)
            .join(Connection, col(Connection.company_id) == col(Company.id))
            .where(col(Connection.slot) == store.LONG_TERM_SLOT, col(Connection.provider) == Provider.datev.value,
                   col(Connection.has_token).is_(True), col(Company.archived_at).is_(None),
                   col(Connection.refresh_expires_at) >= start, col(Connection.refresh_expires_at) < end)
            .order_by(col(Connection.refresh_expires_at), col(Company.name))).all()
    open_links = open_links_by_company(engine)
    return [ExpiringCompany(cid, name, expires, open_links[cid].summary if cid in open_links else None)
            for cid, name, expires in rows if cid is not None and expires is not None]


def links_for_companies(engine: Engine, settings: Settings, keyring: Keyring, *, company_ids: list[int],
                        actor: AppUser, recipients: dict[int, str] | None = None) -> list[CreatedLink]:
    """The renewal plan's bulk action: one link per company (mailed where an address is known)."""
    created = []
    for company_id in company_ids:
        created.append(create_link(engine, settings, keyring, company_id=company_id, actor=actor,
                                   recipient=(recipients or {}).get(company_id, "")))
    return created
