"""The role guard. Every page calls `require_page(__file__)` as its first statement after its imports.

It needs nothing from streamlit_app.py: it reads `st.user`, looks the role up in the database on
every run (so removing a role takes effect at once) and stops the script unless the user may see
the page. A signed-out visitor sees only a sign-in prompt; a user without a role a polite
"no access" page.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import streamlit as st

from core import users
from core.platform.config import ConfigurationError, get_settings
from core.platform.db import get_engine
from core.platform.models import AppUser, Role
from core.users import Actor
from ui.errors import error_boundary
from ui.forbidden import show_forbidden
from ui.navigation import spec_for_file
from ui.sign_in_return import remember, requested_target
from ui.text import plain


def identity() -> dict[str, str] | None:
    """The signed-in identity's claims, or None when nobody is signed in."""
    info = st.user.to_dict()
    if not info.get("is_logged_in"):
        return None
    return {k: str(v) for k, v in info.items() if isinstance(v, str)}


def current_user() -> AppUser | None:
    """The database user of the signed-in identity (None: signed out or no role)."""
    claims = identity()
    if claims is None:
        return None
    try:
        settings = get_settings()
    except ConfigurationError as exc:
        st.error(plain(str(exc)))
        st.stop()
    # resolve_user commits its own transaction (a first sign-in's `sub` binding is stored with its
    # audit event) and returns the row detached.
    user = users.resolve_user(get_engine(settings.database_url), sub=claims.get("sub"), email=claims.get("email"),
                              admin_emails=settings.admin_email_set)
    if user is None or not user.role:
        return None
    return user


def show_sign_in(before_login: Callable[[], None] | None = None) -> None:
    """The sign-in page; `before_login` runs as "Anmelden" is clicked (e.g. keeping the deep link)."""
    st.title("Token Desk")
    st.write("Langzeittoken und Übertragungen an DATEV und Lexware Office.")
    st.info("Bitte melden Sie sich an.")
    if st.button("Anmelden", type="primary", key="sign_in"):
        if before_login is not None:
            before_login()
        st.login()


def show_no_access() -> None:
    claims = identity() or {}
    st.title("Kein Zugriff")
    st.write(
        f"Sie sind als **{claims.get('email', claims.get('name', 'unbekannt'))}** angemeldet, "
        "haben aber noch keine Rolle in Token Desk."
    )
    st.write("Bitte wenden Sie sich an eine Administratorin oder einen Administrator.")
    if st.button("Abmelden", key="sign_out_no_access"):
        st.logout()


def require_signed_in_user(before_login: Callable[[], None] | None = None) -> AppUser:
    """Stop the run with the sign-in or no-access view unless a user with a role is signed in."""
    if identity() is None:
        show_sign_in(before_login)
        st.stop()
    with error_boundary():  # also when a page runs without the router (deep link, legacy pages/ mode)
        user = current_user()
        if user is None:
            show_no_access()
            st.stop()
        return user
    st.stop()  # the lookup failed (e.g. database down): the boundary has shown why
    raise AssertionError("st.stop() returned")  # never reached; keeps the return type honest


def require_role(required: Role) -> AppUser:
    user = require_signed_in_user()
    if not users.has_role(user, required):
        st.error("Für diese Seite fehlt Ihnen die Berechtigung.")
        st.stop()
    return user


def require_page(page_file: str) -> AppUser:
    """The first statement of every page after its imports: the role the page table names for this file."""
    spec = spec_for_file(page_file)
    if spec is None:  # not in the table: closed to everyone
        st.error("Diese Seite ist nicht freigegeben.")
        st.stop()
    # signed out on a fresh server (legacy pages/ mode runs the file itself): "Anmelden" keeps the page
    user = require_signed_in_user(partial(remember, requested_target(spec)))
    if not users.has_role(user, spec.min_role):
        show_forbidden(spec, user)
        st.stop()
    return user


def may(user: AppUser, required: Role) -> bool:
    return users.has_role(user, required)


def actor_of(user: AppUser) -> Actor:
    """The signed-in user as the acting user of a core function (which checks the role again itself)."""
    return Actor.of(user)
