"""DATEV sends the browser back here after login and consent (hidden page, `/datev_callback`)."""

import streamlit as st
from streamlit.errors import StreamlitAPIException

from core.connections.datev_login import finish_login
from ui.feedback import flash, flash_error, show_flashes
from ui.guard import require_page
from ui.links import page_link
from ui.services import services
from ui.sign_in_return import resolve

user = require_page(__file__)

settings, engine, keyring = services()
params = {key: str(value) for key, value in st.query_params.to_dict().items()}
st.query_params.clear()  # code and state never stay in the address bar or the history

if not params.get("state") and not params.get("code") and not params.get("error"):
    st.title("DATEV-Anmeldung")
    st.info("Es ist keine DATEV-Anmeldung offen.")
    page_link("pages/tokens.py", "Zu den Langzeittoken")  # the page it names, not the Übersicht at "/"
    st.stop()

outcome = finish_login(engine, settings, keyring, params=params, user=user)
if outcome.ok:
    flash(outcome.message)
    if outcome.warning:
        flash_error(outcome.warning)
else:
    flash_error(outcome.message)
back = resolve(outcome.return_to, user) if outcome.return_to else None  # e.g. Übertragen with its selection
try:
    if back is not None:
        st.switch_page(back[0].file, query_params=back[1] or None)
    st.switch_page("pages/tokens.py")
except StreamlitAPIException:  # opened without the router (a deep link on a fresh server)
    show_flashes()
    page_link("pages/tokens.py", "Zu den Langzeittoken")
