"""The Übersicht's charts (Altair through st.altair_chart): German titles, German month and day labels
computed in core.statistics (Berlin time), so nothing depends on the browser's locale."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core.statistics import DayCount, FailureReason, RenewalBar
from ui.text import frame

OUTCOME_COLOURS = alt.Scale(domain=["übertragen", "fehlgeschlagen", "ungeklärt"],
                            range=["#2e7d32", "#c62828", "#ef6c00"])


def renewal_chart(bars: list[RenewalBar], months: list[str]) -> None:
    st.markdown("**Erneuerungsplan: Langzeittoken und API-Schlüssel, die ablaufen (dieser und die nächsten 24 Monate)**")
    if not bars:
        st.caption("Bis in 24 Monaten läuft kein Langzeittoken und kein API-Schlüssel ab.")
        return
    data = pd.DataFrame([{"Monat": b.label, "Schnittstelle": b.interface, "Anzahl": b.count,
                          "Unternehmen": ", ".join(b.companies)} for b in bars])
    chart = alt.Chart(data).mark_bar().encode(
        x=alt.X("Monat:N", sort=months, scale=alt.Scale(domain=months), title=None,
                axis=alt.Axis(labelAngle=-45)),
        y=alt.Y("sum(Anzahl):Q", title="Unternehmen", axis=alt.Axis(tickMinStep=1, format="d")),
        color=alt.Color("Schnittstelle:N", title="Schnittstelle"),
        tooltip=[alt.Tooltip("Monat:N"), alt.Tooltip("Schnittstelle:N"), alt.Tooltip("Anzahl:Q"),
                 alt.Tooltip("Unternehmen:N")],
    )
    st.altair_chart(chart, width="stretch", key="chart_renewals")
    with st.expander("Welche Unternehmen wann neu anfordern müssen"):
        st.dataframe(frame(data[["Monat", "Schnittstelle", "Anzahl", "Unternehmen"]]), hide_index=True, width="stretch",
                     key="chart_renewals_table")


def transfers_chart(days: list[DayCount], labels: list[str]) -> None:
    """Attempts per day by outcome; `labels` (core.statistics.day_labels) are all days of the period, so
    a day without transfers is an empty slot, not a missing one."""
    st.markdown("**Übertragungen pro Tag (letzte 30 Tage)**")
    if not days:
        st.caption("In den letzten 30 Tagen gab es keine Übertragungsversuche.")
        return
    data = pd.DataFrame([{"Tag": d.label, "Ergebnis": d.outcome, "Anzahl": d.count} for d in days])
    chart = alt.Chart(data).mark_bar().encode(
        x=alt.X("Tag:N", sort=labels, scale=alt.Scale(domain=labels), title=None,
                axis=alt.Axis(labelAngle=-90, labelOverlap=True)),
        y=alt.Y("sum(Anzahl):Q", title="Übertragungsversuche", axis=alt.Axis(tickMinStep=1, format="d")),
        color=alt.Color("Ergebnis:N", scale=OUTCOME_COLOURS, title="Ergebnis", legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("Tag:N"), alt.Tooltip("Ergebnis:N"), alt.Tooltip("Anzahl:Q")],
    )
    st.altair_chart(chart, width="stretch", key="chart_transfers")


REASON_LABEL_CHARS = 45  # on the axis; the whole text is in the tooltip and the table below


def failures_chart(reasons: list[FailureReason]) -> None:
    """The most frequent failure messages: short labels on the axis (long DATEV texts would take the whole
    width), the full text in the tooltip and in a table."""
    st.markdown("**Fehlerursachen (letzte 30 Tage)**")
    if not reasons:
        st.caption("In den letzten 30 Tagen ist keine Übertragung fehlgeschlagen.")
        return
    data = pd.DataFrame([{"Ursache": _short(r.reason), "Meldung": r.reason, "Anzahl": r.count} for r in reasons])
    chart = alt.Chart(data).mark_bar(color="#c62828").encode(
        x=alt.X("Anzahl:Q", title="Versuche", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("Ursache:N", sort="-x", title=None, axis=alt.Axis(labelLimit=260)),
        tooltip=[alt.Tooltip("Meldung:N"), alt.Tooltip("Anzahl:Q")],
    )
    st.altair_chart(chart, width="stretch", key="chart_failures")
    with st.expander("Meldungen im Wortlaut"):
        st.dataframe(frame(data[["Meldung", "Anzahl"]]), hide_index=True, width="stretch", key="chart_failures_table")


def _short(reason: str) -> str:
    return reason if len(reason) <= REASON_LABEL_CHARS else reason[:REASON_LABEL_CHARS - 1].rstrip() + "…"
