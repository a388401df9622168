"""Roles from the database: binding by e-mail, bootstrap admins, last-admin protection."""

import pytest
from sqlalchemy import Engine

from core import users
from core.platform.db import unit_of_work
from core.platform.errors import ValidationFailed
from core.platform.models import AppUser, Role


def test_role_ranks() -> None:
    admin, viewer = AppUser(email="a@x.de", role="admin"), AppUser(email="v@x.de", role="viewer")
    assert users.has_role(admin, Role.operator) and users.has_role(admin, Role.viewer)
    assert users.has_role(viewer, Role.viewer) and not users.has_role(viewer, Role.operator)
    assert not users.has_role(AppUser(email="n@x.de"), Role.viewer)
    assert not users.has_role(AppUser(email="w@x.de", role="superuser"), Role.viewer)
    assert not users.has_role(None, Role.viewer)


def test_first_sign_in_binds_subject_then_lookup_by_subject(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        users.set_role(s, actor="cli", email="Vera@Example.de", role=Role.viewer)
    with unit_of_work(engine) as s:
        user = users.resolve_user(s, sub="idp-123", email="vera@example.de")
        assert user is not None and user.sub == "idp-123"
    with unit_of_work(engine) as s:
        assert users.resolve_user(s, sub="idp-123", email=None).email == "vera@example.de"
        # another subject claiming the same address gets nothing
        assert users.resolve_user(s, sub="idp-999", email="vera@example.de") is None


def test_unknown_user_has_no_access_and_admin_emails_bootstrap(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        assert users.resolve_user(s, sub="s1", email="new@x.de") is None
        boss = users.resolve_user(s, sub="s2", email="Boss@X.de", admin_emails=frozenset({"boss@x.de"}))
        assert boss is not None and boss.role == "admin"


def test_removing_a_role_takes_effect_on_next_lookup(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        users.set_role(s, actor="cli", email="a@x.de", role=Role.admin)
        users.set_role(s, actor="cli", email="o@x.de", role=Role.operator)
        users.resolve_user(s, sub="o-sub", email="o@x.de")
    with unit_of_work(engine) as s:
        users.set_role(s, actor="a@x.de", email="o@x.de", role=None)
    with unit_of_work(engine) as s:
        user = users.resolve_user(s, sub="o-sub", email="o@x.de")
        assert not users.has_role(user, Role.viewer)


def test_last_admin_cannot_lose_the_role(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        users.set_role(s, actor="cli", email="a@x.de", role=Role.admin)
    with pytest.raises(ValidationFailed, match="letzte Administrator"):
        with unit_of_work(engine) as s:
            users.set_role(s, actor="a@x.de", email="a@x.de", role=Role.viewer)


def test_bad_email_is_rejected(engine: Engine) -> None:
    with pytest.raises(ValidationFailed, match="gültige E-Mail"):
        with unit_of_work(engine) as s:
            users.set_role(s, actor="cli", email="not-an-address", role=Role.viewer)
