"""Übersicht: the default page of every role. Tiles (companies per state, Belege waiting, failures of the
last 7 days, the scheduler), "Heute zu tun" (every company that needs a person, most urgent first, with
its reason and what fixes it) and one table of all companies with search and filters. Every fact comes
from core.overview; this page only draws it."""


import pandas as pd
import streamlit as st

from core import statistics
from core.connections.request_links import open_links_by_company
from core.overview import State, filter_rows, overview
from core.platform.models import Role, shown_data_set
from core.platform.timefmt import display_zone
from ui.charts import failures_chart, renewal_chart, transfers_chart
from ui.company_actions import act
from ui.feedback import show_flashes
from ui.guard import may, require_page
from ui.links import open_company
from ui.request_link_panel import show_bulk_links
from ui.scheduler_status import status_line
from ui.services import services
from ui.text import cell, frame, plain

user = require_page(__file__)

settings, engine, keyring = services()
TODO_SHOWN = 10

st.title("Übersicht")
show_flashes()
data = overview(engine, settings)

# Tiles: companies per state in two rows (labels must fit at 1280 px), then documents and the scheduler.
states = data.tile_states()
running, scheduler_text = status_line()
first, rest = states[:6], states[6:]
for column, state in zip(st.columns(len(first)), first, strict=True):
    column.metric(state.value, data.tiles.get(state, 0), border=True)
columns = st.columns([1.3] * len(rest) + [1.4, 1.8, 1.2])
for column, state in zip(columns, rest, strict=False):
    column.metric(state.value, data.tiles.get(state, 0), border=True)
columns[-3].metric("Belege wartend", data.waiting, border=True, help="Freigegeben, noch nicht übertragen")
columns[-2].metric("Fehlgeschlagen (7 Tage)", data.failed_recently, border=True,
                   help="Fehlgeschlagene Übertragungsversuche der letzten 7 Tage")
columns[-1].metric("Scheduler", "läuft" if running else "steht", border=True, help=scheduler_text)


st.subheader("Heute zu tun")
open_links = open_links_by_company(engine)
if not data.todo:
    st.success("Nichts zu tun: alle Unternehmen können übertragen.")
else:
    show_all = len(data.todo) <= TODO_SHOWN or st.toggle(f"Alle {len(data.todo)} anzeigen", key="todo_all")
    for item in data.todo if show_all else data.todo[:TODO_SHOWN]:
        with st.container(border=True, key=f"todo_{item.company_id}"):
            name_col, reason_col, action_col = st.columns([2, 4, 3], vertical_alignment="center")
            name_col.markdown(f"**{plain(item.name)}**")
            reason_col.markdown(f":red[**{plain(item.reason)}**]  \n{plain(item.explanation)}")
            if item.company_id in open_links:  # a renewal already asked for
                reason_col.caption(plain(open_links[item.company_id].summary))
            with action_col:
                act(item, user)

st.subheader("Alle Unternehmen")
filters = st.columns([3, 3, 2, 2])
search = filters[0].text_input("Suche", key="overview_search", placeholder="Name oder Berater-Nr.–Mandanten-Nr.")
present_states = [s for s in State if any(r.state == s for r in data.rows)]
chosen_states = filters[1].multiselect("Status", present_states, key="overview_states", select_all=False, placeholder="Alle",
                                       format_func=lambda s: s.value)
interfaces = sorted({r.interface for r in data.rows})
chosen_interfaces = filters[2].multiselect("Schnittstelle", interfaces, key="overview_interfaces", select_all=False, placeholder="Alle")
SORTS = {"Dringlichkeit": None, "Name": "Unternehmen", "Tage übrig": "Tage übrig", "Wartend": "Wartend"}
sort = filters[3].selectbox("Sortierung", list(SORTS), key="overview_sort")
rows = filter_rows(data.rows, search=search, states=chosen_states, interfaces=chosen_interfaces)
if sort == "Dringlichkeit":
    rank = {item.company_id: i for i, item in enumerate(data.todo)}
    rows.sort(key=lambda r: rank.get(r.company_id, len(rank)))
elif sort == "Tage übrig":
    rows.sort(key=lambda r: (r.days_left is None, r.days_left or 0))
elif sort == "Wartend":
    rows.sort(key=lambda r: -r.waiting)
st.caption(f"{len(rows)} von {len(data.rows)} Unternehmen · das Kästchen vor einer Zeile öffnet das Unternehmen")


TIME_COLUMNS = ("Gültig bis", "Letzte Erneuerung", "Letzte Übertragung")


def local(table: pd.DataFrame) -> pd.DataFrame:
    """Stored UTC times in the display time zone (the table sorts by them and shows Berlin time); one
    vectorised conversion per column (per value it took 0.1 s at 1,000 companies)."""
    for column in TIME_COLUMNS:
        table[column] = pd.to_datetime(table[column], utc=True).dt.tz_convert(display_zone())
    return table


if rows:
    table = pd.DataFrame([{
        "Unternehmen": cell(r.name), "Nummer": shown_data_set(r.client_id, "–"),
        "Schnittstelle": r.interface, "Status": r.state.value,
        "Übertragung": cell("möglich" if r.reason is None else f"nicht möglich: {r.reason}"),
        "Wartend": r.waiting, "Fehlgeschlagen": r.failed, "Gültig bis": r.valid_until, "Tage übrig": r.days_left,
        "Datenbestand": r.bound_data_set, "DATEV-Benutzer": cell(r.grantor_name or "–"),
        "Letzte Erneuerung": r.last_refresh_at, "Letzte Übertragung": r.last_delivered_at,
    } for r in rows]).pipe(local)
    when = st.column_config.DatetimeColumn(format="DD.MM.YYYY HH:mm")
    event = st.dataframe(
        frame(table), hide_index=True, width="stretch", key="overview_table", placeholder="–", on_select="rerun", selection_mode="single-row",
        column_config={
            "Gültig bis": st.column_config.DatetimeColumn(format="DD.MM.YYYY"),
            "Tage übrig": st.column_config.NumberColumn(format="%d"),
            "Letzte Erneuerung": when, "Letzte Übertragung": when,
            "Übertragung": st.column_config.TextColumn("Kann übertragen / warum nicht", width="large"),
            "Nummer": st.column_config.TextColumn("Berater-Nr.–Mandanten-Nr."),
            "Datenbestand": st.column_config.TextColumn("Gebundener Datenbestand"),
        },
    )
    if event.selection.rows:
        open_company(rows[event.selection.rows[0]].company_id)
else:
    st.info("Kein Unternehmen passt zu dieser Auswahl.")

st.subheader("Auswertungen")
plan = statistics.renewal_plan(engine)
renewal_chart(plan, statistics.plan_months())
if may(user, Role.admin):  # the renewal plan's step: one Anforderungslink per company of a month
    show_bulk_links(engine=engine, settings=settings, keyring=keyring, user=user,
                    months=sorted({bar.month for bar in plan}))
left, right = st.columns(2)
with left:
    transfers_chart(statistics.transfers_per_day(engine), statistics.day_labels())
with right:
    failures_chart(statistics.failure_reasons(engine))
