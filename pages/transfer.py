"""Übertragen (operators): pick approved documents, see the dry run, then transfer them with the
stored Langzeittoken or after a one-off DATEV login, with a progress bar and a live row per document.

Threading: core.transfers.engine.run_pass runs in a helper thread and calls `on_result` from its worker
threads; `on_result` only puts the result on a queue. This script's own thread takes results off
the queue and renders them (Streamlit elements are never touched from another thread).
"""





import html
import queue
import threading

import streamlit as st

from core.companies import list_companies
from core.connections import store as connection_store
from core.connections.datev_login import start_login
from core.connections.health import USABLE, evaluate_health
from core.documents import queries
from core.documents.queries import DocumentFilter
from core.platform.errors import UserFacingError
from core.platform.models import Company, ConnectionKind, DocumentStatus, Provider, Role, utcnow
from core.transfers.engine import DocumentResult, PassOptions, PassSummary, run_pass
from core.transfers.history import OUTCOME_LABELS
from core.transfers.plan import PlannedUpload, plan
from ui.feedback import show_flashes
from ui.guard import actor_of, may, require_page
from ui.navigation import PAGE_TABLE
from ui.preview import show_preview
from ui.rows import id_of
from ui.services import services
from ui.sign_in_return import target_of
from ui.text import cell, frame, plain

user = require_page(__file__)

settings, engine, keyring = services()
MAX_LISTED = 500
MODE_LONG_TERM, MODE_ONE_OFF = "long_term", "one_off"
ONE_OFF_SLOT = connection_store.one_off_slot(id_of(user))
RESULTS_KEY = "transfer_last_results"
TRANSFER_PAGE = next(spec for spec in PAGE_TABLE if spec.file == "pages/transfer.py")

st.title("Übertragen")
st.caption("Nur freigegebene Belege werden übertragen. Prüfen Sie vorher in der Vorschau, was wohin gesendet wird.")
show_flashes()

companies = {c.id: c for c in list_companies(engine) if c.provider is not None}
if "documents" in st.query_params:  # back from a one-off DATEV login (pages/datev_callback.py): the selection
    returned_company = st.query_params.get("company", "")
    st.session_state["transfer_company"] = (int(returned_company) if returned_company.isdigit()
                                            and int(returned_company) in companies else None)
    st.session_state["transfer_chosen"] = [int(i) for i in st.query_params["documents"].split(",") if i.isdigit()]
    st.session_state["transfer_mode"] = MODE_ONE_OFF
    st.query_params.clear()

filter_company = st.selectbox("Unternehmen", [None, *companies], key="transfer_company", placeholder="Alle Unternehmen",
                              format_func=lambda i: "Alle Unternehmen" if i is None else companies[i].name)
approved, total = queries.list_documents(
    engine, DocumentFilter(company_id=filter_company, statuses=(DocumentStatus.approved.value,)), limit=MAX_LISTED)
approved = [d for d in approved if d.company_id in companies]
# Documents a pass holds right now (a manual transfer that is still running, e.g. after this page was reloaded,
# or the scheduler): not offered again, and said, so "Keine freigegebenen Belege" does not read as "all done".
in_flight = queries.count_documents(engine, DocumentFilter(company_id=filter_company,
                                                           statuses=(DocumentStatus.transferring.value,)))
if in_flight:
    st.info(("1 Beleg ist" if in_flight == 1 else f"{in_flight} Belege sind") + " gerade in Übertragung; das Ergebnis "
            "steht danach im Übertragungsprotokoll.")
if total > MAX_LISTED:
    st.caption(f"Es werden die neuesten {MAX_LISTED} von {total} freigegebenen Belegen angeboten.")


def show_last_results() -> None:
    last = st.session_state.get(RESULTS_KEY)
    if last:
        st.subheader("Ergebnis der letzten Übertragung")
        result_table(last)


def result_table(rows: list[dict]) -> None:
    st.dataframe(frame(rows), hide_index=True, width="stretch", placeholder="–",  # no help link: a dash, not "None"
                 column_config={"DATEV-Hilfe": st.column_config.LinkColumn(display_text="Hilfe öffnen")})


