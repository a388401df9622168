"""OpenID Connect provider for the dashboard's own sign-in (st.login), built on Authlib (/idp)."""

from __future__ import annotations

import time

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Blueprint, current_app, jsonify, request

from .context import emulator_state
from .demo_data import DASHBOARD_USERS
from .html import page
from .idp_models import SCOPES, DashboardClient, DashboardCode
from .signing import load_key, public_jwks
from .variants import base_url

bp = Blueprint("idp", __name__, url_prefix="/idp")
SERVER_KEY = "token_desk_idp_server"
CODE_TTL = 300


def _issuer() -> str:
    return base_url(emulator_state().config) + "/idp"


def _user_by_sub(sub: str) -> dict | None:
    return next((u for u in DASHBOARD_USERS.values() if u["sub"] == sub), None)


def _user_info(user: dict, scope: str) -> UserInfo:
    info = UserInfo(sub=user["sub"])
    if "profile" in scope.split():
        info["name"] = user["name"]
    if "email" in scope.split():
        info.update(email=user["email"], email_verified=True)
    return info


def _require_pkce(grant, redirect_uri):
    if grant.request.payload.data.get("code_challenge_method") != "S256":
        raise InvalidRequestError("PKCE with code_challenge_method=S256 is required.")


class DashboardCodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def __init__(self, request, server):
        super().__init__(request, server)
        self.register_hook("after_validate_authorization_request_payload", _require_pkce)

    def save_authorization_code(self, code, request):
        state, data = emulator_state(), request.payload.data
        with state.lock:
            state.data["idp_codes"][code] = {
                "client_id": request.client.get_client_id(), "redirect_uri": request.payload.redirect_uri,
                "scope": request.scope, "sub": request.user["sub"], "nonce": data.get("nonce"),
                "code_challenge": data.get("code_challenge"),
                "code_challenge_method": data.get("code_challenge_method"),
                "auth_time": time.time(), "expires_at": state.clock.now() + CODE_TTL,
            }
            state.changed()

    def query_authorization_code(self, code, client):
        state = emulator_state()
        with state.lock:
            record = state.data["idp_codes"].get(code)
        if record and record["client_id"] == client.get_client_id() and state.clock.now() < record["expires_at"]:
            return DashboardCode(dict(record, code=code))
        return None

    def delete_authorization_code(self, authorization_code):
        state = emulator_state()
        with state.lock:
            state.data["idp_codes"].pop(authorization_code.record["code"], None)
            state.changed()

    def authenticate_user(self, authorization_code):
        return _user_by_sub(authorization_code.record["sub"])


class DashboardOpenIDCode(OpenIDCode):
    def exists_nonce(self, nonce, request):
        return False

    def resolve_client_private_key(self, client):
        return load_key(emulator_state().data["signing_key"])

    def get_encode_header(self, client):
        return {"alg": "RS256", "kid": emulator_state().data["signing_key"]["kid"]}

    def get_client_claims(self, client):
        return {"iss": _issuer(), "aud": client.get_client_id()}

    def generate_user_info(self, user, scope):
        return _user_info(user, scope)


def create_server(app, config) -> AuthorizationServer:
    client = DashboardClient(config.idp_client_id, config.idp_client_secret, config.idp_extra_redirect_uris)

    def query_client(client_id):
        return client if client_id == client.client_id else None

    def save_token(token, oauth_request):
        state = emulator_state()
        with state.lock:
            state.data["idp_tokens"][token["access_token"]] = {
                "sub": oauth_request.user["sub"], "scope": token.get("scope", ""),
                "expires_at": state.clock.now() + token.get("expires_in", 3600),
            }
            state.changed()

    server = AuthorizationServer(app, query_client=query_client, save_token=save_token)
    server.register_grant(DashboardCodeGrant, [DashboardOpenIDCode(require_nonce=False), CodeChallenge(required=True)])
    app.extensions[SERVER_KEY] = server
    return server


LOGIN = """
<h2>Anmeldung bei Token Desk (Demo)</h2>
<p>Wählen Sie einen Demo-Benutzer. Ein Passwort ist nicht nötig.</p>
<form method="post" action="{{ action }}">
{% for key, user in users.items() %}
<p><button type="submit" name="user" value="{{ key }}" id="login-{{ key }}" data-testid="login-{{ key }}">
{{ user.name }} ({{ user.email }})</button></p>
{% endfor %}
</form>
"""


@bp.get("/.well-known/openid-configuration")
def discovery():
    iss = _issuer()
    return jsonify({
        "issuer": iss, "authorization_endpoint": f"{iss}/authorize", "token_endpoint": f"{iss}/token",
        "userinfo_endpoint": f"{iss}/userinfo", "jwks_uri": f"{iss}/jwks",
        "scopes_supported": list(SCOPES), "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"], "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "claims_supported": ["sub", "email", "email_verified", "name", "nonce", "aud", "iss", "iat", "exp"],
    })


@bp.route("/authorize", methods=["GET", "POST"])
def authorize():
    server = current_app.extensions[SERVER_KEY]
    user = DASHBOARD_USERS.get(request.form.get("user", "")) if request.method == "POST" else None
    try:
        grant = server.get_consent_grant(end_user=user)
    except OAuth2Error as error:
        return server.handle_error_response(None, error)
    if user is None:
        return page("Anmeldung", LOGIN, header="Token Desk – Demo-Anmeldung", color="1f4e79",
                    users=DASHBOARD_USERS, action=request.full_path)
    return server.create_authorization_response(grant_user=user, grant=grant)


@bp.post("/token")
def token():
    return current_app.extensions[SERVER_KEY].create_token_response()


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo():
    state = emulator_state()
    auth = request.headers.get("Authorization", "")
    value = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    with state.lock:
        record = state.data["idp_tokens"].get(value)
    user = _user_by_sub(record["sub"]) if record and state.clock.now() < record["expires_at"] else None
    if not user:
        return jsonify({"error": "invalid_token"}), 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    return jsonify(dict(_user_info(user, record["scope"])))


@bp.get("/jwks")
def jwks():
    return jsonify(public_jwks(emulator_state().data["signing_key"]))
