"""What fixes a company's problem, as a button or link: the one place for the Übersicht's "Heute zu tun"
and the company page, so both offer the same action (core.overview.todo_item decides which)."""

from __future__ import annotations

import streamlit as st

from core.documents import lifecycle
from core.overview import Action, TodoItem
from core.platform.errors import UserFacingError
from core.platform.models import AppUser
from core.providers.outcome import Outcome
from core.transfers import readiness
from ui.feedback import flash, flash_error
from ui.guard import actor_of, may
from ui.links import TRANSFER_LOG_PAGE, company_link, page_link
from ui.services import services


def act(item: TodoItem, user: AppUser, *, on_company_page: bool = False) -> None:
    """The button or link that fixes `item`, for roles that may; everyone else opens the company (or, on
    its page, gets nothing: the reason is already shown there)."""
    _, engine, _ = services()
    if not may(user, item.min_role):
        if not on_company_page:
            company_link(item.company_id, "Öffnen", icon=":material/arrow_forward:")
        return
    try:
        if item.action == Action.resume:
            if st.button(item.action.value, key=f"act_resume_{item.company_id}", type="primary"):
                readiness.resume(engine, item.company_id, actor_of(user))
                flash(f"{item.name}: Übertragungen fortgesetzt; der nächste Lauf prüft erneut.")
                st.rerun()
        elif item.action == Action.retry_failed:
            if st.button(item.action.value, key=f"act_retry_{item.company_id}", type="primary"):
                moved = lifecycle.retry_failed_of_company(engine, company_id=item.company_id, actor=actor_of(user))
                flash(f"{item.name}: {moved} Beleg{'e' if moved != 1 else ''} wieder freigegeben; "
                      "die nächste Übertragung sendet sie.")
                st.rerun()
        elif item.action == Action.resolve:  # decided in the transfer log, filtered to this company's open cases
            page_link(TRANSFER_LOG_PAGE, item.action.value, icon=":material/fact_check:",
                      params={"company": str(item.company_id), "outcome": Outcome.unresolved.value})
        elif not on_company_page:  # token and key actions are on the company's token card
            company_link(item.company_id, item.action.value, icon=":material/arrow_forward:")
    except UserFacingError as exc:
        flash_error(f"{item.name}: {exc.message}")
        st.rerun()
