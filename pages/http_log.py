"""HTTP-Protokoll: every call to DATEV and Lexware Office (admins; DATEV requires >= 14 days), with filters
(period, company, interface, purpose, result) and German names for the purposes."""


import streamlit as st

from core.companies import list_companies
from core.logs import PURPOSE_LABELS, RESULTS, HttpFilter, http_entries, purpose_label
from core.platform.models import Provider
from core.platform.timefmt import format_local, period_bounds
from core.transfers.history import provider_label
from ui.guard import require_page
from ui.services import services
from ui.text import cell, frame

user = require_page(__file__)

settings, engine, _keyring = services()
st.title("HTTP-Protokoll")
st.caption(f"Alle Aufrufe bei DATEV und Lexware Office, {settings.http_log_retention_days} Tage aufbewahrt. "
           "Ohne Authorization-Header, Token oder Inhalte.")

company_names = {c.id: c.name for c in list_companies(engine, include_archived=True) if c.id is not None}
filters = st.columns(5)
period = filters[0].date_input("Zeitraum", value=[], format="DD.MM.YYYY", key="http_log_period")
company = filters[1].selectbox("Unternehmen", [None, *sorted(company_names, key=lambda i: company_names[i])],
                               key="http_log_company", placeholder="Alle", format_func=lambda i: "Alle" if i is None else company_names[i])
provider = filters[2].selectbox("Schnittstelle", [None, *[p.value for p in Provider]], key="http_log_provider", placeholder="Alle",
                                format_func=lambda p: "Alle" if p is None else provider_label(p))
purposes = filters[3].multiselect("Zweck", sorted(PURPOSE_LABELS, key=purpose_label), key="http_log_purposes", select_all=False,
                                  placeholder="Alle", format_func=purpose_label)
result = filters[4].selectbox("Ergebnis", [None, *RESULTS], key="http_log_result", placeholder="Alle",
                              format_func=lambda r: "Alle" if r is None else RESULTS[r])
limit = st.select_slider("Einträge", options=[50, 200, 1000], value=200, key="http_log_limit")
since, until = period_bounds(period)  # a range: (), (start,) or (start, end)
entries = http_entries(engine, HttpFilter(since=since, until=until, company_id=company, provider=provider,
                                          purposes=tuple(purposes), result=result), limit=limit)
if not entries:
    st.info("Keine Aufrufe für diese Auswahl.")
else:
    st.dataframe(
        frame([
            {"Zeit": format_local(e.at), "Anbieter": provider_label(e.provider), "Zweck": purpose_label(e.purpose),
             "Status": e.status, "Fehler": cell(e.error or ""),
             "Unternehmen": cell(company_names.get(e.company_id, "–") if e.company_id else "–"),
             "Methode": e.method, "Pfad": cell(e.path), "Dauer (ms)": e.duration_ms,
             "X-Global-Transaction-ID": cell(e.global_transaction_id or ""),
             "V-Cap-Request-ID": cell(e.request_id or ""), "Code": e.purpose or ""}
            for e in entries
        ]),
        hide_index=True, width="stretch", key="http_log_table", placeholder="–",
        column_config={"Status": st.column_config.NumberColumn(format="%d")},
    )
