"""Unternehmen: list for every role; create, edit, archive and restore for admins."""

from typing import Any

import streamlit as st

from core import companies, company_import
from core.companies import INTERFACE_LABELS, CompanyInput
from core.overview import State, company_states
from core.platform.errors import UserFacingError, ValidationFailed
from core.platform.models import Company, Interface, Role
from core.platform.timefmt import format_local
from core.transfers import readiness
from ui.feedback import flash, show_flashes
from ui.guard import actor_of, may, require_page
from ui.rows import id_of
from ui.services import services
from ui.text import frame, plain

user = require_page(__file__)

_settings, engine, _keyring = services()
is_admin = may(user, Role.admin)
SELECTED_KEY = "companies_selected_id"

st.title("Unternehmen")
show_flashes()
show_archived = st.toggle("Archivierte anzeigen", key="companies_show_archived")

rows = companies.list_companies(engine, include_archived=show_archived)
# The state the Übersicht shows (token health, binding, pause: core.overview.company_state), not a second word
# for the company record: "aktiv" here once meant "not archived" beside an expired token.
states = company_states(engine, _settings)

if rows:
    st.dataframe(
        frame([
            {
                "Name": c.name,
                "Berater-Nr.": c.consultant_number,
                "Mandanten-Nr.": c.client_number,
                "Schnittstelle": INTERFACE_LABELS[Interface(c.interface)],
                "Automatische Übertragung": c.auto_transfer,
                "Standard-Belegtyp": c.default_document_type or "",
                "Status": "archiviert" if c.archived_at else states.get(id_of(c), State.no_interface).value,
                "Geändert": format_local(c.updated_at),
            }
            for c in rows
        ]),
        hide_index=True,
        width="stretch",
        placeholder="–",  # a Lexware company has no Berater-Nr.: a dash, not "None"
        column_config={
            "Berater-Nr.": st.column_config.NumberColumn(format="%d"),
            "Mandanten-Nr.": st.column_config.NumberColumn(format="%d"),
        },
    )
else:
    st.info("Noch keine Unternehmen angelegt.")

if not is_admin:
    st.caption("Nur Administratoren können Unternehmen anlegen und ändern.")
    st.stop()


def company_form(form_key: str, initial: CompanyInput, submit_label: str) -> tuple[CompanyInput | None, dict]:
    """Render the fields; return the typed values when submitted. Errors appear under each field."""
    with st.form(form_key):
        values: dict[str, Any] = {  # CompanyInput's fields, as the widgets return them
            "name": st.text_input("Name", value=initial.name, max_chars=100, key=f"{form_key}_name"),
        }
        errors = {"name": st.empty()}
        left, right = st.columns(2)
        with left:
            values["consultant_number"] = st.text_input(
                "Berater-Nr.", value=initial.consultant_number, key=f"{form_key}_consultant_number",
                help="4 bis 7 Ziffern, z. B. 455148",
            )
            errors["consultant_number"] = st.empty()
        with right:
            values["client_number"] = st.text_input(
                "Mandanten-Nr.", value=initial.client_number, key=f"{form_key}_client_number",
                help="1 bis 99999",
            )
            errors["client_number"] = st.empty()
        options = [i.value for i in Interface]
        values["interface"] = st.selectbox(
            "Schnittstelle", options, index=options.index(initial.interface),
            format_func=lambda v: INTERFACE_LABELS[Interface(v)], key=f"{form_key}_interface",
        )
        errors["interface"] = st.empty()
        values["auto_transfer"] = st.checkbox(
            "Automatische Übertragung freigegebener Belege", value=initial.auto_transfer,
            key=f"{form_key}_auto_transfer",
            help="Wirkt erst, wenn ein gültiges Langzeittoken hinterlegt ist.",
        )
        errors["auto_transfer"] = st.empty()
        values["default_document_type"] = st.text_input(
            "Standard-Belegtyp", value=initial.default_document_type, max_chars=30,
            key=f"{form_key}_default_document_type", help="z. B. Rechnungseingang",
        )
        errors["default_document_type"] = st.empty()
        values["alarm_recipients"] = st.text_input(
            "Alarm-Empfänger (E-Mail)", value=initial.alarm_recipients, key=f"{form_key}_alarm_recipients",
            help="Zusätzlich zu den globalen Empfängern; mehrere Adressen mit Komma trennen.",
        )
        errors["alarm_recipients"] = st.empty()
        values["inbox_dir"] = st.text_input(
            "Eingangsordner", value=initial.inbox_dir, key=f"{form_key}_inbox_dir",
            help="Optional: Ordner, aus dem der Scheduler neue Belege übernimmt (relativ zu INBOX_ROOT).",
        )
        errors["inbox_dir"] = st.empty()
        submitted = st.form_submit_button(submit_label, type="primary", key=f"{form_key}_submit")
    return (CompanyInput(**values) if submitted else None), errors


def show_field_errors(slots: dict, failure: ValidationFailed) -> None:
    for field, message in failure.field_errors.items():
        slot = slots.get(field)
        (slot.error if slot is not None else st.error)(message)


st.divider()
st.subheader("Neues Unternehmen")
new_values, new_slots = company_form("company_new", CompanyInput(name=""), "Anlegen")
if new_values is not None:
    try:
        created = companies.create_company(engine, actor=actor_of(user), data=new_values)
        flash(f"Unternehmen „{created.name}“ angelegt.")
        st.session_state[SELECTED_KEY] = created.id
        st.rerun()
    except ValidationFailed as failure:
        show_field_errors(new_slots, failure)

