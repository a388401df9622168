"""A demo alarm receiver: the webhook `make run` points ALARM_TARGETS at when nothing else is set.

Apprise's `json://host:port/_demo/alarms` POSTs {"version", "title", "message", "type", …}; the last
MAX_KEPT alarms are kept in the emulator's state and listed at /alarms ("Empfangene Alarme"), so a
newcomer sees a Test-Alarm or a "Token ungültig" arrive without a mail server.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from .context import emulator_state
from .html import page
from .pages import UPLOADS

bp = Blueprint("alarm_inbox", __name__)
MAX_KEPT = 200
TEXT_LIMIT = 4000


@bp.post("/_demo/alarms")
def receive_alarm():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify({"error": "JSON object expected"}), 400
    state = emulator_state()
    with state.lock:
        alarms = state.data.setdefault("alarms", [])
        alarms.append({"received_at": state.clock.iso(state.clock.now()),
                       "type": str(body.get("type", ""))[:20], "title": str(body.get("title", ""))[:300],
                       "message": str(body.get("message", ""))[:TEXT_LIMIT]})
        del alarms[:-MAX_KEPT]
        state.changed()
    return "", 204


@bp.get("/_admin/alarms")
def received_alarms():
    """What arrived, oldest first, as JSON (tests: "no alarm before the user acted")."""
    state = emulator_state()
    with state.lock:
        return jsonify(list(state.data.get("alarms", [])))


@bp.get("/alarms")
def list_alarms():
    state = emulator_state()
    with state.lock:
        rows = list(reversed(state.data.get("alarms", [])))
    return page("Alarme", UPLOADS, heading="Empfangene Alarme (Demo-Webhook)", rows=rows,
                columns=["received_at", "type", "title", "message"])
