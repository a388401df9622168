"""The Anforderungslink page (`/anforderung`; the file is named after its URL so that Streamlit's legacy
`pages/` mode, in force on a fresh server until a session has run st.navigation, finds it too and runs it
directly instead of showing its English "Page not found"): a DATEV account holder without a Token Desk account grants
the long-term token of one company (issue #12; core.connections.request_links).

No sign-in: the router registers this page in every navigation variant and shows no menu, no sidebar and
no other page around it. It shows only what `open_link` returns (company, data set, who asked, until
when) and, after DATEV, the result; it offers nothing more. It is also DATEV's redirect target for a
login started here (`DATEV_LINK_REDIRECT_URI`, default PUBLIC_URL/anforderung): DATEV's answer is
accepted only in the browser that started the login (ui.link_client.browser_identity).

All outside text (company name, admin name, DATEV user name, DATEV's error texts) goes through
ui.text.plain, so a company named like Markdown stays text.
"""

import html

import streamlit as st

from core.connections.disconnect import DATEV_CONNECTED_APPS_URL
from core.connections.request_links import (
    LINK_PARAM,
    REFUSED,
    LinkResult,
    finish_link_login,
    open_link,
    start_link_login,
)
from core.platform.errors import UserFacingError
from core.platform.timefmt import format_local
from ui.link_client import browser_identity, client_address
from ui.services import services
from ui.text import plain

RESULT_KEY = "request_link_result"
STARTED_KEY = "request_link_started_url"
DATEV_ANSWER = ("state", "code", "error")

st.title("Dauerhaften DATEV-Zugriff freigeben")
settings, engine, keyring = services()
params = {key: str(value) for key, value in st.query_params.to_dict().items()}


def show_result(result: LinkResult) -> None:
    if result.ok:
        st.success(plain(result.message), icon=":material/check_circle:")
        facts = []
        if result.company_name:
            facts.append(f"**Unternehmen:** {plain(result.company_name)}")
        if result.grantor_name:
            facts.append(f"**Angemeldet als:** {plain(result.grantor_name)}")
        if result.valid_until:
            facts.append(f"**Gültig bis:** {format_local(result.valid_until)}")
        if facts:
            st.markdown("  \n".join(facts))
        if result.warning:
            st.warning(plain(result.warning))
    else:
        st.error(plain(result.message), icon=":material/error:")
        st.write("Bitte wenden Sie sich an die Person, die Ihnen den Link geschickt hat; sie kann einen neuen "
                 "Link erstellen.")
    st.caption(f"Den dauerhaften Zugriff können Sie jederzeit bei DATEV widerrufen: {DATEV_CONNECTED_APPS_URL}")


if any(params.get(key) for key in DATEV_ANSWER):  # DATEV sends the browser back here
    st.query_params.clear()  # code and state never stay in the address bar or the history
    st.session_state.pop(STARTED_KEY, None)
    st.session_state[RESULT_KEY] = finish_link_login(engine, settings, keyring, params=params,
                                                     browser=browser_identity())

if RESULT_KEY in st.session_state:
    show_result(st.session_state[RESULT_KEY])
    st.stop()

token = params.get(LINK_PARAM, "")
if not token:
    st.error(REFUSED)
    st.write("Bitte öffnen Sie den vollständigen Link aus der E-Mail oder Nachricht, die Sie erhalten haben.")
    st.stop()

started_url = st.session_state.get(STARTED_KEY)
if started_url is None:
    try:
        facts = open_link(engine, settings, token=token, address=client_address())
    except UserFacingError as exc:
        st.error(plain(str(exc)))
        st.stop()
    st.write(f"**{plain(facts.requested_by)}** bittet Sie, Token Desk dauerhaften Zugriff auf die Belege eines "
             "DATEV-Datenbestands zu geben, damit freigegebene Belege ohne erneute Anmeldung an DATEV übertragen "
             "werden können (ein sogenanntes Langzeittoken).")
    st.markdown(f"**Unternehmen:** {plain(facts.company_name)}  \n"
                f"**DATEV-Datenbestand (Berater-Nr.–Mandanten-Nr.):** {plain(facts.data_set)}  \n"
                f"**Angefordert von:** {plain(facts.requested_by)}  \n"
                f"**Link gültig bis:** {format_local(facts.expires_at)}")
    st.subheader("Was der dauerhafte Zugriff erlaubt")
    st.markdown(
        "- Token Desk verwendet ihn ausschließlich, um freigegebene **Belege in DATEV Unternehmen online "
        "(Belege online)** dieses einen Datenbestands hochzuladen – für nichts anderes und für keinen anderen "
        "Datenbestand. Welche Berechtigungen genau erteilt werden, zeigt DATEV bei der Zustimmung an.\n"
        "- Der Zugriff gilt etwa zwei Jahre. Sie können ihn jederzeit bei DATEV unter "
        f"[Dauerhaften Zugriff verwalten]({DATEV_CONNECTED_APPS_URL}) widerrufen.\n"
        "- Wählen Sie bei DATEV genau den oben genannten Datenbestand; ein anderer wird abgelehnt.")
    st.write("Mit dem Knopf melden Sie sich bei DATEV an (z. B. DATEV SmartLogin) und stimmen dem dauerhaften "
             "Zugriff zu. Der Link lässt sich nur einmal verwenden; die Anmeldung muss in diesem Browser innerhalb "
             f"von {settings.pending_authorization_minutes} Minuten abgeschlossen werden.")
    if st.button("Weiter zur DATEV-Anmeldung", type="primary", key="request_link_start"):
        try:
            started_url = start_link_login(engine, settings, keyring, token=token, address=client_address(),
                                           browser=browser_identity())
        except UserFacingError as exc:
            st.error(plain(str(exc)))
            st.stop()
        st.session_state[STARTED_KEY] = started_url
        st.rerun()  # the used link's button is gone: a second click would only count as a refused try

if started_url is not None:
    st.info("Der Link ist jetzt verbraucht. Bitte melden Sie sich bei DATEV an; danach kommen Sie auf diese Seite "
            "zurück und sehen das Ergebnis.")
    st.markdown(f'<a href="{html.escape(started_url)}" target="_self" data-testid="request-link-datev">'
                "Jetzt bei DATEV anmelden</a>", unsafe_allow_html=True)
