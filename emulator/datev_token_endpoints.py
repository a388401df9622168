"""Login mit DATEV, back-channel: /token, /revoke, /userinfo, /certs, /endsession, /introspect (§7.1)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from flask import Blueprint, Response, jsonify, request

from . import datev_tokens as tokens
from .context import emulator_state
from .request_ids import add_datev_headers
from .signing import public_jwks
from .variants import VARIANTS, issuer

bp = Blueprint("datev_tokens", __name__)
bp.after_request(add_datev_headers)


GENERIC_DESCRIPTIONS = {"invalid_grant": "The provided grant is invalid.",
                        "invalid_client": "Client authentication failed.",
                        "invalid_request": "The request is missing a parameter or is otherwise malformed."}


def _error(error: str, description: str, status: int = 400):
    if emulator_state().config.idp_profile == "standard":  # a plain provider says less
        description = GENERIC_DESCRIPTIONS.get(error, "The request could not be processed.")
    response = jsonify({"error": error, "error_description": description})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="DATEV"'
    return response


def _basic_client(state) -> dict | None:
    auth = request.authorization
    if not auth or auth.type != "basic":
        return None
    client: dict | None = state.data["datev_oauth_clients"].get(auth.username or "")
    if not client or not hmac.compare_digest(client["secret"], auth.password or ""):
        return None
    return client


def _pkce_matches(verifier: str, challenge: str) -> bool:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return hmac.compare_digest(base64.urlsafe_b64encode(digest).rstrip(b"=").decode(), challenge)


def token(variant: str):
    state = emulator_state()
    state.count("token_requests")
    with state.lock:
        client = _basic_client(state)
        if not client:
            return _error("invalid_client", "Client authentication failed (HTTP Basic required).", 401)
        grant_type = request.form.get("grant_type")
        now, iss = state.clock.now(), issuer(state.config, variant)
        try:
            if not grant_type:
                raise tokens.TokenError("invalid_request", "grant_type is missing.")
            if grant_type == "authorization_code":
                body = _redeem_code(state, client, variant, now, iss)
            elif grant_type == "refresh_token":
                state.count("refresh_requests")
                refresh_token = request.form.get("refresh_token")
                if not refresh_token:
                    raise tokens.TokenError("invalid_request", "refresh_token is missing.")
                body = tokens.refresh(state, refresh_token, client["client_id"], now, iss, variant)
                state.count("refresh_successes")
            else:
                raise tokens.TokenError("unsupported_grant_type", f"Unsupported grant_type '{grant_type}'.")
        except tokens.TokenError as exc:
            state.changed()
            return _error(exc.error, exc.description, exc.status)
        state.changed()
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


def _redeem_code(state, client: dict, variant: str, now: float, iss: str) -> dict:
    form = request.form
    code, redirect_uri, verifier = form.get("code"), form.get("redirect_uri"), form.get("code_verifier")
    if not code or not redirect_uri or not verifier:
        raise tokens.TokenError("invalid_request", "code, redirect_uri and code_verifier are required.")
    record = state.data["auth_codes"].get(code)
    if not record or record["client_id"] != client["client_id"] or record["variant"] != variant:
        raise tokens.TokenError("invalid_grant", "Unknown authorization code.")
    if record["used"]:
        if record["grant_id"]:
            tokens.revoke_grant(state, record["grant_id"])
        raise tokens.TokenError("invalid_grant", "Authorization code already used.")
    record["used"] = True
    if now >= record["expires_at"]:
        raise tokens.TokenError("invalid_grant", "Authorization code expired.")
    if redirect_uri != record["redirect_uri"]:
        raise tokens.TokenError("invalid_grant", "redirect_uri does not match the authorization request.")
    if not _pkce_matches(verifier, record["code_challenge"]):
        raise tokens.TokenError("invalid_grant", "code_verifier does not match the code_challenge.")
    grant = tokens.create_grant(state, record, now)
    record["grant_id"] = grant["id"]
    return tokens.issue_tokens(state, grant, now, iss)


def revoke(variant: str):
    state = emulator_state()
    with state.lock:
        client = _basic_client(state)
        if not client:
            return _error("invalid_client", "Client authentication failed (HTTP Basic required).", 401)
        value, hint = request.form.get("token"), request.form.get("token_type_hint")
        if not value or hint not in ("access_token", "refresh_token"):
            return _error("invalid_request", "token and token_type_hint (access_token|refresh_token) are required.")
        revoked = False
        refresh_record = state.data["refresh_tokens"].get(value)
        access_record = state.data["access_tokens"].get(value)
        for record, kills_grant in ((refresh_record, True), (access_record, False)):
            grant = state.data["grants"].get(record["grant_id"]) if record else None
            if not grant or grant["client_id"] != client["client_id"]:
                continue
            if kills_grant:
                revoked = tokens.revoke_grant(state, grant["id"]) or revoked
            elif not record["revoked"]:
                record["revoked"] = revoked = True
        if revoked:
            state.count("revocations")
            state.changed()
    return Response("", status=200)


def _bearer_grant(state, variant: str):
    auth = request.headers.get("Authorization", "")
    value = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    found = tokens.valid_access_token(state, value, state.clock.now())
    if not found or found[1]["variant"] != variant:
        return None
    return found[1]


def userinfo(variant: str):
    state = emulator_state()
    with state.lock:
        grant = _bearer_grant(state, variant)
        if not grant:
            response = jsonify({"error": "invalid_token"})
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return response
        person = state.data["persons"][grant["person_id"]]
        scope = grant["scope"]
    body = {"sub": tokens.pairwise_sub(grant["client_id"], grant["person_id"])}
    if "profile" in scope:
        body.update({k: person[k] for k in ("name", "given_name", "family_name")})
    if "email" in scope:
        body["email"] = person["email"]
    if "account_id" in scope:
        body["account_id"] = person["account_id"]
    return jsonify(body)


def certs(variant: str):
    return jsonify(public_jwks(emulator_state().data["signing_key"]))


def endsession(variant: str):
    return Response("Sie wurden abgemeldet.", status=200, mimetype="text/plain")


def introspect(variant: str):
    state = emulator_state()
    with state.lock:
        client = _basic_client(state)
        if not client:
            return _error("invalid_client", "Client authentication failed (HTTP Basic required).", 401)
        value, now = request.form.get("token", ""), state.clock.now()
        record = state.data["access_tokens"].get(value) or state.data["refresh_tokens"].get(value)
        grant = state.data["grants"].get(record["grant_id"]) if record else None
        active = bool(grant and not grant["revoked"] and not record["revoked"] and now < record["expires_at"]
                      and grant["client_id"] == client["client_id"] and not record.get("used_at"))
        if not active:
            return jsonify({"active": False})
        assert record is not None and grant is not None  # active implies both
        return jsonify({"active": True, "exp": int(record["expires_at"]), "scope": " ".join(grant["scope"]),
                        "client_id": grant["client_id"], "token_type": "Bearer"})


for _variant, _paths in VARIANTS.items():
    _api = _paths["api"]
    _defaults = {"variant": _variant}
    for _name, _view, _methods in (
        ("token", token, ["POST"]), ("revoke", revoke, ["POST"]), ("userinfo", userinfo, ["GET", "POST"]),
        ("certs", certs, ["GET"]), ("endsession", endsession, ["GET"]), ("introspect", introspect, ["POST"]),
    ):
        bp.add_url_rule(f"{_api}/{_name}", f"{_name}_{_variant}", _view, defaults=_defaults, methods=_methods)
