"""One company's page (`/company?company=ID`, opened from the Übersicht): its token card with the actions
the role allows, open documents with their reasons, the last transfer attempts, its alarms, and for admins
its audit entries. Without a valid `company` parameter it offers a choice."""

import streamlit as st

from core.companies import list_companies
from core.connections.health import card_for
from core.connections.request_links import open_links_by_company
from core.logs import action_label
from core.overview import DETAIL_LIMIT, company_audit, company_detail, todo_item
from core.platform.errors import UserFacingError
from core.platform.models import Role
from core.platform.timefmt import format_local
from core.transfers.history import OUTCOME_LABELS, TRIGGER_LABELS
from ui.company_actions import act
from ui.feedback import show_flashes
from ui.guard import may, require_page
from ui.links import TRANSFER_LOG_PAGE, page_link
from ui.services import services
from ui.text import cell, frame, plain
from ui.token_card import TokenCardView

user = require_page(__file__)

settings, engine, keyring = services()
companies = {c.id: c for c in list_companies(engine, include_archived=True) if c.id is not None}
raw = st.query_params.get("company", "")
company_id = int(raw) if raw.isdigit() and int(raw) in companies else None

if company_id is None:
    st.title("Unternehmensdetails")
    if raw:
        st.warning("Dieses Unternehmen gibt es nicht. Bitte wählen Sie eines aus.")
    choice = st.selectbox("Unternehmen", sorted(companies, key=lambda i: companies[i].name), index=None,
                          key="company_choice", placeholder="Unternehmen wählen",
                          format_func=lambda i: companies[i].name)
    if choice is not None:
        st.query_params["company"] = str(choice)
        st.rerun()
    st.stop()

try:
    detail = company_detail(engine, settings, company_id)
except UserFacingError as exc:
    st.error(plain(exc.message))
    st.stop()
company = detail.company
st.title(plain(company.name))
page_link("pages/overview.py", "Zur Übersicht", icon=":material/arrow_back:")
show_flashes()
if company.archived_at is not None:
    st.info(f"Archiviert am {format_local(company.archived_at)}: keine automatische Übertragung.")
row = detail.row
if row is not None:
    facts = [f"**Schnittstelle:** {row.interface}", f"**Status:** {row.state.value}",
             f"**Wartend:** {row.waiting}", f"**Fehlgeschlagen:** {row.failed}"]
    st.markdown(" · ".join(facts))
    if row.reason is None and not company.auto_transfer:
        st.info("Kann übertragen, aber nur von Hand: die automatische Übertragung ist für dieses Unternehmen aus.")
    elif row.reason is None:
        st.success("Kann übertragen.")
    else:
        st.error(f"Kann nicht übertragen: {plain(row.reason)}")
    fix = todo_item(row)
    if fix is not None:  # the same action as in the Übersicht's "Heute zu tun" (resume, retry, resolve)
        act(fix, user, on_company_page=True)

open_link = open_links_by_company(engine).get(company.id) if company.id is not None else None
if open_link is not None:  # a renewal already asked for through an Anforderungslink
    st.info(plain(open_link.summary), icon=":material/link:")

provider = company.provider
if provider is not None and company.archived_at is None:
    TokenCardView(settings=settings, engine=engine, keyring=keyring, user=user).show(
        card_for(engine, settings, company, provider))

st.subheader("Offene Belege")
if not detail.open_documents:
    st.caption("Keine offenen Belege.")
else:
    if detail.open_total > len(detail.open_documents):
        st.caption(f"Die neuesten {len(detail.open_documents)} von {detail.open_total}; alle unter „Belege“.")
    st.dataframe(frame([{
        "Beleg": cell(d.file_name), "Status": d.status, "Hinweis": cell(d.hint), "Nr.": d.document_id,
        "Hochgeladen": format_local(d.uploaded_at),
    } for d in detail.open_documents]), hide_index=True, width="stretch", key="company_documents",
        column_config={"Nr.": st.column_config.NumberColumn(format="%d"),
                       "Hinweis": st.column_config.TextColumn(width="large")})

st.subheader("Letzte Übertragungsversuche")
if not detail.attempts:
    st.caption("Noch keine Übertragungsversuche.")
else:
    st.dataframe(frame([{
        "Beleg": cell(a.file_name), "Ergebnis": OUTCOME_LABELS.get(a.outcome, a.outcome),
        "Meldung": cell(a.error_text or ""), "Beginn": format_local(a.started_at),
        "Auslöser": TRIGGER_LABELS.get(a.trigger, a.trigger), "Versuch": a.attempt_no,
    } for a in detail.attempts]), hide_index=True, width="stretch", key="company_attempts")
    page_link(TRANSFER_LOG_PAGE, "Zum Übertragungsprotokoll dieses Unternehmens", icon=":material/receipt_long:",
              params={"company": str(company.id)})

st.subheader("Alarme")
if not detail.alarms:
    st.caption("Keine Alarme.")
else:
    st.dataframe(frame([{"Zeit": format_local(a.at), "Alarm": cell(a.title), "Zustellung": a.state}
                               for a in detail.alarms]), hide_index=True, width="stretch", key="company_alarms")

if may(user, Role.admin):
    st.subheader("Audit-Einträge")
    audit = company_audit(engine, company_id, limit=DETAIL_LIMIT)
    if not audit:
        st.caption("Keine Audit-Einträge.")
    else:
        st.dataframe(frame([{"Zeit": format_local(e.at), "Wer": cell(e.actor), "Aktion": action_label(e.action),
                                    "Details": cell(e.detail)} for e in audit]),
                     hide_index=True, width="stretch", key="company_audit")
