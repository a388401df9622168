"""German HTML for the simulated login.datev.de pages (login method, SmartLogin QR, consent)."""

from __future__ import annotations

from .html import page

DATEV_GREEN = "0b5a2a"

LOGIN = """
<h2>Anmelden</h2>
<p>Anwendung <b>{{ pending.client_name or pending.client_id }}</b> möchte auf DATEV zugreifen.</p>
{% if error %}<p class="error" data-testid="login-error">{{ error }}</p>{% endif %}
<form method="post" action="{{ action }}">
<input type="hidden" name="pending" value="{{ pending_id }}">
<p><label>Person (Demo): <select name="person" data-testid="person-select">
{% for p in persons %}<option value="{{ p.id }}">{{ p.name }}</option>{% endfor %}
</select></label></p>
<p>Anmeldeverfahren wählen:</p>
<button type="submit" name="method" value="smartlogin" id="method-smartlogin">DATEV SmartLogin</button>
<button type="submit" name="method" value="smartcard" id="method-smartcard">DATEV SmartCard / mIDentity</button>
{% if pending.windows_sso %}
<button type="submit" name="method" value="windowssso" id="method-windowssso">DATEV Benutzer (WindowsSso)</button>
{% endif %}
{% if sandbox %}
<fieldset><legend>DATEV-Benutzerkonto (nur Sandbox)</legend>
<label>Benutzername <input name="username" id="username"></label>
<label>Passwort <input name="password" type="password" id="password"></label>
<button type="submit" name="method" value="benutzerkonto" id="method-benutzerkonto">Anmelden</button>
</fieldset>
{% endif %}
<p><label><input type="checkbox" name="remember" id="remember-method"> Anmeldeverfahren merken</label></p>
</form>
"""

QR = """
<h2>DATEV SmartLogin</h2>
<p>Scannen Sie den QR-Code mit der DATEV SmartLogin App.</p>
<div class="qr" data-testid="qr-code"></div>
<form method="post" action="{{ action }}">
<input type="hidden" name="pending" value="{{ pending_id }}">
<input type="hidden" name="person" value="{{ person }}">
<input type="hidden" name="method" value="smartlogin">
<button type="submit" name="qr" value="scanned" id="qr-scanned">QR-Code gescannt</button>
</form>
"""

CONSENT = """
<h2>Zugriff erlauben</h2>
<p>Angemeldet als <b data-testid="consent-person">{{ person.name }}</b>.</p>
<p>Die Anwendung <b>{{ pending.client_name or pending.client_id }}</b> bittet um folgende Berechtigungen:</p>
<ul data-testid="consent-scopes">
{% for label in labels %}<li>{{ label }}</li>{% endfor %}
{% if pending.offline %}<li data-testid="consent-offline"><b>Dauerhaften Zugriff erlauben (Langzeittoken)</b>
{% if pending.bound_client %} für Mandant {{ pending.bound_client }}{% endif %}</li>{% endif %}
</ul>
<form method="post" action="{{ action }}">
<input type="hidden" name="pending" value="{{ pending_id }}">
<button type="submit" name="decision" value="accept" id="consent-accept">Ich stimme zu</button>
<button type="submit" name="decision" value="deny" id="consent-deny" class="secondary">Ablehnen</button>
</form>
"""

ERROR = """<h2>Fehler bei der Anmeldung</h2><p class="error" data-testid="authorize-error">{{ message }}</p>"""

SCOPE_LABELS = {
    "openid": "Ihre Identität bestätigen",
    "profile": "Ihren Namen lesen",
    "email": "Ihre E-Mail-Adresse lesen",
    "account_id": "Ihre DATEV-Kontokennung lesen",
    "accounting:documents": "Belege an DATEV Unternehmen online übertragen",
    "accounting:clients:read": "Mandanten (Rechnungswesen) lesen",
}


def scope_labels(scopes: list[str]) -> list[str]:
    labels = []
    for scope in scopes:
        if scope == "offline_access":
            continue
        if scope.startswith("datev:iam:client:"):
            labels.append(f"Zugriff auf den Datenbestand {scope.rsplit(':', 1)[1]}")
        else:
            labels.append(SCOPE_LABELS.get(scope, scope))
    return labels


def render(template: str, status: int = 200, **context):
    return page("DATEV Anmeldung", template, header="DATEV – Anmeldung", color=DATEV_GREEN,
                status=status, **context)
