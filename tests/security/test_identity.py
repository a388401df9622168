"""Issue 9, finding 1 (sign-in identity), through the page path: the dashboard's router with a signed-in
identity (AppTest), as a real browser session would run it."""

from __future__ import annotations

from sqlmodel import col, select

from core.platform.db import get_engine, unit_of_work
from core.platform.models import AppUser, AuditEvent
from core.users import subject_fingerprint


def texts(at) -> str:
    return " ".join(str(e.value) for e in [*at.title, *at.markdown, *at.info, *at.error, *at.caption])


def test_a_second_subject_with_an_admins_address_gets_no_access_and_one_audit_event(app, app_db) -> None:
    """Before the fix the first sign-in's binding was lost, so any subject presenting the admin's
    address became admin, and every run wrote audit rows."""
    assert not app("admin").run().exception  # the real admin signs in first: the subject is bound
    for _run in range(3):
        at = app("admin")
        at.user = {"is_logged_in": True, "sub": "someone-else", "email": "Admin@Tokendesk.demo", "name": "Eve"}
        at.run()
        assert not at.exception
        assert "Kein Zugriff" in texts(at)
        assert "Angemeldet als" not in [c.value for c in at.sidebar.caption] and len(at.dataframe) == 0
    with unit_of_work(get_engine(app_db)) as s:
        admin = s.exec(select(AppUser).where(AppUser.email == "admin@tokendesk.demo")).one()
        events = s.exec(select(AuditEvent).where(col(AuditEvent.action).startswith("user."))
                        .order_by(col(AuditEvent.id))).all()
    assert admin.sub == "demo-admin" and admin.role == "admin"
    assert [(e.action, e.detail) for e in events if e.action != "user.role_set"] == [
        ("user.first_sign_in", None), ("user.identity_refused", subject_fingerprint("someone-else"))]
