"""Validation of DATEV authorization requests (contract §7.1), independent of Flask."""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:
    from .config import EmulatorConfig

IAM_SCOPE = re.compile(r"^datev:iam:client:\d+-\d+$")


class PageError(Exception):
    """Shown as an error page: client_id or redirect_uri cannot be trusted."""


class RedirectError(Exception):
    def __init__(self, redirect_uri: str, error: str, description: str, state: str | None) -> None:
        super().__init__(description)
        self.redirect_uri, self.error, self.description, self.state = redirect_uri, error, description, state

    def location(self) -> str:
        params = {"error": self.error, "error_description": self.description}
        if self.state:
            params["state"] = self.state
        return with_query(self.redirect_uri, params)


def with_query(uri: str, params: dict) -> str:
    return uri + ("&" if "?" in uri else "?") + urlencode(params)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def redirect_allowed(config: EmulatorConfig, client: dict, variant: str, uri: str) -> bool:
    parts = urlsplit(uri)
    host = (parts.hostname or "").lower()
    loopback_http = parts.scheme == "http" and host in ("localhost", "127.0.0.1")
    registered = client["redirect_uris"]
    if variant == "sandbox" and parts.scheme == "http" and host == "localhost":
        # DATEV sandbox: a registered http://localhost URL matches any port and path.
        if any(urlsplit(r).scheme == "http" and urlsplit(r).hostname == "localhost" for r in registered):
            return True
    if uri not in registered:
        return False
    if loopback_http:
        return config.allow_loopback_http_redirects
    if variant == "production":
        return parts.scheme == "https" and "datev" not in host and not _is_ip(host)
    return parts.scheme == "https"


# What a plain OpenID Connect provider configured for this app knows (the "standard" profile drops the rest).
KNOWN_SCOPES = frozenset({"openid", "profile", "email", "offline_access", "account_id", "accounting:documents",
                          "accounting:clients:read", "datev:accounting:clients"})


def granted_scopes(config, scopes: list[str], iam_scopes: list[str]) -> tuple[list[str], list[str]]:
    """The scopes the provider grants (and its client scopes), per `client_scope_grant` and the profile."""
    others = [s for s in scopes if s not in iam_scopes]
    if config.idp_profile == "standard":
        others = [s for s in others if s in KNOWN_SCOPES]  # unknown scopes are silently dropped
    if not iam_scopes or config.client_scope_grant == "drop":
        return others, []
    if config.client_scope_grant == "other":
        iam_scopes = [f"datev:iam:client:{config.client_scope_other}"]
    return others + iam_scopes, iam_scopes


def validate(config, clients: dict, variant: str, args) -> dict:
    """Return the pending authorization built from the request, or raise PageError / RedirectError."""
    client = clients.get(args.get("client_id", ""))
    if not client:
        raise PageError("Unbekannte Anwendung (client_id).")
    redirect_uri = args.get("redirect_uri", "")
    if not redirect_uri or not redirect_allowed(config, client, variant, redirect_uri):
        raise PageError("Die Weiterleitungsadresse (redirect_uri) ist für diese Anwendung nicht registriert.")
    state = args.get("state")

    def fail(error: str, description: str):
        raise RedirectError(redirect_uri, error, description, state)

    if args.get("response_type") != "code":
        fail("unsupported_response_type", "response_type must be 'code'.")
    scopes = args.get("scope", "").split()
    if "openid" not in scopes:
        fail("invalid_scope", "scope must contain 'openid'.")
    if not state or len(state) < 20:
        fail("invalid_request", "state is required and must have at least 20 characters.")
    nonce = args.get("nonce", "")
    if len(nonce) < 20:
        fail("invalid_request", "nonce is required and must have at least 20 characters.")
    challenge, method = args.get("code_challenge", ""), args.get("code_challenge_method", "")
    if not challenge or method != "S256":
        fail("invalid_request", "PKCE with code_challenge_method=S256 is required.")
    iam_scopes = [s for s in scopes if IAM_SCOPE.match(s)]
    offline_requested = "offline_access" in scopes
    standard = config.idp_profile == "standard"
    if len(iam_scopes) > 1 and not standard:
        fail("invalid_scope", "At most one datev:iam:client scope is allowed.")
    if offline_requested and not iam_scopes and not standard:
        fail("invalid_scope", "offline_access requires exactly one datev:iam:client:<consultant>-<client> scope.")
    consent_prompt = "consent" in args.get("prompt", "").split()
    offline = offline_requested and (consent_prompt or config.offline_without_consent == "accept")
    if offline_requested and not offline:
        scopes = [s for s in scopes if s != "offline_access"]  # OIDC §11: ignore the request
    scopes, iam_scopes = granted_scopes(config, scopes, iam_scopes)
    return {
        "variant": variant, "client_id": client["client_id"], "client_name": client.get("name", ""),
        "redirect_uri": redirect_uri, "scope": scopes, "offline": offline,
        "bound_client": iam_scopes[0].rsplit(":", 1)[1] if iam_scopes else None,
        "state": state, "nonce": nonce, "code_challenge": challenge,
        "windows_sso": args.get("enableWindowsSso", "").lower() == "true",
    }
