"""Übertragungsprotokoll: the transfer history with filters and SQL paging, the detail of one
attempt with its HTTP log lines, CSV export; operators retry failed and resolve unresolved documents."""

from datetime import timedelta

import streamlit as st

from core.companies import list_companies
from core.documents import lifecycle
from core.documents.lifecycle import DECISIONS
from core.documents.queries import STATUS_LABELS
from core.platform.errors import UserFacingError, ValidationFailed
from core.platform.models import DocumentStatus, Provider, Role
from core.platform.timefmt import day_start_utc, format_local
from core.transfers import history
from core.transfers.history import OUTCOME_LABELS, TRIGGER_LABELS, HistoryFilter, provider_label
from ui.feedback import flash, show_flashes
from ui.guard import actor_of, may, require_page
from ui.services import services
from ui.text import cell, frame, plain

user = require_page(__file__)

settings, engine, keyring = services()
is_operator = may(user, Role.operator)
PAGE_SIZE = 50

st.title("Übertragungsprotokoll")
show_flashes()

company_names = {c.id: c.name for c in list_companies(engine, include_archived=True)}


# `?company=ID&outcome=unresolved` (from "Ungeklärte Belege prüfen" and the company page) presets the filters
# once; then the widgets own them and the parameters are dropped.
preset = st.query_params.to_dict()
if preset.get("company", "").isdigit() and int(preset["company"]) in company_names:
    st.session_state["log_company"] = int(preset["company"])
if preset.get("outcome") in OUTCOME_LABELS:
    st.session_state["log_outcomes"] = [preset["outcome"]]
if preset:
    st.query_params.clear()

cols = st.columns(5)
f_company = cols[0].selectbox("Unternehmen", [None, *sorted(company_names, key=lambda i: company_names[i])],
                              key="log_company", placeholder="Alle", format_func=lambda i: "Alle" if i is None else company_names[i])
f_outcomes = cols[1].multiselect("Ergebnis", list(OUTCOME_LABELS), key="log_outcomes", select_all=False, placeholder="Alle",
                                 format_func=lambda o: OUTCOME_LABELS[o])
f_provider = cols[2].selectbox("Schnittstelle", [None, *[p.value for p in Provider]], key="log_provider", placeholder="Alle",
                               format_func=lambda p: "Alle" if p is None else provider_label(p))
f_trigger = cols[3].selectbox("Auslöser", [None, *TRIGGER_LABELS], key="log_trigger", placeholder="Alle",
                              format_func=lambda t: "Alle" if t is None else TRIGGER_LABELS[t])
period = cols[4].date_input("Zeitraum", value=[], format="DD.MM.YYYY", key="log_period")
since = until = None
if len(period) >= 1:  # a range: (), (start,) or (start, end)
    since = day_start_utc(period[0])
    until = day_start_utc((period[1] if len(period) > 1 else period[0]) + timedelta(days=1))
log_filter = HistoryFilter(company_id=f_company, outcomes=tuple(f_outcomes), provider=f_provider, trigger=f_trigger,
                           since=since, until=until)