if not approved:
    st.info("Keine freigegebenen Belege zum Übertragen.")
    show_last_results()
    st.stop()

by_id = {id_of(d): d for d in approved}
st.session_state["transfer_chosen"] = [i for i in st.session_state.get("transfer_chosen", []) if i in by_id]
chosen = st.multiselect("Belege auswählen", list(by_id), key="transfer_chosen", select_all=False, placeholder="Belege wählen",
                        format_func=lambda i: f"Nr. {i} · {by_id[i].file_name} ({companies[by_id[i].company_id].name})")
st.button("Alle auswählen", key="transfer_choose_all",
          on_click=lambda: st.session_state.update(transfer_chosen=list(by_id)))
mode = st.radio("Anmeldung", [MODE_LONG_TERM, MODE_ONE_OFF], key="transfer_mode", horizontal=True,
                format_func=lambda m: "Mit Langzeittoken" if m == MODE_LONG_TERM
                else "Mit einmaliger DATEV-Anmeldung (ohne Langzeittoken)")
slot = connection_store.LONG_TERM_SLOT if mode == MODE_LONG_TERM else ONE_OFF_SLOT

if not chosen:
    st.info("Bitte wählen Sie die Belege aus, die übertragen werden sollen.")
    show_last_results()
    st.stop()

planned: list[PlannedUpload] = plan(engine, settings, chosen, slot)
st.subheader("Probelauf: das wird gesendet")
sendable = [p for p in planned if p.will_send]
waiting_reasons = sorted({p.waits for p in planned if p.waits})
st.caption(f"{len(sendable)} von {len(planned)} ausgewählten Belegen werden gesendet."
           + (f" Warum nicht: {'; '.join(plain(r) for r in waiting_reasons)}." if waiting_reasons else ""))
# Reasons first (visible at 1280 px); the technical request (method, path) only for administrators.
st.dataframe(
    frame([{
        "Beleg": cell(p.file_name), "Hinweis": cell("wird gesendet" if p.will_send else f"wartet: {p.waits}"),
        "Unternehmen": cell(p.company_name), "Ziel": cell(p.target), "Belegtyp": cell(p.document_type),
        "Notiz": cell(p.note), "Größe (Byte)": p.size, "Nr.": p.document_id,
    } for p in planned]),
    hide_index=True, width="stretch", key="transfer_plan",
    column_config={"Nr.": st.column_config.NumberColumn(format="%d"),
                   "Hinweis": st.column_config.TextColumn(width="medium"),
                   "Größe (Byte)": st.column_config.NumberColumn(format="%d")},
)
if may(user, Role.admin):
    with st.expander("Technische Details der Anfragen"):
        st.dataframe(frame([{
            "Nr.": p.document_id, "Schnittstelle": p.provider, "Methode": p.method, "Pfad": cell(p.path),
            "Dateiname beim Empfänger": cell(p.file_name), "Medientyp": p.media_type,
        } for p in planned]), hide_index=True, width="stretch", key="transfer_plan_technical",
            column_config={"Nr.": st.column_config.NumberColumn(format="%d")})
with st.expander("Vorschau eines Belegs"):
    preview_id = st.selectbox("Beleg", chosen, key="transfer_preview",
                              format_func=lambda i: f"Nr. {i} · {by_id[i].file_name}")
    if preview_id is not None:
        show_preview(engine, by_id[preview_id], key=f"transfer_preview_{preview_id}")


def offer_one_off_login(company: Company) -> None:
    key = f"transfer_oneoff_url_{company.id}"
    if st.button(f"Einmalig bei DATEV anmelden: {plain(company.name)}", key=f"transfer_oneoff_{company.id}"):
        try:
            back = {"documents": ",".join(map(str, chosen))}  # DATEV's redirect returns here with them
            if filter_company is not None:
                back["company"] = str(filter_company)
            st.session_state[key] = start_login(engine, settings, keyring, company_id=id_of(company), user=user,
                                                kind=ConnectionKind.one_off,
                                                return_to=target_of(TRANSFER_PAGE, back))
        except UserFacingError as exc:
            st.error(plain(exc.message))
    url = st.session_state.pop(key, None)
    if url:
        st.info("Die Anmeldung ist vorbereitet (10 Minuten gültig). Danach kommen Sie hierher zurück.")
        st.markdown(f'<a href="{html.escape(url)}" target="_self" data-testid="auth-link">'
                    f'Weiter zur einmaligen DATEV-Anmeldung ({plain(html.escape(company.name))})</a>', unsafe_allow_html=True)


