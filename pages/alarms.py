"""Alarme: which alarms went out, to whom (redacted), whether they arrived; admins send a test alarm."""

import streamlit as st

from core.alarms import views
from core.alarms.outbox import delivery_detail
from core.platform.models import Role
from core.platform.timefmt import format_local
from ui.feedback import flash, flash_error, show_flashes
from ui.guard import actor_of, may, require_page
from ui.services import services
from ui.text import frame

user = require_page(__file__)

settings, engine, _keyring = services()
st.title("Alarme")
st.caption("Benachrichtigungen per E-Mail und Webhook: Token ungültig, Ablauf in 60/30/14/7/1 Tagen, "
           "Token abgelaufen, Unternehmen pausiert, wiederholt fehlgeschlagene Übertragungen. "
           "Jeder Alarm wird einmal ausgelöst; "
           f"kommt er nicht an, wird er bis zu {settings.alarm_max_attempts}-mal gesendet.")
show_flashes()

if may(user, Role.admin):
    with st.container(border=True):
        st.write("**Test-Alarm**: sendet eine Probe an alle eingerichteten Alarm-Empfänger (Webhooks und E-Mail).")
        if not views.targets_configured(settings):
            st.info("Es sind keine Alarm-Empfänger eingerichtet. Sie werden in den Server-Einstellungen festgelegt "
                    "(Webhooks, E-Mail-Empfänger und ein Mailserver; siehe Betriebshandbuch README, „Alarme“).")
        elif st.button("Test-Alarm senden", key="send_test_alarm", icon=":material/notifications:"):
            with st.spinner("Test-Alarm wird gesendet …"):
                outcome = views.send_test_alarm(engine, settings, actor=actor_of(user))
            report = delivery_detail(outcome.results)
            if outcome.delivered:
                flash(f"Test-Alarm zugestellt ({report}).")
            else:
                flash_error(f"Test-Alarm nicht überall zugestellt ({report}). Er wird später erneut gesendet.")
            st.rerun()

only_open = st.toggle("Nur nicht zugestellte", key="alarms_only_undelivered")
limit = st.select_slider("Einträge", options=[50, 200, 1000], value=200, key="alarms_limit")
rows = views.recent_alarms(engine, limit=limit, only_undelivered=only_open)
if not rows:
    st.info("Keine Alarme." if not only_open else "Alle Alarme wurden zugestellt.")
else:
    st.dataframe(
        frame([
            {"Ausgelöst": format_local(r.first_attempt), "Unternehmen": r.company, "Alarm": r.title,
             "Zustellung": r.state, "Versuche": r.attempts, "Empfänger und Ergebnis": r.detail}
            for r in rows
        ]),
        hide_index=True, width="stretch",
    )
