"""Who may do what. Roles live in the database and are looked up on every dashboard run.

Identity comes from the identity provider (`st.login`): a stable subject (`sub`) and an e-mail
address. An admin grants a role to an e-mail address; the first sign-in with that address binds
the provider's subject to the row, and later look-ups go by subject. Addresses listed in
ADMIN_EMAILS become admins at their first sign-in (bootstrap); `python -m core.cli create-admin`
does the same from the shell.

Every public function takes the engine and runs its own short transaction (the audit event in the
same one); returned rows are detached and keep their loaded values (`unit_of_work` does not expire
them on commit).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from core.platform import audit
from core.platform.db import unit_of_work
from core.platform.errors import UserFacingError, ValidationFailed
from core.platform.models import AppUser, AuditEvent, Role, utcnow

ROLE_RANK = {Role.viewer: 1, Role.operator: 2, Role.admin: 3}
ROLE_LABELS = {Role.viewer: "Betrachter", Role.operator: "Bearbeiter", Role.admin: "Administrator"}
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class PermissionDenied(UserFacingError):
    """The acting user's stored role does not allow the action."""


@dataclass(frozen=True)
class Actor:
    """Who does an action: the name the audit trail records and, for a signed-in user, the user row
    whose role the privileged core function checks itself, as stored at that moment (`authorize`).

    Defence in depth: pages hide what a role may not do, and the core function refuses it anyway, so
    a page that forgot its check still cannot delete a token or change a role; a role taken away
    while a browser tab is open counts at the next click. The desk's own processes (scheduler, CLI,
    demo seed, inbox import) act as `process(...)` actors (user_id None), which pass every check:
    they run with the database's and the key's full access anyway. Only core code and scripts create
    them; tests/security checks that pages/ and ui/ never do."""

    name: str  # the user's e-mail address, or the process's name
    user_id: int | None = None

    @classmethod
    def of(cls, user: AppUser) -> Actor:
        if user.id is None:
            raise PermissionDenied("Unbekannter Benutzer.")
        return cls(user.email, user.id)

    @property
    def is_process(self) -> bool:
        return self.user_id is None


def process(name: str) -> Actor:
    """The desk acting for itself (scheduler instance, "cli", "demo", "inbox")."""
    return Actor(name, None)


def authorize(session: Session, actor: Actor, required: Role) -> None:
    """The role check of a privileged core function: the acting user's role as stored now (inside the
    caller's transaction where it has one). Raises PermissionDenied (German) otherwise."""
    if actor.is_process:
        return
    user = session.get(AppUser, actor.user_id)
    if not has_role(user, required):
        raise PermissionDenied(f"Keine Berechtigung: dafür ist die Rolle „{ROLE_LABELS[required]}“ nötig.")


def authorized(engine: Engine, actor: Actor, required: Role) -> None:
    """`authorize` in its own short transaction (for functions that check before their first one)."""
    if actor.is_process:
        return
    with unit_of_work(engine) as session:
        authorize(session, actor, required)


def has_role(user: AppUser | None, required: Role) -> bool:
    if user is None or not user.role:
        return False
    try:
        return ROLE_RANK[Role(user.role)] >= ROLE_RANK[required]
    except ValueError:  # an unknown role string grants nothing
        return False


def normalise_email(email: str) -> str:
    return email.strip().lower()


def resolve_user(
    engine: Engine, *, sub: str | None, email: str | None, admin_emails: frozenset[str] = frozenset()
) -> AppUser | None:
    """The user row for a signed-in identity, binding `sub` on first sign-in. None = no access.

    Runs (and commits) its own transaction, so the binding and its audit event are stored together
    before the row is returned.
    """
    if not sub:
        return None
    with unit_of_work(engine) as session:
        user = session.exec(select(AppUser).where(AppUser.sub == sub)).first()
        if user is not None:
            return user
        if not email:
            return None
        address = normalise_email(email)
        user = session.exec(select(AppUser).where(AppUser.email == address)).first()
        if user is not None:
            if user.sub is not None:  # the address belongs to another subject: never rebind silently
                _refuse_identity(session, sub=sub, address=address, user_id=user.id)
                return None
            user.sub = sub
            user.updated_at = utcnow()
            session.add(user)
            audit.record(session, actor=address, action="user.first_sign_in", entity_type="user",
                         entity_id=user.id, after={"email": address, "role": user.role})
            return user
        if address in admin_emails:
            user = AppUser(email=address, sub=sub, role=Role.admin.value)
            session.add(user)
            session.flush()
            audit.record(session, actor=address, action="user.bootstrap_admin", entity_type="user",
                         entity_id=user.id, after={"email": address, "role": Role.admin.value},
                         detail="ADMIN_EMAILS")
            return user
        return None


def subject_fingerprint(sub: str) -> str:
    """A subject as the audit trail names it (not the subject itself: it is the identity provider's key)."""
    return "sub:" + hashlib.sha256(sub.encode()).hexdigest()[:16]


def _refuse_identity(session: Session, *, sub: str, address: str, user_id: int | None) -> None:
    """A second subject presents a bound user's address: "Kein Zugriff", audited once per subject (a
    dashboard run happens on every click, the trail must not fill up)."""
    fingerprint = subject_fingerprint(sub)
    seen = session.exec(select(AuditEvent.id).where(
        AuditEvent.action == "user.identity_refused", AuditEvent.detail == fingerprint).limit(1)).first()
    if seen is None:
        audit.record(session, actor=address, action="user.identity_refused", entity_type="user", entity_id=user_id,
                     after={"email": address}, detail=fingerprint)


def validate_email(email: str) -> str:
    address = normalise_email(email)
    if not _EMAIL_RE.match(address) or len(address) > 254:
        raise ValidationFailed({"email": "Bitte eine gültige E-Mail-Adresse eingeben."})
    return address


def set_role(engine: Engine, *, actor: Actor, email: str, role: Role | None, display_name: str = "") -> AppUser:
    """Grant (or with None, take away) a role (admins). Creates the user row for a new address."""
    with unit_of_work(engine) as session:
        authorize(session, actor, Role.admin)
        return _set_role(session, actor=actor.name, email=email, role=role, display_name=display_name)


def list_users(engine: Engine) -> list[AppUser]:
    with unit_of_work(engine) as session:
        return list(session.exec(select(AppUser).order_by(col(AppUser.email))).all())


def count_admins(engine: Engine) -> int:
    with unit_of_work(engine) as session:
        return _count_admins(session)


def _set_role(session: Session, *, actor: str, email: str, role: Role | None, display_name: str = "") -> AppUser:
    """set_role inside the caller's transaction (set_role, and the demo seed's one transaction)."""
    address = validate_email(email)
    user = session.exec(select(AppUser).where(AppUser.email == address)).first()
    before = None if user is None else {"role": user.role}
    if user is not None and user.role == Role.admin.value and role != Role.admin and _count_admins(session) <= 1:
        raise ValidationFailed({"role": "Der letzte Administrator kann seine Rolle nicht verlieren."})
    if user is None:
        user = AppUser(email=address, display_name=display_name.strip()[:200])
    user.role = role.value if role else None
    user.updated_at = utcnow()
    session.add(user)
    session.flush()
    audit.record(session, actor=actor, action="user.role_set", entity_type="user", entity_id=user.id,
                 before=before, after={"email": address, "role": user.role})
    return user


def _count_admins(session: Session) -> int:
    return len(session.exec(select(AppUser.id).where(AppUser.role == Role.admin.value)).all())
