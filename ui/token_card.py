"""One company's token card (DATEV Langzeittoken or Lexware API key), as DATEV requires of apps: a
status light, the computed expiry, the DATEV user, the bound data set, the last test call, and the
actions the viewer's role allows. Shown on the Langzeittoken page (and by the company page).

Every fact comes from core (`TokenCard`: health and binding are decided there); this module only
words and draws them.
"""

from __future__ import annotations

import html

import streamlit as st
from sqlalchemy import Engine
from streamlit.delta_generator import DeltaGenerator

from core.connections import disconnect, lexware_key
from core.connections.access import retry_unclear_refresh
from core.connections.datev_login import start_login
from core.connections.health import Binding, Health, TokenCard
from core.connections.test_call import run_test
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.errors import UserFacingError, ValidationFailed
from core.platform.models import (
    PROVIDER_LABELS,
    AppUser,
    Connection,
    ConnectionKind,
    Provider,
    Role,
    shown_data_set,
    utcnow,
)
from core.platform.timefmt import format_local, local_day
from core.transfers.readiness import waiting_reason
from ui.feedback import flash, flash_error, flash_warning
from ui.guard import actor_of, may
from ui.request_link_panel import show_request_link_panel
from ui.text import plain

# The status light DATEV requires, as a coloured badge (renders without emoji fonts).
HEALTH_BADGES = {
    Health.active: ("green", ":material/check_circle:"), Health.expiring: ("orange", ":material/schedule:"),
    Health.unclear: ("orange", ":material/help:"),
    Health.expired: ("red", ":material/cancel:"), Health.invalid: ("red", ":material/error:"),
    Health.revoked: ("gray", ":material/block:"), Health.missing: ("gray", ":material/radio_button_unchecked:"),
}
TEST_ICONS = {True: ":green[:material/check_circle:]", False: ":red[:material/error:]"}
# What a missing, deleted or expired credential is called, and what a person does about it.
CREDENTIAL = {Provider.datev: ("Langzeittoken", "ein neues Langzeittoken anfordern"),
              Provider.lexware: ("API-Schlüssel", "einen neuen API-Schlüssel hinterlegen")}


def status_badge(health: Health) -> str:
    color, icon = HEALTH_BADGES[health]
    return f":{color}-badge[{icon} {health.value}]"


def fact(label: str, value: str) -> None:
    st.markdown(f"**{label}:** {value}")


def go_to(url: str, label: str) -> None:
    """A link that opens the provider's login in this tab (DATEV sends the browser back here)."""
    st.markdown(f'<a href="{html.escape(url)}" target="_self" data-testid="auth-link">{html.escape(label)}</a>',
                unsafe_allow_html=True)


def last_test(c: Connection) -> str:
    """The last test call: when, whether it worked, and what the provider said."""
    if c.last_test_at is None:
        return "–"
    return f"{format_local(c.last_test_at)}: {TEST_ICONS[bool(c.last_test_ok)]} {plain(c.last_test_message)}"


def valid_until(c: Connection) -> str:
    text = format_local(c.refresh_expires_at)
    return f"{text} (laut DATEV-Dokumentation)" if c.refresh_expiry_derived and c.refresh_expires_at else text


def data_set(card: TokenCard) -> str:
    """The bound data set as a fact: never the company's own number in place of a missing binding."""
    c = card.connection
    assert c is not None
    if card.binding == Binding.bound:
        return f"gebunden an {shown_data_set(c.bound_client)}"
    if card.binding == Binding.foreign:
        return f"an {shown_data_set(c.bound_client)} gebunden (nicht der Datenbestand des Unternehmens)"
    return "nicht an einen Datenbestand gebunden"


