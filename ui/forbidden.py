"""The German "Keine Berechtigung" page: what a signed-in user sees on a page their role may not open,
with the page's name, the role it needs and the administrators to ask.

The router registers it, hidden, under the url_path of every page the role may not open, so such a URL
shows this page instead of Streamlit's English "Page not found"; `ui.guard.require_page` shows it too
when a page file runs without the router.
"""

from __future__ import annotations

from functools import partial

import streamlit as st

from core import users
from core.platform.config import get_settings
from core.platform.db import get_engine
from core.platform.models import AppUser, Role
from core.users import ROLE_LABELS
from ui.navigation import PageSpec
from ui.text import plain


def administrators() -> list[str]:
    """The administrators as "Name (address)", for the reader to contact."""
    engine = get_engine(get_settings().database_url)
    return [f"{u.display_name} ({u.email})" if u.display_name else u.email
            for u in users.list_users(engine) if u.role == Role.admin.value]


def show_forbidden(spec: PageSpec, user: AppUser) -> None:
    st.title("Keine Berechtigung")
    role = ROLE_LABELS[Role(user.role)] if user.role else "keine"
    st.write(f"Für diese Seite fehlt Ihnen die Berechtigung: „{spec.title}“ ist der Rolle "
             f"„{ROLE_LABELS[spec.min_role]}“ vorbehalten, Ihre Rolle ist „{role}“.")
    admins = administrators()
    if admins:
        st.write("Eine andere Rolle vergeben die Administratoren:")
        st.markdown("\n".join(f"- {plain(a)}" for a in admins))
    else:
        st.write("Eine andere Rolle vergeben die Administratoren.")


def forbidden_page(spec: PageSpec, user: AppUser) -> st.Page:
    """The hidden page under `spec`'s url_path for a user whose role may not open it."""
    return st.Page(partial(show_forbidden, spec, user), title="Keine Berechtigung", icon=":material/block:",
                   url_path=spec.url_path, visibility="hidden")
