"""Audit-Protokoll: the append-only trail of every change (admins only)."""

import json

import streamlit as st

from core.platform import audit
from core.platform.timefmt import format_local
from ui.guard import require_page
from ui.services import services
from ui.text import frame

user = require_page(__file__)

_settings, engine, _keyring = services()
st.title("Audit-Protokoll")
st.caption("Wer hat wann was geändert. Einträge können nicht geändert oder gelöscht werden.")
limit = st.select_slider("Einträge", options=[50, 200, 1000], value=200, key="audit_limit")

events = audit.recent_events(engine, limit=limit)


def as_text(values: dict | None) -> str:
    return "" if not values else json.dumps(values, ensure_ascii=False, default=str)


st.dataframe(
    frame([
        {"Zeit": format_local(e.at), "Wer": e.actor, "Aktion": e.action,
         "Objekt": f"{e.entity_type} {e.entity_id or ''}".strip(), "Vorher": as_text(e.before),
         "Nachher": as_text(e.after), "Hinweis": e.detail or ""}
        for e in events
    ]),
    hide_index=True, width="stretch",
)
