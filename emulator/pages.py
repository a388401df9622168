"""German HTML pages: start page, "Verbundene Anwendungen" (tokrevui), received uploads and files
(the demo alarm receiver lists its alarms with the same table: emulator/alarm_inbox.py)."""

from __future__ import annotations

from flask import Blueprint, redirect, request

from . import datev_tokens as tokens
from .context import emulator_state
from .html import page

bp = Blueprint("pages", __name__)

START = """
<h2>Token Desk Emulator</h2>
<p>Lokaler Ersatz für „Login mit DATEV“, DATEV Belegbilderservice und Lexware Office. Nur für Tests und Demos.</p>
<ul>
<li><a href="/idp/.well-known/openid-configuration">Dashboard-Anmeldung (OpenID Connect, Discovery)</a></li>
<li><a href="/openid/.well-known/openid-configuration">Login mit DATEV – Produktion (Discovery)</a></li>
<li><a href="/openidsandbox/.well-known/openid-configuration">Login mit DATEV – Sandbox (Discovery)</a></li>
<li><a href="/tokrevui" data-testid="link-tokrevui">Verbundene Anwendungen</a></li>
<li><a href="/uploads" data-testid="link-uploads">Empfangene DATEV-Belege</a></li>
<li><a href="/lexware-files" data-testid="link-lexware-files">Empfangene Lexware-Dateien</a></li>
<li><a href="/alarms" data-testid="link-alarms">Empfangene Alarme (Demo-Webhook)</a></li>
<li><a href="/_admin/stats">Statistik (JSON)</a></li>
</ul>
"""

TOKREVUI = """
<h2>Verbundene Anwendungen</h2>
<p>Hier sehen Sie, welche Anwendungen auf Ihre DATEV-Daten zugreifen dürfen, und können den Zugriff entziehen.</p>
{% for person, grants in rows %}
<h3>{{ person.name }}</h3>
{% if grants %}
<table><tr><th>Anwendung</th><th>Datenbestand</th><th>Art</th><th>Erteilt am</th><th>Zuletzt genutzt</th><th></th></tr>
{% for g in grants %}
<tr data-testid="grant-{{ g.id }}"><td>{{ g.client_name }}</td><td>{{ g.bound_client or "–" }}</td>
<td>{{ "Dauerhafter Zugriff" if g.offline else "Sitzung (11 Std.)" }}</td>
<td>{{ g.created }}</td><td>{{ g.last_used }}</td>
<td><form method="post" action="/tokrevui/revoke"><input type="hidden" name="grant_id" value="{{ g.id }}">
<button type="submit" id="revoke-{{ g.id }}">Zugriff entziehen</button></form></td></tr>
{% endfor %}</table>
{% else %}<p>Keine verbundenen Anwendungen.</p>{% endif %}
{% endfor %}
"""

UPLOADS = """
<h2>{{ heading }}</h2>
<table><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in rows %}<tr>{% for c in columns %}<td>{{ row.get(c, "") if row.get(c) is not none else "–" }}</td>
{% endfor %}</tr>{% endfor %}</table>
"""


@bp.get("/")
def start():
    return page("Token Desk Emulator", START)


@bp.get("/tokrevui")
def tokrevui():
    state = emulator_state()
    with state.lock:
        clients = state.data["datev_oauth_clients"]
        rows = []
        for person in state.data["persons"].values():
            grants = [{
                **g, "client_name": clients.get(g["client_id"], {}).get("name", g["client_id"]),
                "created": state.clock.iso(g["created_at"]), "last_used": state.clock.iso(g["last_used_at"]),
            } for g in state.data["grants"].values() if g["person_id"] == person["id"] and not g["revoked"]]
            rows.append((person, grants))
    return page("Verbundene Anwendungen", TOKREVUI, header="DATEV – Verbundene Anwendungen", rows=rows)


@bp.post("/tokrevui/revoke")
def tokrevui_revoke():
    state = emulator_state()
    with state.lock:
        if tokens.revoke_grant(state, request.form.get("grant_id", "")):
            state.count("revocations")
        state.changed()
    return redirect("/tokrevui", code=303)


@bp.get("/uploads")
def uploads():
    state = emulator_state()
    with state.lock:
        rows = [dict(u, document_type=u["document_type"] or "ohne Belegtyp") for u in state.data["uploads"]]
    columns = ["received_at", "client_id", "guid", "filename", "size", "document_type", "note", "via"]
    return page("Empfangene Belege", UPLOADS, heading="Empfangene DATEV-Belege", rows=rows, columns=columns)


@bp.get("/lexware-files")
def lexware_files():
    state = emulator_state()
    with state.lock:
        rows = list(state.data["lexware_files"].values())
    columns = ["received_at", "id", "voucher_id", "filename", "size", "media_type"]
    return page("Lexware-Dateien", UPLOADS, heading="Empfangene Lexware-Dateien", rows=rows, columns=columns)
