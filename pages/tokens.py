"""Langzeittoken: one card per company, as DATEV requires of apps. Viewers read; admins request,
test and delete; operators may also log in once without a long-term token (manual transfers)."""

import html

import streamlit as st

from core.connections import disconnect, lexware_key
from core.connections.datev_login import start_login
from core.connections.disconnect import DATEV_CONNECTED_APPS_URL
from core.connections.health import Health, TokenCard, run_test, token_cards
from core.platform.errors import UserFacingError, ValidationFailed
from core.platform.models import PROVIDER_LABELS, Connection, ConnectionKind, Provider, Role, utcnow
from core.platform.timefmt import format_local
from ui.feedback import flash, flash_error, show_flashes
from ui.guard import actor_of, may, require_page
from ui.services import services

user = require_page(__file__)

settings, engine, keyring = services()
is_admin = may(user, Role.admin)
is_operator = may(user, Role.operator)
# The status light DATEV requires, as a coloured badge (renders without emoji fonts).
HEALTH_BADGES = {
    Health.active: ("green", ":material/check_circle:"), Health.expiring: ("orange", ":material/schedule:"),
    Health.expired: ("red", ":material/cancel:"), Health.invalid: ("red", ":material/error:"),
    Health.revoked: ("gray", ":material/block:"), Health.missing: ("gray", ":material/radio_button_unchecked:"),
}
TEST_ICONS = {True: ":green[:material/check_circle:]", False: ":red[:material/error:]"}


def status_badge(health: Health) -> str:
    color, icon = HEALTH_BADGES[health]
    return f":{color}-badge[{icon} {health.value}]"

st.title("Langzeittoken")
st.caption(
    "Ein Langzeittoken ist ein Schlüssel, mit dem Token Desk Belege ohne ständige Neuanmeldung an DATEV "
    "überträgt. Es wird pro DATEV-Unternehmen benötigt; dasselbe gilt für andere Schnittstellen wie Lexware Office. "
    "Eine Anmeldung bei DATEV für jede einzelne Übertragung bleibt möglich."
)
show_flashes()


def fact(label: str, value: str) -> None:
    st.markdown(f"**{label}:** {value}")


def go_to(url: str, label: str) -> None:
    """A link that opens the provider's login in this tab (DATEV sends the browser back here)."""
    st.markdown(f'<a href="{html.escape(url)}" target="_self" data-testid="auth-link">{html.escape(label)}</a>',
                unsafe_allow_html=True)


def company_id(card: TokenCard) -> int:
    assert card.company.id is not None  # the cards are built from stored companies
    return card.company.id


def connection_of(card: TokenCard) -> Connection:
    """The card's connection; called only where the card shows one (a token, or its history)."""
    assert card.connection is not None
    return card.connection


def connection_id(card: TokenCard) -> int:
    """The stored connection's id (the test and delete buttons show only for a stored token)."""
    cid = connection_of(card).id
    assert cid is not None
    return cid


def start(card: TokenCard, kind: ConnectionKind) -> None:
    try:
        url = start_login(engine, settings, keyring, company_id=company_id(card), user=user, kind=kind)
    except UserFacingError as exc:
        st.error(exc.message)
        return
    st.session_state[f"auth_url_{card.company.id}_{kind.value}"] = url


def last_test(c: Connection) -> str:
    """The last test call: when, whether it worked, and what the provider said."""
    if c.last_test_at is None:
        return "–"
    return f"{format_local(c.last_test_at)}: {TEST_ICONS[bool(c.last_test_ok)]} {html.escape(c.last_test_message or '')}"


def datev_facts(card: TokenCard) -> None:
    c = connection_of(card)
    left, right = st.columns(2)
    with left:
        fact("DATEV-Benutzer", html.escape(c.grantor_name or "–"))
        fact("Angefordert", f"{format_local(c.requested_at)} von {html.escape(c.requested_by or '–')}")
        fact("Gültig bis", format_local(c.refresh_expires_at))
        client = (c.bound_client or card.company.datev_client_id or "–").replace("-", "–")
        fact("Datenbestand (Berater-Nr.–Mandanten-Nr.)", client)
    with right:
        fact("Letzte Erneuerung", format_local(c.last_refresh_at))
        fact("Letzte Verwendung", format_local(c.last_used_at))
        fact("Letzte Testabfrage", last_test(c))
        fact("Fingerprint", f"`{c.token_fingerprint}`" if c.token_fingerprint else "–")
    if c.has_token and not c.offline_granted:
        st.warning("Kein Langzeittoken: DATEV hat keinen dauerhaften Zugriff erteilt. Bitte neu anfordern.")


def lexware_facts(card: TokenCard) -> None:
    c = connection_of(card)
    left, right = st.columns(2)
    with left:
        fact("Lexware-Organisation", html.escape(c.grantor_name or "–"))
        fact("Hinterlegt", f"{format_local(c.requested_at)} von {html.escape(c.requested_by or '–')}")
        fact("Gültig bis", format_local(c.refresh_expires_at))
    with right:
        fact("Letzte Verwendung", format_local(c.last_used_at))
        fact("Letzte Testabfrage", last_test(c))
        fact("Fingerprint", f"`{c.token_fingerprint}`" if c.token_fingerprint else "–")


