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


def transfers_chart(days: list[DayCount]) -> None:
    st.markdown("**Übertragungen pro Tag (letzte 30 Tage)**")
    if not days:
        st.caption("In den letzten 30 Tagen gab es keine Übertragungsversuche.")
        return
    order = sorted({d.label for d in days}, key=lambda label: next(d.day for d in days if d.label == label))
    data = pd.DataFrame([{"Tag": d.label, "Ergebnis": d.outcome, "Anzahl": d.count} for d in days])
    chart = alt.Chart(data).mark_bar().encode(
        x=alt.X("Tag:N", sort=order, title=None, axis=alt.Axis(labelAngle=-45)),
        y=alt.Y("sum(Anzahl):Q", title="Belege", axis=alt.Axis(tickMinStep=1, format="d")),
        color=alt.Color("Ergebnis:N", scale=OUTCOME_COLOURS, title="Ergebnis"),
        tooltip=[alt.Tooltip("Tag:N"), alt.Tooltip("Ergebnis:N"), alt.Tooltip("Anzahl:Q")],
    )
    st.altair_chart(chart, width="stretch", key="chart_transfers")


def failures_chart(reasons: list[FailureReason]) -> None:
    st.markdown("**Fehlerursachen (letzte 30 Tage)**")
    if not reasons:
        st.caption("In den letzten 30 Tagen ist keine Übertragung fehlgeschlagen.")
        return
    data = pd.DataFrame([{"Ursache": r.reason[:120], "Anzahl": r.count} for r in reasons])
    chart = alt.Chart(data).mark_bar(color="#c62828").encode(
        x=alt.X("Anzahl:Q", title="Fehlgeschlagene Versuche", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("Ursache:N", sort="-x", title=None, axis=alt.Axis(labelLimit=400)),
        tooltip=[alt.Tooltip("Ursache:N"), alt.Tooltip("Anzahl:Q")],
    )
    st.altair_chart(chart, width="stretch", key="chart_failures")