class TokenCardView:
    """The card with its actions for one viewer (the services and the user come from the page)."""

    def __init__(self, *, settings: Settings, engine: Engine, keyring: Keyring, user: AppUser) -> None:
        self.settings, self.engine, self.keyring, self.user = settings, engine, keyring, user
        self.is_admin, self.is_operator = may(user, Role.admin), may(user, Role.operator)

    def show(self, card: TokenCard) -> None:
        with st.container(border=True):
            st.subheader(f"{plain(card.company.name)} · {PROVIDER_LABELS[card.provider]}")
            status = f"Status: {status_badge(card.health)}"
            reason = waiting_reason(card.company, card.connection, self.settings, utcnow())
            if reason is not None and reason.startswith("pausiert"):  # as the Übersicht says it ("pausiert")
                status += f" · Übertragung {plain(reason)}"
            st.markdown(status)
            if card.connection is not None and card.connection.has_token:
                (self.datev_facts if card.provider == Provider.datev else self.lexware_facts)(card, card.connection)
            self.state_notes(card)
            try:
                (self.datev_actions if card.provider == Provider.datev else self.lexware_actions)(card)
            except UserFacingError as failure:
                st.error(plain(failure.message))

    def datev_facts(self, card: TokenCard, c: Connection) -> None:
        left, right = st.columns(2)
        with left:
            fact("DATEV-Benutzer", plain(c.grantor_name))
            fact("Angefordert", f"{format_local(c.requested_at)} von {plain(c.requested_by)}"
                 + (f", über {plain(c.requested_via)}" if c.requested_via else ""))
            fact("Gültig bis", valid_until(c))
            if c.kind == ConnectionKind.long_term.value:
                fact("Datenbestand (Berater-Nr.–Mandanten-Nr.)", data_set(card))
        with right:
            fact("Letzte Erneuerung", format_local(c.last_refresh_at))
            fact("Letzte Verwendung", format_local(c.last_used_at))
            fact("Letzte Testabfrage", last_test(c))
            if self.is_admin:  # technical: admins only (never the token itself)
                fact("Fingerprint", f"`{c.token_fingerprint}`" if c.token_fingerprint else "–")
        if not c.offline_granted:
            st.warning("Kein Langzeittoken: DATEV hat keinen dauerhaften Zugriff erteilt. Bitte neu anfordern.")
        elif card.binding == Binding.unbound:
            st.warning("Nicht an einen Datenbestand gebunden: DATEV hat den Zugriff ohne Bindung an den Datenbestand "
                       f"{shown_data_set(card.company.datev_client_id)} erteilt. Belege gehen trotzdem nur "
                       "an den Datenbestand dieses Unternehmens; bitte bei Gelegenheit neu anfordern.")
        elif card.binding == Binding.foreign:
            st.error(f"Das Token ist an {shown_data_set(c.bound_client)} gebunden, das Unternehmen hat "
                     f"{shown_data_set(card.company.datev_client_id)}. Es wird nicht verwendet; bitte neu "
                     "anfordern.")

    def lexware_facts(self, card: TokenCard, c: Connection) -> None:
        left, right = st.columns(2)
        with left:
            fact("Lexware-Organisation", plain(c.grantor_name))
            fact("Hinterlegt", f"{format_local(c.requested_at)} von {plain(c.requested_by)}")
            fact("Gültig bis", format_local(c.refresh_expires_at))
        with right:
            fact("Letzte Verwendung", format_local(c.last_used_at))
            fact("Letzte Testabfrage", last_test(c))
            if self.is_admin:  # technical: admins only (never the token itself)
                fact("Fingerprint", f"`{c.token_fingerprint}`" if c.token_fingerprint else "–")

    def state_notes(self, card: TokenCard) -> None:
        c = card.connection
        name, renew = CREDENTIAL[card.provider]
        if card.health == Health.invalid and c is not None:
            st.error(f"Ungültig seit {format_local(c.invalid_at)}: {plain(c.invalid_reason) if c.invalid_reason else ''} Bitte {renew}.")
        elif card.health == Health.unclear and c is not None:
            st.warning(f"Erneuerung unklar seit {format_local(c.refresh_unclear_since)}: die Antwort von DATEV auf "
                       "die letzte Erneuerung ging verloren. Token Desk sendet das alte Token nicht erneut, bis "
                       "geklärt ist, ob DATEV es schon ersetzt hat; das geschieht bei der nächsten Verwendung.")
        elif card.health == Health.revoked and c is not None:
            st.info(f"Gelöscht am {format_local(c.deleted_at)} von {plain(c.deleted_by)}. Soll die automatische Übertragung "
                    f"weiter genutzt werden, bitte {renew}.")
            if c.left_at_provider:  # DATEV did not confirm the revocation, or a Lexware key (no revocation by API)
                st.warning(plain(c.left_at_provider))
        elif card.health == Health.expired:
            st.error(f"Abgelaufen. Bitte {renew}.")
        elif card.health == Health.missing:
            st.info(f"Noch kein {name} hinterlegt.")

    def start(self, card: TokenCard, kind: ConnectionKind) -> None:
        assert card.company.id is not None
        try:
            url = start_login(self.engine, self.settings, self.keyring, company_id=card.company.id, user=self.user,
                              kind=kind)
        except UserFacingError as exc:
            st.error(plain(exc.message))
            return
        st.session_state[f"auth_url_{card.company.id}_{kind.value}"] = url

    def test(self, card: TokenCard, connection: Connection) -> None:
        assert connection.id is not None
        result = run_test(self.engine, self.settings, self.keyring, connection_id=connection.id,
                          actor=actor_of(self.user))
        (flash if result.ok else flash_error)(f"{card.company.name}: {result.message}")
        st.rerun()

    def confirm_delete(self, column: DeltaGenerator, label: str, card: TokenCard, connection: Connection,
                       consequence: str) -> None:
        """Delete the token or key after a confirmation (deleting cannot be undone): revoke, then erase."""
        with column.popover(label):
            st.write(consequence)
            if st.button("Endgültig löschen", key=f"delete_{card.company.id}", type="primary"):
                assert connection.id is not None
                result = disconnect.delete_token(self.engine, self.settings, self.keyring,
                                                 connection_id=connection.id, actor=actor_of(self.user))
                (flash if result.revoked else flash_warning)(f"{card.company.name}: {result.message}")
                st.rerun()

    def datev_actions(self, card: TokenCard) -> None:
        cid = card.company.id
        connection = card.connection if card.connection is not None and card.connection.has_token else None
        cols = st.columns(4)
        if self.is_admin:
            label = "Neu anfordern" if connection is not None else "Langzeittoken anfordern"
            healthy = connection is not None and card.health == Health.active and card.binding != Binding.unbound
            if cols[0].button(label, key=f"request_{cid}", type="secondary" if healthy else "primary"):
                self.start(card, ConnectionKind.long_term)
            if connection is not None and cols[1].button("Verbindung testen", key=f"test_{cid}"):
                self.test(card, connection)
            if connection is not None:
                self.confirm_delete(cols[2], "Langzeittoken löschen", card, connection,
                                    "Das Token wird bei DATEV widerrufen und hier gelöscht. Die automatische "
                                    "Übertragung für dieses Unternehmen stoppt, bis ein neues Token angefordert wird.")
            if (connection is not None and card.health == Health.unclear
                    and cols[3].button("Erneuerung erneut versuchen", key=f"unclear_{cid}",
                                       help="Das alte Token bei der nächsten Verwendung erneut senden. Hatte DATEV es "
                                            "schon ersetzt, wird es abgelehnt und das Token muss neu angefordert "
                                            "werden.")):
                assert connection.id is not None
                retry_unclear_refresh(self.engine, connection_id=connection.id, actor=actor_of(self.user))
                flash(f"{card.company.name}: Die Erneuerung wird bei der nächsten Verwendung erneut versucht.")
                st.rerun()
        if self.is_operator and cols[3].button("Einmalig anmelden", key=f"oneoff_{cid}",
                                               help="DATEV-Anmeldung ohne Langzeittoken, nur für eine manuelle "
                                                    "Übertragung"):
            self.start(card, ConnectionKind.one_off)
        if self.is_admin and cid is not None:
            show_request_link_panel(engine=self.engine, settings=self.settings, keyring=self.keyring, user=self.user,
                                    company_id=cid, company_name=card.company.name)
        for kind, label in ((ConnectionKind.long_term, "Weiter zur DATEV-Anmeldung (Langzeittoken)"),
                            (ConnectionKind.one_off, "Weiter zur einmaligen DATEV-Anmeldung")):
            url = st.session_state.pop(f"auth_url_{cid}_{kind.value}", None)
            if url:
                st.info("Die Anmeldung ist vorbereitet (10 Minuten gültig).")
                go_to(url, label)

    def lexware_actions(self, card: TokenCard) -> None:
        cid = card.company.id
        assert cid is not None
        connection = card.connection if card.connection is not None and card.connection.has_token else None
        if not self.is_admin:
            return
        with st.expander("API-Schlüssel hinterlegen" if connection is None else "API-Schlüssel ersetzen"):
            with st.form(f"lexware_key_{cid}", clear_on_submit=True):
                key = st.text_input("API-Schlüssel", type="password", key=f"lexware_key_value_{cid}",
                                    help="Wird nur einmal angezeigt (Lexware Office → Erweiterungen → Public API).")
                key_error = st.empty()
                until = st.date_input("Gültig bis", key=f"lexware_key_until_{cid}", format="DD.MM.YYYY",
                                      value=lexware_key.default_key_expiry(self.settings, local_day(utcnow())))
                until_error = st.empty()
                submitted = st.form_submit_button("Speichern und testen", type="primary",
                                                  key=f"lexware_key_submit_{cid}")
            if submitted:
                try:
                    result = lexware_key.store_lexware_key(self.engine, self.settings, self.keyring, company_id=cid,
                                                           api_key=key, valid_until=until, actor=actor_of(self.user))
                    flash(f"{card.company.name}: API-Schlüssel gespeichert. {result.message}")
                    st.rerun()
                except ValidationFailed as failure:
                    for field, message in failure.field_errors.items():
                        (key_error if field == "api_key" else until_error).error(message)
                except UserFacingError as failure:
                    st.error(plain(failure.message))
        cols = st.columns(3)
        if connection is not None and cols[0].button("Verbindung testen", key=f"test_{cid}"):
            self.test(card, connection)
        if connection is not None:
            self.confirm_delete(cols[1], "API-Schlüssel löschen", card, connection,
                                "Der API-Schlüssel wird hier gelöscht. Die automatische Übertragung an Lexware Office "
                                "stoppt für dieses Unternehmen, bis ein neuer Schlüssel hinterlegt wird.")
