"""Login mit DATEV, browser side: discovery, /authorize, simulated login and consent (§7.1)."""

from __future__ import annotations

import secrets

from flask import Blueprint, jsonify, redirect, request

from . import datev_authorize_rules as rules
from . import datev_login_pages as pages
from .context import emulator_state
from .demo_data import DEMO_SANDBOX_PASSWORD
from .variants import VARIANTS, api_url, issuer

bp = Blueprint("datev_authorize", __name__)
PENDING_TTL = 1800


def discovery(variant: str):
    config = emulator_state().config
    iss = issuer(config, variant)
    return jsonify({
        "issuer": iss,
        "authorization_endpoint": f"{iss}/authorize",
        "token_endpoint": api_url(config, variant, "token"),
        "revocation_endpoint": api_url(config, variant, "revoke"),
        "userinfo_endpoint": api_url(config, variant, "userinfo"),
        "jwks_uri": api_url(config, variant, "certs"),
        "end_session_endpoint": api_url(config, variant, "endsession"),
        "introspection_endpoint": api_url(config, variant, "introspect"),
        "response_types_supported": ["code", "id_token", "id_token token", "code id_token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email", "account_id", "offline_access"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    })


def authorize(variant: str):
    state = emulator_state()
    with state.lock:
        try:
            pending = rules.validate(state.config, state.data["datev_oauth_clients"], variant, request.args)
        except rules.PageError as exc:
            return pages.render(pages.ERROR, status=400, message=str(exc))
        except rules.RedirectError as exc:
            return redirect(exc.location())
        pending["created_at"] = state.clock.now()
        pending_id = secrets.token_urlsafe(24)
        state.data["pending_authorizations"][pending_id] = pending
        state.changed()
    return _login_page(variant, pending_id, pending)


def _login_page(variant: str, pending_id: str, pending: dict, error: str | None = None):
    persons = list(emulator_state().data["persons"].values())
    return pages.render(pages.LOGIN, pending=pending, pending_id=pending_id, persons=persons, error=error,
                        sandbox=variant == "sandbox", action=f"{VARIANTS[variant]['login']}/authorize/login")


def _take_pending(state, pending_id: str, remove: bool = False) -> dict | None:
    pending: dict | None = state.data["pending_authorizations"].get(pending_id)
    if pending and state.clock.now() - pending["created_at"] > PENDING_TTL:
        pending = None
    if remove:
        state.data["pending_authorizations"].pop(pending_id, None)
    return pending


def login(variant: str):
    state = emulator_state()
    form = request.form
    pending_id, method = form.get("pending", ""), form.get("method", "")
    action = f"{VARIANTS[variant]['login']}/authorize/login"
    with state.lock:
        pending = _take_pending(state, pending_id)
        if not pending or pending["variant"] != variant:
            return pages.render(pages.ERROR, status=400, message="Die Anmeldung ist abgelaufen.")
        person_id = form.get("person", "")
        if method == "smartlogin" and form.get("qr") != "scanned":
            return pages.render(pages.QR, pending_id=pending_id, person=person_id, action=action)
        if method == "benutzerkonto" and variant == "sandbox":
            account = _check_account(state, form.get("username", ""), form.get("password", ""))
            if not account:
                return _login_page(variant, pending_id, pending, "Benutzername oder Passwort ist falsch.")
            person_id = account
        elif method not in ("smartlogin", "smartcard") and not (method == "windowssso" and pending["windows_sso"]):
            return _login_page(variant, pending_id, pending, "Anmeldeverfahren nicht verfügbar.")
        person = state.data["persons"].get(person_id)
        if not person:
            return _login_page(variant, pending_id, pending, "Unbekannte Person.")
        pending.update(person_id=person_id, login_method=method, login_at=state.clock.now())
        state.changed()
    return pages.render(pages.CONSENT, pending=pending, pending_id=pending_id, person=person,
                        labels=pages.scope_labels(pending["scope"]),
                        action=f"{VARIANTS[variant]['login']}/authorize/consent")


def _check_account(state, username: str, password: str) -> str | None:
    for person in state.data["persons"].values():
        if person["username"] == username and password == DEMO_SANDBOX_PASSWORD:
            person_id: str = person["id"]
            return person_id
    return None


def consent(variant: str):
    state = emulator_state()
    with state.lock:
        pending = _take_pending(state, request.form.get("pending", ""), remove=True)
        state.changed()
        if not pending or pending["variant"] != variant or "person_id" not in pending:
            return pages.render(pages.ERROR, status=400, message="Die Anmeldung ist abgelaufen.")

        def refuse(description: str):
            err = rules.RedirectError(pending["redirect_uri"], "access_denied", description, pending["state"])
            return redirect(err.location())

        if request.form.get("decision") != "accept":
            return refuse("The user denied the request.")
        person = state.data["persons"][pending["person_id"]]
        bound = pending["bound_client"]
        if bound and bound not in person["rights"]:
            return refuse(f"The person has no rights on client {bound}.")
        code = secrets.token_urlsafe(32)
        now = state.clock.now()
        state.data["auth_codes"][code] = {
            **{k: pending[k] for k in ("client_id", "redirect_uri", "person_id", "variant", "scope", "offline",
                                       "bound_client", "nonce", "code_challenge", "login_at", "login_method")},
            "expires_at": now + state.config.auth_code_ttl, "used": False, "grant_id": None,
        }
        state.changed()
    params = {"code": code, "state": pending["state"]}
    if state.config.authorization_response_iss:  # RFC 9207
        params["iss"] = issuer(state.config, variant)
    return redirect(rules.with_query(pending["redirect_uri"], params))


for _variant, _paths in VARIANTS.items():
    _login = _paths["login"]
    _defaults = {"variant": _variant}
    bp.add_url_rule(f"{_login}/.well-known/openid-configuration", f"discovery_{_variant}", discovery,
                    defaults=_defaults)
    bp.add_url_rule(f"{_login}/authorize", f"authorize_{_variant}", authorize, defaults=_defaults)
    bp.add_url_rule(f"{_login}/authorize/login", f"login_{_variant}", login, defaults=_defaults,
                    methods=["POST"])
    bp.add_url_rule(f"{_login}/authorize/consent", f"consent_{_variant}", consent, defaults=_defaults,
                    methods=["POST"])
