"""The admin's Anforderungslink panel on a DATEV token card: create a link (optionally e-mailed), copy it
once, see the company's links with their state, withdraw an open one (core.connections.request_links).

The link's URL exists in clear only in the answer to its creation: it is shown here once, in this
browser session, until the admin closes it ("Link ausgeblendet"); the database holds only its hash.
"""

from __future__ import annotations

from datetime import date

import streamlit as st
from sqlalchemy import Engine

from core.connections.request_links import (
    STATE_OPEN,
    CreatedLink,
    create_link,
    expiring_in_month,
    links_for_companies,
    list_links,
    withdraw_link,
)
from core.platform.config import Settings
from core.platform.crypto import Keyring
from core.platform.errors import UserFacingError, ValidationFailed
from core.platform.models import AppUser
from core.platform.timefmt import format_local
from core.statistics import month_label
from ui.feedback import flash, flash_error
from ui.text import frame, plain

SHOWN_KEY = "request_link_created_{company_id}"


def show_request_link_panel(*, engine: Engine, settings: Settings, keyring: Keyring, user: AppUser,
                            company_id: int, company_name: str) -> None:
    links = list_links(engine, company_id=company_id, limit=20)
    open_links = [link for link in links if link.state == STATE_OPEN]
    title = "Anforderungslink" + (f" ({len(open_links)} offen)" if open_links else "")
    created: CreatedLink | None = st.session_state.get(SHOWN_KEY.format(company_id=company_id))
    with st.expander(title, expanded=created is not None):
        st.caption("Ein Link, mit dem eine Person ohne Token-Desk-Konto (z. B. die Steuerberatung) das Langzeittoken "
                   "für dieses Unternehmen selbst bei DATEV anfordert. Er gilt einmal und nur für dieses Unternehmen.")
        if created is not None:
            show_created(created, company_id)
        else:
            create_form(engine, settings, keyring, user, company_id, company_name)
        if links:
            st.markdown("**Links dieses Unternehmens**")
        for link in links:
            left, right = st.columns([4, 1])
            result = f" – {plain(link.result)}" if link.result and link.state != STATE_OPEN else ""
            left.markdown(f"{plain(link.summary)}{result}  \n"
                          f"erstellt {format_local(link.created_at)} von {plain(link.created_by)}"
                          + (f", angemeldet als {plain(link.grantor_name)}" if link.grantor_name else ""))
            if link.state == STATE_OPEN and right.button("Zurückziehen", key=f"withdraw_link_{link.id}"):
                try:
                    withdrawn = withdraw_link(engine, link_id=link.id, actor=user)
                except UserFacingError as exc:
                    st.error(plain(exc.message))
                    return
                (flash if withdrawn else flash_error)(
                    f"{company_name}: Anforderungslink zurückgezogen." if withdrawn
                    else f"{company_name}: Der Link war nicht mehr offen.")
                st.rerun()


def show_created(created: CreatedLink, company_id: int) -> None:
    st.success(f"Anforderungslink erstellt, gültig bis {format_local(created.expires_at)}. Er wird nur jetzt "
               "angezeigt: bitte kopieren und an die Person schicken, die sich bei DATEV anmelden kann.")
    if created.mailed is True:
        st.info("Die E-Mail mit dem Link ist verschickt.")
    elif created.mailed is False:
        st.warning("Die E-Mail ist nicht verschickt; den Grund zeigt die Seite „Alarme“. Fehlt nur der Mailserver "
                   "gerade, versucht Token Desk es weiter; ist keiner eingerichtet, bitte den Link selbst weitergeben.")
    st.code(created.url, language=None)
    if st.button("Link ausblenden", key=f"hide_link_{company_id}"):
        st.session_state.pop(SHOWN_KEY.format(company_id=company_id), None)
        st.rerun()


def create_form(engine: Engine, settings: Settings, keyring: Keyring, user: AppUser, company_id: int,
                company_name: str) -> None:
    with st.form(f"request_link_{company_id}", clear_on_submit=False):
        recipient = st.text_input("E-Mail der Person (optional)", key=f"request_link_to_{company_id}",
                                  help="Leer lassen, um den Link selbst weiterzugeben.")
        recipient_error = st.empty()
        days = st.number_input("Gültig (Tage)", min_value=1, max_value=settings.request_link_max_days,
                               value=settings.request_link_default_days, step=1, key=f"request_link_days_{company_id}")
        days_error = st.empty()
        submitted = st.form_submit_button("Anforderungslink erstellen", type="primary")
    if not submitted:
        return
    try:
        created = create_link(engine, settings, keyring, company_id=company_id, actor=user, valid_days=int(days),
                              recipient=recipient)
    except ValidationFailed as failure:
        for field, message in failure.field_errors.items():
            (recipient_error if field == "recipient" else days_error).error(message)
        return
    except UserFacingError as exc:
        st.error(plain(exc.message))
        return
    st.session_state[SHOWN_KEY.format(company_id=company_id)] = created
    flash(f"{company_name}: Anforderungslink erstellt.")
    st.rerun()


BULK_KEY = "request_links_bulk_created"


def show_bulk_links(*, engine: Engine, settings: Settings, keyring: Keyring, user: AppUser,
                    months: list[date]) -> None:
    """The renewal plan's step for admins: one Anforderungslink per DATEV company whose token expires in
    the chosen month, optionally all e-mailed to one address (e.g. the Steuerberater of these Mandanten)."""
    if not months:
        return
    with st.expander("Anforderungslinks für einen Monat erstellen"):
        shown: list[tuple[str, CreatedLink]] | None = st.session_state.get(BULK_KEY)
        if shown:
            st.success(f"{len(shown)} Anforderungslinks erstellt. Sie werden nur jetzt angezeigt: bitte kopieren.")
            st.dataframe(frame([{"Unternehmen": name, "Link": created.url,
                                 "Gültig bis": format_local(created.expires_at),
                                 "E-Mail": {None: "–", True: "verschickt", False: "wird wiederholt"}[created.mailed]}
                                for name, created in shown]), hide_index=True, width="stretch")
            if st.button("Links ausblenden", key="bulk_links_hide"):
                st.session_state.pop(BULK_KEY, None)
                st.rerun()
            return
        month = st.selectbox("Monat, in dem die Langzeittoken ablaufen", months, key="bulk_links_month",
                             format_func=month_label)
        expiring = expiring_in_month(engine, month)
        if not expiring:
            st.caption("In diesem Monat läuft kein DATEV-Langzeittoken ab.")
            return
        st.markdown("\n".join(f"- {plain(c.name)}: läuft ab {format_local(c.expires_at)}"
                              + (f" ({plain(c.open_link)})" if c.open_link else "") for c in expiring))
        with st.form("bulk_links"):
            recipient = st.text_input("E-Mail für alle Links (optional)", key="bulk_links_to",
                                      help="Leer lassen, um die Links selbst weiterzugeben.")
            submitted = st.form_submit_button(f"{len(expiring)} Anforderungslinks erstellen", type="primary")
        if not submitted:
            return
        try:
            created = links_for_companies(engine, settings, keyring, company_ids=[c.company_id for c in expiring],
                                          actor=user, recipients={c.company_id: recipient for c in expiring})
        except ValidationFailed as failure:
            for message in failure.field_errors.values():
                st.error(plain(message))
            return
        except UserFacingError as exc:
            st.error(plain(exc.message))
            return
        st.session_state[BULK_KEY] = [(c.name, link) for c, link in zip(expiring, created, strict=True)]
        st.rerun()