def state_notes(card: TokenCard) -> None:
    if card.health == Health.invalid:
        c = connection_of(card)  # only a stored connection is invalid or revoked (evaluate_health)
        st.error(f"Ungültig seit {format_local(c.invalid_at)}: {c.invalid_reason or ''} Bitte neu anfordern.")
    elif card.health == Health.revoked:
        c = connection_of(card)
        st.info(f"Gelöscht am {format_local(c.deleted_at)} von {c.deleted_by}. "
                "Soll die automatische Übertragung weiter genutzt werden, muss ein neues Langzeittoken angefordert werden.")
    elif card.health == Health.expired:
        st.error("Abgelaufen. Bitte ein neues Langzeittoken anfordern.")
    elif card.health == Health.missing:
        st.info("Noch kein Langzeittoken hinterlegt.")


def datev_actions(card: TokenCard) -> None:
    cid = company_id(card)
    has_token = card.connection is not None and card.connection.has_token
    cols = st.columns(4)
    if is_admin:
        label = "Neu anfordern" if has_token else "Langzeittoken anfordern"
        if cols[0].button(label, key=f"request_{cid}", type="primary"):
            start(card, ConnectionKind.long_term)
        if has_token and cols[1].button("Verbindung testen", key=f"test_{cid}"):
            tested = run_test(engine, settings, keyring, connection_id=connection_id(card),
                              actor=actor_of(user))
            (flash if tested.ok else flash_error)(f"{card.company.name}: {tested.message}")
            st.rerun()
        if has_token:
            with cols[2].popover("Langzeittoken löschen"):
                st.write("Das Token wird bei DATEV widerrufen und hier gelöscht. Die automatische Übertragung "
                         "für dieses Unternehmen stoppt, bis ein neues Token angefordert wird.")
                if st.button("Endgültig löschen", key=f"delete_{cid}", type="primary"):
                    deleted = disconnect.delete_token(engine, settings, keyring, connection_id=connection_id(card),
                                                       actor=actor_of(user))
                    (flash if deleted.revoked else flash_error)(f"{card.company.name}: {deleted.message}")
                    st.rerun()
    if is_operator and cols[3].button("Einmalig anmelden", key=f"oneoff_{cid}",
                                      help="DATEV-Anmeldung ohne Langzeittoken, nur für eine manuelle Übertragung"):
        start(card, ConnectionKind.one_off)
    for kind, label in ((ConnectionKind.long_term, "Weiter zur DATEV-Anmeldung (Langzeittoken)"),
                        (ConnectionKind.one_off, "Weiter zur einmaligen DATEV-Anmeldung")):
        url = st.session_state.pop(f"auth_url_{cid}_{kind.value}", None)
        if url:
            st.info("Die Anmeldung ist vorbereitet (10 Minuten gültig).")
            go_to(url, label)


def lexware_actions(card: TokenCard) -> None:
    cid = company_id(card)
    has_token = card.connection is not None and card.connection.has_token
    if not is_admin:
        return
    with st.expander("API-Schlüssel hinterlegen" if not has_token else "Neuen API-Schlüssel hinterlegen"):
        with st.form(f"lexware_key_{cid}", clear_on_submit=True):
            key = st.text_input("API-Schlüssel", type="password", key=f"lexware_key_value_{cid}",
                                help="Wird nur einmal angezeigt (Lexware Office → Erweiterungen → Public API).")
            key_error = st.empty()
            valid_until = st.date_input("Gültig bis", value=lexware_key.default_key_expiry(settings, utcnow().date()),
                                        format="DD.MM.YYYY", key=f"lexware_key_until_{cid}")
            until_error = st.empty()
            submitted = st.form_submit_button("Speichern und testen", type="primary", key=f"lexware_key_submit_{cid}")
        if submitted:
            try:
                result = lexware_key.store_lexware_key(engine, settings, keyring, company_id=cid, api_key=key,
                                                       valid_until=valid_until, actor=actor_of(user))
                flash(f"{card.company.name}: API-Schlüssel gespeichert. {result.message}")
                st.rerun()
            except ValidationFailed as failure:
                for field, message in failure.field_errors.items():
                    (key_error if field == "api_key" else until_error).error(message)
            except UserFacingError as failure:
                st.error(failure.message)
    cols = st.columns(3)
    if has_token and cols[0].button("Verbindung testen", key=f"test_{cid}"):
        tested = run_test(engine, settings, keyring, connection_id=connection_id(card), actor=actor_of(user))
        (flash if tested.ok else flash_error)(f"{card.company.name}: {tested.message}")
        st.rerun()
    if has_token and cols[1].button("API-Schlüssel löschen", key=f"delete_{cid}"):
        deleted = disconnect.delete_token(engine, settings, keyring, connection_id=connection_id(card),
                                          actor=actor_of(user))
        flash(f"{card.company.name}: {deleted.message}")
        st.rerun()


cards = token_cards(engine, settings)
if not cards:
    st.info("Kein Unternehmen nutzt DATEV oder Lexware Office als Schnittstelle.")
for card in cards:
    with st.container(border=True):
        st.subheader(f"{card.company.name} · {PROVIDER_LABELS[card.provider]}")
        st.markdown(f"Status: {status_badge(card.health)}")
        if card.connection is not None and card.connection.has_token:
            (datev_facts if card.provider == Provider.datev else lexware_facts)(card)
        state_notes(card)
        try:
            (datev_actions if card.provider == Provider.datev else lexware_actions)(card)
        except UserFacingError as failure:
            st.error(failure.message)

st.markdown(f"Dauerhafte Zugriffe verwalten Sie auch bei DATEV unter "
            f"[Verbundene Anwendungen]({DATEV_CONNECTED_APPS_URL}).")
