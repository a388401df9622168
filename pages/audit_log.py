"""Audit-Protokoll: the append-only trail of every change (admins only), with filters (period, company,
who, action) and German names for the actions."""

import json

import streamlit as st

from core.companies import list_companies
from core.logs import ACTION_LABELS, ENTITY_LABELS, AuditFilter, action_label, audit_events
from core.platform.timefmt import format_local, period_bounds
from ui.guard import require_page
from ui.services import services
from ui.text import cell, frame

user = require_page(__file__)

_settings, engine, _keyring = services()
st.title("Audit-Protokoll")
st.caption("Wer hat wann was geändert. Einträge können nicht geändert oder gelöscht werden.")

company_names = {c.id: c.name for c in list_companies(engine, include_archived=True) if c.id is not None}
filters = st.columns([2, 2, 2, 3])
period = filters[0].date_input("Zeitraum", value=[], format="DD.MM.YYYY", key="audit_period")
company = filters[1].selectbox("Unternehmen", [None, *sorted(company_names, key=lambda i: company_names[i])],
                               key="audit_company", placeholder="Alle", format_func=lambda i: "Alle" if i is None else company_names[i])
actor = filters[2].text_input("Wer", key="audit_actor", placeholder="E-Mail-Adresse oder Prozess")
actions = filters[3].multiselect("Aktion", sorted(ACTION_LABELS, key=action_label), key="audit_actions", select_all=False,
                                 placeholder="Alle", format_func=action_label)
limit = st.select_slider("Einträge", options=[50, 200, 1000], value=200, key="audit_limit")
since, until = period_bounds(period)  # a range: (), (start,) or (start, end)
events = audit_events(engine, AuditFilter(since=since, until=until, company_id=company, actor=actor,
                                          actions=tuple(actions)), limit=limit)


def as_text(values: dict | None) -> str:
    return "" if not values else json.dumps(values, ensure_ascii=False, default=str)


if not events:
    st.info("Keine Einträge für diese Auswahl.")
else:
    st.dataframe(
        frame([
            {"Zeit": format_local(e.at), "Wer": cell(e.actor), "Aktion": action_label(e.action),
             "Objekt": f"{ENTITY_LABELS.get(e.entity_type, e.entity_type)} {e.entity_id or ''}".strip(),
             "Hinweis": cell(e.detail or ""), "Vorher": cell(as_text(e.before)), "Nachher": cell(as_text(e.after)),
             "Code": e.action}
            for e in events
        ]),
        hide_index=True, width="stretch", key="audit_table",
    )
