"""Benutzer: who may use Token Desk, with which role (admins only)."""

import streamlit as st

from core import users
from core.platform.errors import ValidationFailed
from core.platform.models import Role
from core.platform.timefmt import format_local
from core.users import ROLE_LABELS
from ui.feedback import flash, show_flashes
from ui.guard import actor_of, require_page
from ui.services import services
from ui.text import frame

user = require_page(__file__)

_settings, engine, _keyring = services()

NO_ROLE = "none"
ROLE_CHOICES = [r.value for r in Role] + [NO_ROLE]


def role_label(value: str | None) -> str:
    return ROLE_LABELS[Role(value)] if value else "kein Zugriff"


st.title("Benutzer")
show_flashes()
st.caption(
    "Rollen: Betrachter sehen Token-Status und Historie; Bearbeiter geben Belege frei und übertragen; "
    "Administratoren verwalten Unternehmen, Token, Benutzer und Schlüssel. "
    "Eine Änderung wirkt sofort, auch in offenen Sitzungen."
)

all_users = users.list_users(engine)

st.dataframe(
    frame([
        {"E-Mail": u.email, "Name": u.display_name, "Rolle": role_label(u.role),
         "Schon angemeldet": u.sub is not None, "Geändert": format_local(u.updated_at)}
        for u in all_users
    ]),
    hide_index=True, width="stretch",
)

st.subheader("Rolle vergeben oder entziehen")
with st.form("user_role"):
    email = st.text_input("E-Mail-Adresse", key="user_role_email")
    email_error = st.empty()
    role = st.selectbox("Rolle", ROLE_CHOICES, format_func=lambda v: role_label(None if v == NO_ROLE else v),
                        key="user_role_role")
    role_error = st.empty()
    submitted = st.form_submit_button("Speichern", type="primary", key="user_role_submit")
if submitted:
    try:
        users.set_role(engine, actor=actor_of(user), email=email, role=None if role == NO_ROLE else Role(role))
        flash(f"{email.strip().lower()}: {role_label(None if role == NO_ROLE else role)}.")
        st.rerun()
    except ValidationFailed as failure:
        for field, message in failure.field_errors.items():
            (email_error if field == "email" else role_error).error(message)
