"""Belege: everyone reads the list; operators upload, approve (singly or in bulk), delete before
approval, and refresh a company's DATEV document types (Belegtypen)."""





from datetime import timedelta

import streamlit as st

from core.companies import list_companies
from core.documents import intake, lifecycle, queries
from core.documents.queries import STATUS_LABELS, DocumentFilter
from core.documents.validation import describe_limits, size_warning
from core.overview import document_hint
from core.platform.errors import UserFacingError
from core.platform.models import Company, DocumentStatus, Provider, Role, utcnow
from core.platform.timefmt import day_start_utc, format_local
from core.transfers import document_types, readiness
from ui.feedback import flash, flash_error, show_flashes
from ui.guard import actor_of, may, require_page
from ui.preview import show_preview
from ui.rows import id_of
from ui.services import services
from ui.text import cell, frame, plain

user = require_page(__file__)

settings, engine, keyring = services()
is_operator = may(user, Role.operator)
PAGE_SIZE = 50

st.title("Belege")
show_flashes()

all_companies: list[Company] = list_companies(engine, include_archived=True)
active = [c for c in all_companies if c.archived_at is None and c.provider is not None]
company_names = {c.id: c.name for c in all_companies}
manual_only = {c.id for c in all_companies if not c.auto_transfer}


def size_text(size: int) -> str:
    if size < 1024:
        return f"{size} Byte"
    return f"{size / 1024:.0f} kB" if size < 1024 * 1024 else f"{size / (1024 * 1024):.1f} MB".replace(".", ",")


def refresh_document_types(company: Company) -> None:
    """Fetch the client's document types from DATEV with the stored long-term token and cache them."""
    try:
        count = document_types.refresh_document_types(engine, settings, keyring, id_of(company))
    except UserFacingError as exc:
        flash_error(exc.message)
        return
    flash(f"{company.name}: {count} Belegtypen von DATEV geladen.")


def upload_section() -> None:
    st.subheader("Belege hochladen")
    if not active:
        st.info("Kein aktives Unternehmen mit Schnittstelle vorhanden.")
        return
    by_id = {id_of(c): c for c in active}
    company_id = st.selectbox("Unternehmen", list(by_id), format_func=lambda i: by_id[i].name,
                              key="documents_upload_company")
    assert company_id is not None  # no placeholder: a select box over a non-empty list always has a choice
    company = by_id[company_id]
    provider = company.provider
    assert provider is not None  # `active` holds companies with an interface only
    st.caption(describe_limits(provider))
    known = intake.known_document_types(engine, company_id)  # the chosen company's only (one query, not one per company)
    if provider == Provider.datev:
        left, right = st.columns([3, 1])
        with right:
            if st.button("Belegtypen aktualisieren", key="documents_refresh_types",
                         help="Lädt die Belegtypen dieses Mandanten bei DATEV (mit dem Langzeittoken)."):
                refresh_document_types(company)
                st.rerun()
        with left:
            if not known:
                st.caption("Noch keine Belegtypen von DATEV geladen.")
    default_label = f"Standard des Unternehmens ({company.default_document_type})" \
        if company.default_document_type else "ohne Belegtyp"
    with st.form(f"documents_upload_{company_id}", clear_on_submit=True):
        # No `type=`: Streamlit would drop a file of another type with an English tooltip and nothing on
        # "Hochladen"; intake refuses it with a German line that names the file and what is allowed.
        files = st.file_uploader("Dateien", accept_multiple_files=True, key=f"documents_files_{company_id}")
        document_type = ""
        if provider == Provider.datev:
            document_type = st.selectbox("Belegtyp", ["", *known], key=f"documents_type_{company_id}",
                                         format_func=lambda t: t or default_label)
        note = st.text_input("Notiz (optional)", max_chars=255, key=f"documents_note_{company_id}")
        submitted = st.form_submit_button("Hochladen", type="primary", key=f"documents_upload_submit_{company_id}")
    if not submitted:
        return
    if not files:
        st.warning("Bitte wählen Sie mindestens eine Datei aus. Dateien über "
                   f"{st.get_option('server.maxUploadSize')} MB nimmt das Feld "
                   "nicht an; sie erscheinen dann rot markiert in der Dateiliste.")
        return
    try:
        report = intake.intake(engine, company_id=company_id, files=[(f.name, f.getvalue()) for f in files],
                                  actor=actor_of(user), document_type=document_type or "", note=note)
    except UserFacingError as exc:
        st.error(plain(exc.message))
        return
    for doc in report.accepted:
        st.success(f"„{plain(doc.original_name)}“ angenommen (Beleg Nr. {doc.id}, {size_text(doc.size)}).")
        if warning := size_warning(doc.size):
            st.warning(f"„{plain(doc.original_name)}“: {warning}")
    for rejected in report.rejected:
        st.error(plain(rejected.message))


if is_operator:
    upload_section()
    st.divider()

st.subheader("Belegliste")
filters = st.columns(4)
company_options: list[int | None] = [None, *sorted(company_names, key=lambda i: company_names[i])]
filter_company = filters[0].selectbox("Unternehmen", company_options, key="documents_filter_company", placeholder="Alle",
                                      format_func=lambda i: "Alle Unternehmen" if i is None else company_names[i])
