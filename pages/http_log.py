"""HTTP-Protokoll: every call to DATEV and Lexware Office (admins; DATEV requires >= 14 days)."""

import streamlit as st

from core.platform.timefmt import format_local
from core.providers import http
from ui.guard import require_page
from ui.services import services
from ui.text import frame

user = require_page(__file__)

settings, engine, _keyring = services()
st.title("HTTP-Protokoll")
st.caption(f"Alle Aufrufe bei DATEV und Lexware Office, {settings.http_log_retention_days} Tage aufbewahrt. "
           "Ohne Authorization-Header, Token oder Inhalte.")
limit = st.select_slider("Einträge", options=[50, 200, 1000], value=200, key="http_log_limit")
entries = http.entries_for(engine, limit=limit)
st.dataframe(
    frame([
        {"Zeit": format_local(e.at), "Anbieter": e.provider, "Zweck": e.purpose or "", "Methode": e.method,
         "Pfad": e.path, "Status": e.status, "Dauer (ms)": e.duration_ms, "Fehler": e.error or "",
         "X-Global-Transaction-ID": e.global_transaction_id or "", "V-Cap-Request-ID": e.request_id or "",
         "Unternehmen": e.company_id}
        for e in entries
    ]),
    hide_index=True, width="stretch",
)
