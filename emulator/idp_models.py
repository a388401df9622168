"""Client and authorization-code objects for the dashboard IdP, as Authlib's mixins expect them."""

from __future__ import annotations

import re

from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oidc.core import AuthorizationCodeMixin

SCOPES = ("openid", "profile", "email")
LOOPBACK_CALLBACK = re.compile(r"^http://(localhost|127\.0\.0\.1)(:\d{1,5})?/oauth2callback$")


class DashboardClient(ClientMixin):
    def __init__(self, client_id: str, secret: str, extra_redirect_uris: tuple[str, ...]) -> None:
        self.client_id, self.secret, self.extra = client_id, secret, extra_redirect_uris

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri):
        return bool(LOOPBACK_CALLBACK.match(redirect_uri)) or redirect_uri in self.extra

    def check_client_secret(self, client_secret):
        return client_secret == self.secret

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


class DashboardCode(AuthorizationCodeMixin):
    def __init__(self, record: dict) -> None:
        self.record = record
        self.code_challenge = record.get("code_challenge")
        self.code_challenge_method = record.get("code_challenge_method")

    def get_redirect_uri(self):
        return self.record["redirect_uri"]

    def get_scope(self):
        return self.record["scope"]

    def get_nonce(self):
        return self.record.get("nonce")

    def get_auth_time(self):
        return int(self.record["auth_time"])

    def get_acr(self):
        return None

    def get_amr(self):
        return None
