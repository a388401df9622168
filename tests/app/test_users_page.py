"""The users screen: an admin grants and removes roles; removal takes effect at the next run."""

from core import users
from core.platform.db import get_engine

PAGE = "pages/users.py"


def test_admin_grants_a_role_and_removal_takes_effect_at_once(app, app_db) -> None:
    at = app("admin", PAGE).run()
    at.text_input(key="user_role_email").input("nobody@tokendesk.demo")
    at.selectbox(key="user_role_role").select("viewer")
    at.button(key="user_role_submit").click().run()
    assert not at.exception

    newcomer = app("nobody", "pages/companies.py").run()
    assert "Unternehmen" in [t.value for t in newcomer.title]

    at.text_input(key="user_role_email").input("nobody@tokendesk.demo")
    at.selectbox(key="user_role_role").select("none")
    at.button(key="user_role_submit").click().run()
    assert not at.exception

    newcomer.run()  # the same open session, next run
    assert "Unternehmen" not in [t.value for t in newcomer.title]
    assert "Kein Zugriff" in [t.value for t in newcomer.title]


def test_invalid_email_is_reported_next_to_the_field(app, app_db) -> None:
    at = app("admin", PAGE).run()
    at.text_input(key="user_role_email").input("kein-at-zeichen")
    at.button(key="user_role_submit").click().run()
    assert "gültige E-Mail-Adresse" in " ".join(e.value for e in at.error)
    assert all(u.email != "kein-at-zeichen" for u in users.list_users(get_engine(app_db)))


def test_audit_page_lists_changes_for_admin(app) -> None:
    at = app("admin", "pages/audit_log.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert "Unternehmen angelegt" in set(table["Aktion"]) and "company.created" in set(table["Code"])
