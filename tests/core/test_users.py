"""Roles from the database: binding by e-mail, bootstrap admins, last-admin protection."""

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from core import users
from core.platform import audit
from core.platform.db import unit_of_work
from core.platform.errors import ValidationFailed
from core.platform.models import AppUser, AuditEvent, Role
from core.users import process
from testkit.rows import present


def test_role_ranks() -> None:
    admin, viewer = AppUser(email="a@x.de", role="admin"), AppUser(email="v@x.de", role="viewer")
    assert users.has_role(admin, Role.operator) and users.has_role(admin, Role.viewer)
    assert users.has_role(viewer, Role.viewer) and not users.has_role(viewer, Role.operator)
    assert not users.has_role(AppUser(email="n@x.de"), Role.viewer)
    assert not users.has_role(AppUser(email="w@x.de", role="superuser"), Role.viewer)
    assert not users.has_role(None, Role.viewer)


def test_first_sign_in_binds_subject_then_lookup_by_subject(engine: Engine) -> None:
    users.set_role(engine, actor=process("cli"), email="Vera@Example.de", role=Role.viewer)
    user = users.resolve_user(engine, sub="idp-123", email="vera@example.de")
    assert user is not None and user.sub == "idp-123"
    assert present(users.resolve_user(engine, sub="idp-123", email=None)).email == "vera@example.de"
    # another subject claiming the same address gets nothing
    assert users.resolve_user(engine, sub="idp-999", email="vera@example.de") is None


def test_first_sign_in_is_stored_with_one_audit_event(engine: Engine) -> None:
    users.set_role(engine, actor=process("cli"), email="vera@example.de", role=Role.viewer)
    first = users.resolve_user(engine, sub="idp-123", email="vera@example.de")
    again = users.resolve_user(engine, sub="idp-123", email="vera@example.de")
    assert first is not None and again is not None and first.id == again.id
    assert (first.email, first.role) == ("vera@example.de", "viewer")  # usable after its transaction
    with unit_of_work(engine) as s:
        assert s.exec(select(AppUser.sub).where(AppUser.email == "vera@example.de")).one() == "idp-123"
        events = s.exec(select(AuditEvent).where(AuditEvent.action == "user.first_sign_in")).all()
    assert [(e.actor, e.entity_id) for e in events] == [("vera@example.de", str(first.id))]


def test_unknown_user_has_no_access_and_admin_emails_bootstrap(engine: Engine) -> None:
    assert users.resolve_user(engine, sub="s1", email="new@x.de") is None
    boss = users.resolve_user(engine, sub="s2", email="Boss@X.de", admin_emails=frozenset({"boss@x.de"}))
    assert boss is not None and boss.role == "admin"
    assert present(users.resolve_user(engine, sub="s2", email=None)).email == "boss@x.de"  # stored, found by subject
    assert users.count_admins(engine) == 1
    assert [e.action for e in audit.recent_events(engine, entity_type="user")] == ["user.bootstrap_admin"]


def test_removing_a_role_takes_effect_on_next_lookup(engine: Engine) -> None:
    users.set_role(engine, actor=process("cli"), email="a@x.de", role=Role.admin)
    users.set_role(engine, actor=process("cli"), email="o@x.de", role=Role.operator)
    users.resolve_user(engine, sub="o-sub", email="o@x.de")
    users.set_role(engine, actor=process("a@x.de"), email="o@x.de", role=None)
    user = users.resolve_user(engine, sub="o-sub", email="o@x.de")
    assert not users.has_role(user, Role.viewer)


def test_last_admin_cannot_lose_the_role(engine: Engine) -> None:
    users.set_role(engine, actor=process("cli"), email="a@x.de", role=Role.admin)
    with pytest.raises(ValidationFailed, match="letzte Administrator"):
        users.set_role(engine, actor=process("a@x.de"), email="a@x.de", role=Role.viewer)
    assert [u.role for u in users.list_users(engine)] == ["admin"]


def test_bad_email_is_rejected(engine: Engine) -> None:
    with pytest.raises(ValidationFailed, match="gültige E-Mail"):
        users.set_role(engine, actor=process("cli"), email="not-an-address", role=Role.viewer)
    assert users.list_users(engine) == []


def test_a_second_subject_with_a_bound_address_is_refused_and_audited_once(engine: Engine) -> None:
    users.set_role(engine, actor=process("cli"), email="vera@example.de", role=Role.admin)
    assert users.resolve_user(engine, sub="idp-123", email="vera@example.de") is not None
    for _run in range(3):  # every click is a dashboard run
        assert users.resolve_user(engine, sub="intruder", email="VERA@example.de") is None
    assert users.resolve_user(engine, sub="intruder-2", email="vera@example.de") is None
    refused = [e for e in audit.recent_events(engine, entity_type="user") if e.action == "user.identity_refused"]
    assert sorted(e.detail or "" for e in refused) == sorted(
        [users.subject_fingerprint("intruder"), users.subject_fingerprint("intruder-2")])
    assert all("intruder" not in (e.detail or "") for e in refused)  # the subject itself is not written
    with unit_of_work(engine) as s:
        assert s.exec(select(AppUser.sub).where(AppUser.email == "vera@example.de")).one() == "idp-123"
