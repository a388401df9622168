"""Token Desk dashboard: router and frame.

Sign-in gate, role lookup in the database, navigation built per run from the user's role, shared
sidebar. Pages guard themselves too (ui.guard.require_page), because a deep link to a file in
pages/ can run it without this router (docs/style.md §3.1 rule 1).

Signed out (or signed in without a role), the navigation holds only the sign-in (or "Kein Zugriff")
page, under `/` and, hidden, under every page's URL (which keeps the page for after the sign-in:
ui.sign_in_return), and the Anforderungslink page (`/anforderung`, pages/anforderung.py), with the menu
hidden. So no page list is shown before sign-in, and the link page, which needs no sign-in, leads nowhere
else. The link page is in no PAGE_TABLE entry (it needs no role) and gets neither menu nor sidebar from
this router, also for a signed-in user who opens a link.
"""

from functools import partial

import streamlit as st

from core.platform.models import Role
from core.users import ROLE_LABELS
from ui.errors import error_boundary
from ui.forbidden import forbidden_page
from ui.guard import current_user, identity, may, show_no_access, show_sign_in
from ui.navigation import PAGE_TABLE, PageSpec
from ui.scheduler_status import show_scheduler_status
from ui.sign_in_return import continue_after_sign_in, remember, requested_target
from ui.text import plain

# An emoji, not ":material/key:": Streamlit's browser code takes a material page icon from fonts.gstatic.com,
# an emoji it draws inline (tests/e2e/test_overview.py: nothing is fetched from other hosts).
st.set_page_config(page_title="Token Desk", page_icon="🔑", layout="wide")


LINK_URL_PATH = "anforderung"  # also the default DATEV redirect for a link's login (Settings.datev_link_callback_uri)


def link_page() -> st.Page:
    return st.Page("pages/anforderung.py", title="Zugriff freigeben", icon=":material/link:", url_path=LINK_URL_PATH,
                   visibility="hidden")


def gate(spec: PageSpec | None = None) -> None:
    """The default page without a signed-in role holder: sign-in, or "Kein Zugriff" for a user without a role.
    Under a page's URL (`spec`), "Anmelden" keeps that page, to be opened after the sign-in (ui.sign_in_return)."""
    if identity() is None:
        show_sign_in(partial(remember, requested_target(spec)) if spec is not None else None)
    else:
        show_no_access()


def gate_pages() -> list[st.Page]:
    """Signed out, every page's URL shows the sign-in page (hidden; no page list, no "Page not found")."""
    return [st.Page(partial(gate, spec), title="Token Desk", icon=":material/key:", url_path=spec.url_path,
                    visibility="hidden") for spec in PAGE_TABLE]


def show_menu(menu: dict[str, list]) -> None:
    """The page menu, drawn by us: Streamlit's own sidebar menu is off (`client.showSidebarNavigation =
    false` in .streamlit/config.toml), because on a fresh server, in legacy `pages/` mode, it lists every
    file of pages/ by its English file name to anyone, signed in or not, the link page's visitor included."""
    for section, pages in menu.items():
        if section:
            st.caption(section)
        for page in pages:
            st.page_link(page)
    st.divider()


def main() -> None:
    user = current_user() if identity() is not None else None
    if user is None:
        st.navigation([st.Page(gate, title="Token Desk", icon=":material/key:", default=True), *gate_pages(),
                       link_page()], position="hidden").run()
        return
    assert user.role is not None  # current_user returns only users with a role

    sections: dict[str, list] = {}
    menu: dict[str, list] = {}
    for spec in PAGE_TABLE:
        if may(user, spec.min_role):
            page = st.Page(spec.file, title=spec.title, icon=spec.icon, url_path=spec.url_path,
                           visibility="hidden" if spec.hidden else "visible")
            sections.setdefault(spec.section, []).append(page)
            if not spec.hidden:
                menu.setdefault(spec.section, []).append(page)
        else:  # its URL shows the German "Keine Berechtigung" page, not Streamlit's "Page not found"
            sections.setdefault("", []).append(forbidden_page(spec, user))
    sections.setdefault("", []).append(link_page())
    navigation = st.navigation(sections, position="hidden")  # the menu is ours (show_menu)
    if navigation.url_path == LINK_URL_PATH:
        navigation.run()
        return
    continue_after_sign_in(user, at_root=navigation.url_path == "")  # a deep link from before the sign-in

    with st.sidebar:
        show_menu(menu)
        st.caption("Angemeldet als")
        st.write(f"**{plain(user.display_name or user.email)}**  \n{ROLE_LABELS[Role(user.role)]}")
        if st.button("Abmelden", key="sign_out"):
            st.logout()
        st.divider()
        show_scheduler_status()

    navigation.run()


with error_boundary():  # no traceback ever reaches the browser (ui/errors.py)
    main()