IMPORT_KEY = "companies_import_preview"
with st.expander("Mehrere Unternehmen aus einer CSV-Datei anlegen"):
    st.caption("Spalten: Name; Berater-Nr.; Mandanten-Nr.; Schnittstelle (DATEV, Lexware oder keine); "
               "Automatische Übertragung (ja/nein). Getrennt durch Semikolon oder Komma, mit Kopfzeile. "
               "Erst die Vorschau, gespeichert wird nach Bestätigung.")
    upload = st.file_uploader("CSV-Datei", type=["csv", "txt"], key="companies_import_file")
    if st.button("Prüfen", key="companies_import_check", disabled=upload is None) and upload is not None:
        try:
            st.session_state[IMPORT_KEY] = company_import.preview(engine, _settings, upload.getvalue(),
                                                                  actor=actor_of(user))
        except UserFacingError as exc:
            st.session_state.pop(IMPORT_KEY, None)
            st.error(exc.message)
    checked: list[company_import.ImportRow] = st.session_state.get(IMPORT_KEY, [])
    if checked:
        good = [r for r in checked if r.ok]
        st.dataframe(frame([{
            "Zeile": r.line, "Ergebnis": "wird angelegt" if r.ok else " ".join(r.errors),
            "Name": r.data.name if r.data else "", "Berater-Nr.": r.data.consultant_number if r.data else "",
            "Mandanten-Nr.": r.data.client_number if r.data else "",
            "Schnittstelle": INTERFACE_LABELS[Interface(r.data.interface)] if r.data else "",
            "Automatisch": ("ja" if r.data.auto_transfer else "nein") if r.data else "",
        } for r in checked]), hide_index=True, width="stretch", key="companies_import_table",
            column_config={"Ergebnis": st.column_config.TextColumn(width="large")})
        st.caption(f"{len(good)} von {len(checked)} Zeilen werden angelegt; fehlerhafte Zeilen werden übersprungen.")
        if st.button(f"{len(good)} Unternehmen anlegen", key="companies_import_confirm", type="primary",
                     disabled=not good):
            try:
                created_count = company_import.import_rows(engine, checked, actor=actor_of(user))
                st.session_state.pop(IMPORT_KEY, None)
                flash(f"{created_count} Unternehmen angelegt.")
                st.rerun()
            except (ValidationFailed, UserFacingError) as exc:
                st.error(" ".join(exc.field_errors.values()) if isinstance(exc, ValidationFailed) else exc.message)

all_companies: list[Company] = companies.list_companies(engine, include_archived=True)
if not all_companies:
    st.stop()

st.divider()
st.subheader("Unternehmen bearbeiten")
# The selection lives in our own session key, not in the widget: a rename changes the option
# labels, Streamlit then treats the select box as a new widget and would reset it to the first
# company, and the next click ("Archivieren") would hit the wrong one.
by_id = {id_of(c): c for c in sorted(all_companies, key=id_of)}
ids = list(by_id)
if st.session_state.get(SELECTED_KEY) not in by_id:
    st.session_state[SELECTED_KEY] = ids[0]
selected_id = st.selectbox(
    "Unternehmen auswählen", ids, index=ids.index(st.session_state[SELECTED_KEY]),
    format_func=lambda i: by_id[i].name + (" (archiviert)" if by_id[i].archived_at else ""),
)
assert selected_id is not None  # the index is set and the list is not empty
st.session_state[SELECTED_KEY] = selected_id
selected = by_id[selected_id]
form_key = f"company_edit_{selected.id}"
edit_values, edit_slots = company_form(form_key, companies.input_from(selected), "Speichern")
if edit_values is not None:
    try:
        companies.update_company(engine, actor=actor_of(user), company_id=selected_id, data=edit_values)
        flash(f"Änderungen an „{edit_values.name.strip()}“ gespeichert.")
        st.rerun()
    except ValidationFailed as failure:
        show_field_errors(edit_slots, failure)
    except UserFacingError as failure:
        st.error(plain(failure.message))

if selected.paused_at is not None:
    st.warning(f"Übertragung pausiert seit {format_local(selected.paused_at)}: {plain(selected.paused_reason) if selected.paused_reason else ''} "
               "Sie läuft weiter, sobald ein neues Langzeittoken angefordert wurde, oder hier von Hand.")
    if st.button("Übertragung fortsetzen", key=f"company_resume_{selected.id}"):
        readiness.resume(engine, selected_id, actor_of(user))
        flash(f"Übertragung für „{selected.name}“ fortgesetzt.")
        st.rerun()

def archive_confirmed() -> bool:
    """Archiving asks first (it stops automatic transfers); reactivating does not."""
    if selected.archived_at:
        return st.button("Reaktivieren", key=f"company_archive_{selected.id}")
    with st.popover("Archivieren"):
        st.write(f"„{plain(selected.name)}“ archivieren? Die automatische Übertragung wird ausgeschaltet; die Historie "
                 "bleibt erhalten, und das Unternehmen lässt sich reaktivieren.")
        return st.button("Ja, archivieren", key=f"company_archive_{selected.id}", type="primary")


if archive_confirmed():
    try:
        companies.set_archived(engine, actor=actor_of(user), company_id=selected_id,
                               archived=selected.archived_at is None)
        flash(f"„{selected.name}“ {'reaktiviert' if selected.archived_at else 'archiviert'}. "
              "Die Historie bleibt erhalten.")
        st.rerun()
    except UserFacingError as failure:
        st.error(plain(failure.message))
