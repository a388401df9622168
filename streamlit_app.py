"""Token Desk dashboard: router and frame.

Sign-in gate, role lookup in the database, navigation built per run from the user's role, shared
sidebar. Pages guard themselves too (ui.guard.require_page), because a deep link to a file in
pages/ can run it without this router (docs/style.md §3.1 rule 1).
"""

import streamlit as st

from core.platform.models import Role
from core.users import ROLE_LABELS
from ui.errors import error_boundary
from ui.forbidden import forbidden_page
from ui.guard import may, require_signed_in_user
from ui.navigation import PAGE_TABLE
from ui.scheduler_status import show_scheduler_status

st.set_page_config(page_title="Token Desk", page_icon=":material/key:", layout="wide")


def main() -> None:
    user = require_signed_in_user()
    assert user.role is not None  # the guard lets only users with a role through (ui.guard.current_user)

    sections: dict[str, list] = {}
    for spec in PAGE_TABLE:
        if may(user, spec.min_role):
            sections.setdefault(spec.section, []).append(
                st.Page(spec.file, title=spec.title, icon=spec.icon, url_path=spec.url_path,
                        visibility="hidden" if spec.hidden else "visible")
            )
        else:  # its URL shows the German "Keine Berechtigung" page, not Streamlit's "Page not found"
            sections.setdefault("", []).append(forbidden_page(spec, user))
    navigation = st.navigation(sections)

    with st.sidebar:
        st.caption("Angemeldet als")
        st.write(f"**{user.display_name or user.email}**  \n{ROLE_LABELS[Role(user.role)]}")
        if st.button("Abmelden", key="sign_out"):
            st.logout()
        st.divider()
        show_scheduler_status()

    navigation.run()


with error_boundary():  # no traceback ever reaches the browser (ui/errors.py)
    main()
