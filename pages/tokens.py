"""Langzeittoken: one card per company, as DATEV requires of apps. Viewers read; admins request,
test and delete; operators may also log in once without a long-term token (manual transfers).

A filtered, searchable list: broken tokens first, at most CARDS_PER_PAGE cards per run (at 1,000
companies the page never draws every card)."""


import streamlit as st

from core.connections.disconnect import DATEV_CONNECTED_APPS_URL
from core.connections.health import Health, token_cards
from core.overview import CARDS_PER_PAGE, filter_cards
from core.platform.models import PROVIDER_LABELS, Provider
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
else:
    filters = st.columns([3, 3, 2])
    search = filters[0].text_input("Suche", key="tokens_search", placeholder="Name oder Berater-Nr.–Mandanten-Nr.")
    healths = filters[1].multiselect("Status", list(Health), key="tokens_health", select_all=False, placeholder="Alle",
                                     format_func=lambda h: h.value)
    providers = filters[2].multiselect("Schnittstelle", list(Provider), key="tokens_provider", select_all=False, placeholder="Alle",
                                       format_func=lambda p: PROVIDER_LABELS[p])
    chosen = filter_cards(cards, search=search, healths=healths, providers=providers)
    pages = max(1, -(-len(chosen) // CARDS_PER_PAGE))
    if st.session_state.get("tokens_page", 1) > pages:
        st.session_state["tokens_page"] = pages
    page_no = int(st.number_input("Seite", min_value=1, max_value=pages, value=1, step=1, key="tokens_page")) \
        if pages > 1 else 1
    shown = chosen[(page_no - 1) * CARDS_PER_PAGE: page_no * CARDS_PER_PAGE]
    st.caption(f"{len(chosen)} von {len(cards)} Unternehmen · Seite {page_no} von {pages} · "
               "ungültige und abgelaufene zuerst")
    if not shown:
        st.info("Kein Unternehmen passt zu dieser Auswahl.")
    view = TokenCardView(settings=settings, engine=engine, keyring=keyring, user=user)
    for card in shown:
        view.show(card)

st.markdown(f"Dauerhafte Zugriffe verwalten Sie auch bei DATEV unter "
            f"[Verbundene Anwendungen]({DATEV_CONNECTED_APPS_URL}).")