filter_status = filters[1].multiselect("Status", [s.value for s in DocumentStatus], key="documents_filter_status", select_all=False, placeholder="Alle",
                                       format_func=lambda s: STATUS_LABELS[DocumentStatus(s)])
filter_type = filters[2].text_input("Belegtyp", key="documents_filter_type")
period = filters[3].date_input("Zeitraum (hochgeladen)", value=[], format="DD.MM.YYYY", key="documents_filter_period")
since = until = None
if len(period) >= 1:  # a range: (), (start,) or (start, end)
    since = day_start_utc(period[0])
    until = day_start_utc((period[1] if len(period) > 1 else period[0]) + timedelta(days=1))
doc_filter = DocumentFilter(company_id=filter_company, statuses=tuple(filter_status),
                            document_type=filter_type.strip() or None, since=since, until=until)

total = queries.count_documents(engine, doc_filter)
pages = max(1, -(-total // PAGE_SIZE))
if st.session_state.get("documents_page", 1) > pages:
    st.session_state["documents_page"] = pages
page_no = st.number_input("Seite", min_value=1, max_value=pages, value=1, step=1, key="documents_page")
rows, total = queries.list_documents(engine, doc_filter, offset=(int(page_no) - 1) * PAGE_SIZE, limit=PAGE_SIZE,
                                     total=total)  # counted once per run (a count over a million rows)
st.caption(f"Seite {int(page_no)} von {pages} · {total} Belege")

now = utcnow()
waiting = readiness.waiting_reasons(engine, settings, {d.company_id for d in rows
                                                       if d.status == DocumentStatus.approved.value})


if not rows:
    st.info("Keine Belege für diese Auswahl.")
    st.stop()

st.dataframe(  # reasons first: status and why, right after the file name (visible at 1280 px)
    frame([{
        "Datei": cell(d.file_name),
        "Status": STATUS_LABELS[DocumentStatus(d.status)],
        "Hinweis": cell(document_hint(d, waiting.get(d.company_id), now,
                                      automatic=d.company_id not in manual_only)),
        "Unternehmen": cell(company_names.get(d.company_id, "?")),
        "Belegtyp": cell(d.document_type or ""),
        "Hochgeladen": format_local(d.uploaded_at),
        "Von": cell(d.uploaded_by),
        "Freigegeben": cell(f"{format_local(d.approved_at)} von {d.approved_by}" if d.approved_at else ""),
        "Größe": size_text(d.size),
        "Nr.": d.id,
    } for d in rows]),
    hide_index=True,
    width="stretch",
    column_config={"Nr.": st.column_config.NumberColumn(format="%d"),
                   "Hinweis": st.column_config.TextColumn(width="medium")},
    key="documents_table",
)

by_doc = {id_of(d): d for d in rows}
with st.expander("Vorschau"):
    preview_id = st.selectbox("Beleg", list(by_doc), key="documents_preview",
                              format_func=lambda i: f"Nr. {i} · {by_doc[i].file_name}")
    if preview_id is not None:
        show_preview(engine, by_doc[preview_id], key=f"documents_preview_{preview_id}")

if not is_operator:
    st.caption("Nur Bearbeiter und Administratoren können Belege hochladen, freigeben und löschen.")
    st.stop()

new_ids = [id_of(d) for d in rows if d.status == DocumentStatus.new.value]
st.subheader("Freigeben oder löschen")
if not new_ids:
    st.caption("Auf dieser Seite gibt es keine Belege im Status „neu“.")
    st.stop()
st.session_state["documents_chosen"] = [i for i in st.session_state.get("documents_chosen", []) if i in new_ids]
chosen = st.multiselect("Belege im Status „neu“", new_ids, key="documents_chosen", select_all=False, placeholder="Belege wählen",
                        format_func=lambda i: f"Nr. {i} · {by_doc[i].file_name} ({company_names.get(by_doc[i].company_id)})")
st.button("Alle neuen dieser Seite auswählen", key="documents_choose_all",
          on_click=lambda: st.session_state.update(documents_chosen=new_ids))
cols = st.columns(2)
if cols[0].button("Freigeben", type="primary", key="documents_approve", disabled=not chosen):
    changed = lifecycle.approve(engine, document_ids=chosen, actor=actor_of(user))
    flash(f"{changed} Beleg{'e' if changed != 1 else ''} freigegeben.")
    st.session_state.pop("documents_chosen", None)
    st.rerun()
confirm_delete = cols[1].popover("Löschen", disabled=not chosen,
                                 help="Nur vor der Freigabe möglich; der Beleg wird endgültig entfernt.")
confirm_delete.write(f"{len(chosen)} Beleg{'e' if len(chosen) != 1 else ''} endgültig löschen? Das lässt sich nicht "
                     "rückgängig machen.")
if confirm_delete.button("Ja, endgültig löschen", key="documents_delete", type="primary", disabled=not chosen):
    deleted = 0
    for document_id in chosen:
        try:
            lifecycle.delete_unapproved(engine, document_id=document_id, actor=actor_of(user))
            deleted += 1
        except UserFacingError as exc:
            flash_error(f"Nr. {document_id}: {exc.message}")
    flash(f"{deleted} Beleg{'e' if deleted != 1 else ''} gelöscht.")
    st.session_state.pop("documents_chosen", None)
    st.rerun()