total, capped = history.count(engine, log_filter)
pages = max(1, -(-total // PAGE_SIZE))
if st.session_state.get("log_page", 1) > pages:
    st.session_state["log_page"] = pages
page_no = int(st.number_input("Seite", min_value=1, max_value=pages, value=1, step=1, key="log_page"))
result = history.history_page(engine, log_filter, page=page_no, page_size=PAGE_SIZE,
                                counted=(total, capped))
amount = f"mehr als {history.COUNT_CAP:,}".replace(",", ".") if capped else str(total)
st.caption(f"Seite {page_no} von {pages}{'+' if capped else ''} · {amount} {'Eintrag' if total == 1 and not capped else 'Einträge'}")

st.download_button("CSV exportieren (gefilterte Einträge)", lambda: history.csv_export(engine, log_filter),
                   file_name="uebertragungsprotokoll.csv", mime="text/csv", key="log_csv", on_click="ignore")

if not result.rows:
    st.info("Keine Übertragungsversuche für diese Auswahl.")
    st.stop()

st.dataframe(
    frame([{  # reasons first: the result and its message right after the document
        "Beleg": cell(r.file_name),
        "Ergebnis": OUTCOME_LABELS.get(r.outcome, r.outcome),
        "Meldung": cell(r.error_text or ""),
        "Beginn": format_local(r.started_at),
        "Unternehmen": cell(r.company_name),
        "Schnittstelle": provider_label(r.provider),
        "Auslöser": cell(f"{TRIGGER_LABELS.get(r.trigger, r.trigger)} ({r.triggered_by})"),
        "Versuch": r.attempt_no,
        "Hilfe": r.help_uri,
        "HTTP": r.http_status,
        "Nr.": r.id,
    } for r in result.rows]),
    hide_index=True, width="stretch", key="log_table", placeholder="–",
    column_config={"Meldung": st.column_config.TextColumn(width="medium"),"Nr.": st.column_config.NumberColumn(format="%d"),
                   "HTTP": st.column_config.NumberColumn(format="%d"),
                   "Hilfe": st.column_config.LinkColumn(display_text="DATEV-Hilfe")},
)

st.subheader("Details")
by_id = {r.id: r for r in result.rows}
selected = st.selectbox("Versuch auswählen", list(by_id), key="log_selected",
                        format_func=lambda i: f"Nr. {i} · {format_local(by_id[i].started_at)} · {by_id[i].file_name} · "
                                              f"{OUTCOME_LABELS.get(by_id[i].outcome, by_id[i].outcome)}")
try:
    detail = history.attempt_detail(engine, selected)
except UserFacingError as exc:
    st.error(plain(exc.message))
    st.stop()
row = detail.row
left, right = st.columns(2)
with left:
    st.markdown(f"**Beleg:** Nr. {row.document_id} · {plain(row.file_name)}  \n"
                f"**Unternehmen:** {plain(row.company_name)} ({provider_label(row.provider)})  \n"
                f"**Beleg-Status jetzt:** {STATUS_LABELS[DocumentStatus(row.document_status)]}  \n"
                f"**Ausgelöst:** {TRIGGER_LABELS.get(row.trigger, row.trigger)} von {plain(row.triggered_by)}, "
                f"Versuch {row.attempt_no}")
with right:
    st.markdown(f"**Beginn / Ende:** {format_local(row.started_at)} / {format_local(row.finished_at)}  \n"
                f"**Ergebnis:** {OUTCOME_LABELS.get(row.outcome, row.outcome)}"
                f"{f' (HTTP {row.http_status})' if row.http_status else ''}")
if row.error_text and row.outcome != "delivered":
    st.error(plain(row.error_text))
if row.help_uri and row.http_status and 400 <= row.http_status < 500:
    if row.help_uri.startswith("https://"):  # DATEV's own help link; anything else is shown, not linked
        st.markdown(f"DATEV-Hilfe zu diesem Fehler: [{plain(row.help_uri)}]({row.help_uri.replace(')', '%29')})")
    else:
        st.markdown(f"DATEV-Hilfe zu diesem Fehler: {plain(row.help_uri)}")
if not may(user, Role.admin):
    st.caption("Technische Details (Anfragen, Request-ID) sehen Administratoren.")
elif detail.http_lines:
    st.markdown(f"**Request-ID:** {plain(row.request_id or '–')} · **Global-Transaction-ID:** "
                f"{plain(row.global_transaction_id or '–')}")
    st.dataframe(frame([{
        "Zeit": format_local(e.at), "Methode": e.method, "Host": e.host, "Pfad": e.path, "Status": e.status,
        "Dauer (ms)": e.duration_ms, "Request-ID": e.request_id or "", "Fehler": e.error or "",
    } for e in detail.http_lines]), hide_index=True, width="stretch", key="log_http_lines",
        column_config={"Status": st.column_config.NumberColumn(format="%d")})
else:
    st.caption("Zu diesem Versuch gibt es keine HTTP-Protokollzeilen (mehr).")

if not is_operator:
    st.stop()

if row.document_status == DocumentStatus.failed.value:
    with st.form(f"log_retry_{row.document_id}", clear_on_submit=True):
        st.write("Der Beleg ist **fehlgeschlagen**. Erneut freigeben: die nächste Übertragung sendet ihn wieder.")
        reason = st.text_input("Grund (optional, steht im Audit-Protokoll)", key=f"log_retry_reason_{row.document_id}")
        if st.form_submit_button("Erneut übertragen", type="primary", key=f"log_retry_submit_{row.document_id}"):
            try:
                lifecycle.retry_failed(engine, document_id=row.document_id, actor=actor_of(user), reason=reason)
                flash(f"„{row.file_name}“ ist wieder freigegeben und wird bei der nächsten Übertragung gesendet.")
                st.rerun()
            except UserFacingError as exc:
                st.error(plain(exc.message))
elif row.document_status == DocumentStatus.unresolved.value:
    with st.form(f"log_resolve_{row.document_id}"):
        st.write("Der Beleg ist **ungeklärt**: ob er angekommen ist, ist unbekannt. Bitte in Lexware Office "
                 "prüfen und dann entscheiden.")
        decision = st.radio("Entscheidung", list(DECISIONS), key=f"log_resolve_decision_{row.document_id}",
                            format_func=lambda d: {"delivered": "Ist in Lexware vorhanden: als übertragen markieren",
                                                   "send_again": "Ist nicht angekommen: erneut senden"}[d])
        reason = st.text_area("Grund (Pflicht)", key=f"log_resolve_reason_{row.document_id}", max_chars=400)
        reason_error = st.empty()
        if st.form_submit_button("Entscheidung speichern", type="primary", key=f"log_resolve_submit_{row.document_id}"):
            try:
                lifecycle.resolve_unresolved(engine, document_id=row.document_id, actor=actor_of(user),
                                           decision=decision, reason=reason)
                flash(f"„{row.file_name}“: {DECISIONS[decision]}.")
                st.rerun()
            except ValidationFailed as failure:
                reason_error.error(" ".join(failure.field_errors.values()))
            except UserFacingError as exc:
                st.error(plain(exc.message))