if mode == MODE_ONE_OFF:
    now = utcnow()
    for company_id in sorted({p.company_id for p in planned}):
        company = companies[company_id]
        if company.provider != Provider.datev:
            st.caption(f"{plain(company.name)}: Lexware Office kennt keine einmalige Anmeldung; "
                       "bitte mit dem hinterlegten API-Schlüssel übertragen.")
            continue
        health = evaluate_health(connection_store.find(engine, company_id, Provider.datev, ONE_OFF_SLOT), now,
                                 settings.token_expiry_warning_days)
        if health in USABLE:
            st.success(f"{plain(company.name)}: einmalige DATEV-Anmeldung liegt vor.")
        else:
            offer_one_off_login(company)



def transfer(ids: list[int]) -> None:
    """Run the pass in a helper thread; render progress and results here, in the script thread."""
    results: queue.Queue[DocumentResult | None] = queue.Queue()
    outcome: dict[str, PassSummary | str] = {}

    def work() -> None:
        try:
            outcome["summary"] = run_pass(engine, settings, keyring, PassOptions(
                trigger="manual", actor=actor_of(user), document_ids=ids, connection_slot=slot,
                on_result=results.put))
        except Exception:  # never a traceback in the UI; the log has it
            import logging

            logging.getLogger(__name__).exception("manual transfer failed")
            outcome["error"] = "Die Übertragung wurde wegen eines internen Fehlers abgebrochen."
        finally:
            results.put(None)  # end marker

    worker = threading.Thread(target=work, name="manual-transfer", daemon=True)
    progress = st.progress(0.0, text=f"0 von {len(ids)} Belegen übertragen …")
    live = st.empty()
    rows: list[dict] = []
    worker.start()
    while (item := results.get()) is not None:
        rows.append({  # reasons first: what happened and why, right after the document
            "Datei": cell(item.file_name), "Ergebnis": OUTCOME_LABELS.get(item.outcome, item.outcome),
            "Meldung": cell(item.message), "DATEV-Hilfe": item.help_uri or None, "Nr.": item.document_id,
        })
        progress.progress(min(1.0, len(rows) / len(ids)), text=f"{len(rows)} von {len(ids)} Belegen bearbeitet …")
        with live.container():
            result_table(rows)
    worker.join()
    progress.progress(1.0, text=f"Fertig: {len(rows)} von {len(ids)} Belegen bearbeitet.")
    st.session_state[RESULTS_KEY] = rows
    if "error" in outcome:
        st.error(plain(outcome["error"]))
        return
    summary = outcome["summary"]
    assert isinstance(summary, PassSummary)  # no "error": work() stored the summary
    counts = f"{summary.delivered} übertragen, {summary.failed} fehlgeschlagen, {summary.unresolved} ungeklärt"
    if summary.retried:
        counts += f", {summary.retried} werden automatisch wiederholt"
    if summary.waiting_documents:
        counts += f", {summary.waiting_documents} warten (siehe Meldung)"
    clean = not (summary.failed or summary.unresolved or summary.retried or summary.waiting_documents)
    (st.success if clean else st.warning)(counts + ".")
    for company_id, reason in summary.waiting.items():
        name = companies[company_id].name if company_id in companies else f"Unternehmen {company_id}"
        st.warning(f"{plain(name)}: nicht übertragen – {plain(reason)}")


label = "Übertragen" if mode == MODE_LONG_TERM else "Mit einmaliger DATEV-Anmeldung übertragen"
if st.button(label, type="primary", key="transfer_run", disabled=not sendable):
    st.session_state.pop(RESULTS_KEY, None)
    transfer([p.document_id for p in sendable])
else:
    show_last_results()
