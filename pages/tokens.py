"""Langzeittoken: one card per company, as DATEV requires of apps. Viewers read; admins request,
test and delete; operators may also log in once without a long-term token (manual transfers)."""


import streamlit as st

from core.connections.disconnect import DATEV_CONNECTED_APPS_URL
from core.connections.health import token_cards
from ui.feedback import show_flashes
from ui.guard import require_page
from ui.services import services
from ui.token_card import TokenCardView

user = require_page(__file__)

settings, engine, keyring = services()
st.title("Langzeittoken")
st.caption(
    "Ein Langzeittoken ist ein Schlüssel, mit dem Token Desk Belege ohne ständige Neuanmeldung an DATEV "
    "überträgt. Es wird pro DATEV-Unternehmen benötigt; dasselbe gilt für andere Schnittstellen wie Lexware Office. "
    "Eine Anmeldung bei DATEV für jede einzelne Übertragung bleibt möglich."
)
show_flashes()


cards = token_cards(engine, settings)
if not cards:
    st.info("Kein Unternehmen nutzt DATEV oder Lexware Office als Schnittstelle.")
view = TokenCardView(settings=settings, engine=engine, keyring=keyring, user=user)
for card in cards:
    view.show(card)

st.markdown(f"Dauerhafte Zugriffe verwalten Sie auch bei DATEV unter "
            f"[Verbundene Anwendungen]({DATEV_CONNECTED_APPS_URL}).")
