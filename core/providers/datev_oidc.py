"""HTTP side of "Login mit DATEV": discovery, authorization URL, code exchange, refresh, revoke,
userinfo, ID-token check. No database state here except the HTTP log.

requests-oauthlib as docs/style.md §3.3 prescribes: our own PKCE pair (no `pkce=` flag), client
authentication by HTTP Basic only, no `auto_refresh_url`. Every answer is sorted into:
- `ProviderRejected`: the provider said no (e.g. `invalid_grant`); `error` says why;
- `ProviderUnavailable`: timeout, dropped connection, 429 or 5xx: the outcome is unknown or
  temporary, and never a reason to mark a connection invalid.
Messages never contain a token, a code or a secret.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from oauthlib.oauth2.rfc6749.errors import OAuth2Error
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session
from sqlalchemy import Engine

from core.platform.config import Settings, is_loopback_url
from core.providers.errors import ProviderError
from core.providers.http import CallContext, guard, never_sent, new_session, recorded, send

DISCOVERY_TTL_SECONDS = 3600


class ProviderRejected(ProviderError):
    """The provider answered with an OAuth error (400/401). Safe to show: no secrets inside."""

    def __init__(self, error: str, description: str = "", status: int | None = None) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error, self.description, self.status = error, description, status


class ProviderUnavailable(ProviderError):
    """Timeout, dropped connection, 429 or 5xx: try again later; says nothing about the token.

    `ambiguous`: the request may have reached the provider and been processed (a timeout after
    sending, a dropped connection, a 5xx). A refresh like that may have rotated the token: it must be
    reconciled, never simply repeated (core.connections.access).
    """

    def __init__(self, message: str, status: int | None = None, retry_after: str | None = None, *,
                 ambiguous: bool = False) -> None:
        super().__init__(message)
        self.status, self.retry_after, self.ambiguous = status, retry_after, ambiguous


def unavailable(what: str, exc: requests.RequestException) -> ProviderUnavailable:
    """The transport failed: ambiguous unless the request certainly never left this machine."""
    return ProviderUnavailable(f"{what} ({type(exc).__name__})", ambiguous=not never_sent(exc))


@dataclass(frozen=True)
class DatevEndpoints:
    issuer: str
    authorization: str
    token: str
    revocation: str
    userinfo: str
    jwks: str


@dataclass(frozen=True)
class TokenResponse:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: int
    refresh_expires_in: int | None
    scope: str
    id_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenResponse:
        scope = data.get("scope", "")
        return cls(
            access_token=data["access_token"],
            refresh_token=data.get("refresh_token"),
            expires_in=int(data.get("expires_in") or 900),
            refresh_expires_in=int(data["refresh_token_expires_in"]) if data.get("refresh_token_expires_in") else None,
            scope=" ".join(scope) if isinstance(scope, list) else str(scope),
            id_token=data.get("id_token"),
        )


_discovery_cache: dict[str, tuple[float, DatevEndpoints]] = {}
_discovery_lock = threading.Lock()


def _allow_loopback_http(url: str) -> None:
    """oauthlib refuses http://; the settings already refuse plain HTTP beyond loopback hosts."""
    if url.startswith("http://") and is_loopback_url(url):
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"


def _raise_for_transport(response: requests.Response) -> None:
    if response.status_code == 429 or response.status_code >= 500:  # a 5xx may have done the work; a 429 did not
        raise ProviderUnavailable(f"HTTP {response.status_code}", response.status_code,
                                  response.headers.get("Retry-After"), ambiguous=response.status_code >= 500)


def _json_object(response: requests.Response, what: str) -> dict[str, Any]:
    """The body as a JSON object; anything else (HTML, text, a list) is refused."""
    try:
        data = response.json()
    except ValueError:
        raise ProviderRejected("invalid_response", f"{what}: keine JSON-Antwort") from None
    if not isinstance(data, dict):
        raise ProviderRejected("invalid_response", f"{what}: unerwartete Antwort")
    return data


def _oauth_error(response: requests.Response) -> ProviderRejected:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ProviderRejected(str(body.get("error") or f"http_{response.status_code}"),
                            str(body.get("error_description") or "")[:300], response.status_code)


def discover(engine: Engine, settings: Settings) -> DatevEndpoints:
    """The DATEV endpoints from the discovery document (cached per process for an hour)."""
    url = settings.datev_discovery
    with _discovery_lock:
        cached = _discovery_cache.get(url)
        if cached and time.monotonic() - cached[0] < DISCOVERY_TTL_SECONDS:
            return cached[1]
    ctx = CallContext(provider="datev", purpose="discovery")
    try:
        with new_session(settings) as session:
            response = send(engine, ctx, session, "GET", url, timeout=settings.http_timeout)
    except requests.RequestException as exc:
        raise unavailable("DATEV-Anmeldedienst nicht erreichbar", exc) from None
    _raise_for_transport(response)
    if response.status_code != 200:
        raise ProviderUnavailable(f"Discovery-Dokument: HTTP {response.status_code}", response.status_code)
    try:
        doc = _json_object(response, "Discovery-Dokument")
        endpoints = DatevEndpoints(
            issuer=str(doc["issuer"]), authorization=str(doc["authorization_endpoint"]),
            token=str(doc["token_endpoint"]), revocation=str(doc.get("revocation_endpoint", "")),
            userinfo=str(doc.get("userinfo_endpoint", "")), jwks=str(doc.get("jwks_uri", "")),
        )
    except (ProviderRejected, KeyError):
        raise ProviderUnavailable("Discovery-Dokument unlesbar (kein gültiges JSON mit den Endpunkten)") from None
    with _discovery_lock:
        _discovery_cache[url] = (time.monotonic(), endpoints)
    return endpoints


def clear_discovery_cache() -> None:
    with _discovery_lock:
        _discovery_cache.clear()


def authorization_url(endpoints: DatevEndpoints, settings: Settings, *, scopes: list[str], state: str, nonce: str,
                      code_challenge: str, offline: bool, redirect_uri: str | None = None) -> str:
    _allow_loopback_http(endpoints.authorization)
    session = OAuth2Session(settings.datev_client_id, redirect_uri=redirect_uri or settings.datev_callback_uri,
                            scope=scopes, state=state)
    extra: dict[str, str] = {"nonce": nonce, "code_challenge": code_challenge, "code_challenge_method": "S256"}
    if settings.datev_enable_windows_sso:
        extra["enableWindowsSso"] = "true"
    if offline and settings.datev_prompt_consent:
        extra["prompt"] = "consent"
    url, _state = session.authorization_url(endpoints.authorization, **extra)
    return url


def _token_call(engine: Engine, ctx: CallContext, endpoints: DatevEndpoints, settings: Settings,
                hook_name: Literal["access_token_response", "refresh_token_response"], call: str,
                redirect_uri: str | None = None, **kwargs: Any) -> TokenResponse:
    _allow_loopback_http(endpoints.token)
    session = guard(OAuth2Session(settings.datev_client_id, redirect_uri=redirect_uri or settings.datev_callback_uri),
                    settings)
    checked: dict[str, requests.Response] = {}

    def inspect(response: requests.Response) -> requests.Response:
        checked["response"] = response
        _raise_for_transport(response)
        if response.status_code != 200:
            raise _oauth_error(response)
        return response

    session.register_compliance_hook(hook_name, inspect)
    auth = HTTPBasicAuth(settings.datev_client_id, settings.datev_client_secret)
    try:
        with recorded(engine, ctx, session, "POST", endpoints.token):
            token = getattr(session, call)(endpoints.token, auth=auth, timeout=settings.http_timeout, **kwargs)
    except (ProviderRejected, ProviderUnavailable):
        raise
    except requests.RequestException as exc:
        raise unavailable("keine Antwort vom DATEV-Tokendienst", exc) from None
    except OAuth2Error as exc:
        raise ProviderRejected(exc.error or "oauth_error", (exc.description or "")[:300], exc.status_code) from None
    except (ValueError, KeyError, TypeError) as exc:
        # A 200 whose body we cannot read: the provider did the work (a refresh rotated the token), the
        # answer is lost. Ambiguous, not a refusal.
        raise ProviderUnavailable(f"unlesbare Antwort vom DATEV-Tokendienst ({type(exc).__name__})",
                                  ambiguous=True) from None
    try:
        return TokenResponse.from_json(dict(token))
    except (ValueError, KeyError, TypeError) as exc:
        raise ProviderUnavailable(f"unvollständige Antwort vom DATEV-Tokendienst ({type(exc).__name__})",
                                  ambiguous=True) from None


def exchange_code(engine: Engine, ctx: CallContext, endpoints: DatevEndpoints, settings: Settings, *, code: str,
                  code_verifier: str, redirect_uri: str | None = None) -> TokenResponse:
    """The code for tokens; `redirect_uri` must be the one of the authorization request (default: the callback)."""
    return _token_call(engine, ctx, endpoints, settings, "access_token_response", "fetch_token", redirect_uri,
                       code=code, code_verifier=code_verifier, include_client_id=False)


def refresh(engine: Engine, ctx: CallContext, endpoints: DatevEndpoints, settings: Settings, *,
            refresh_token: str) -> TokenResponse:
    return _token_call(engine, ctx, endpoints, settings, "refresh_token_response", "refresh_token",
                       refresh_token=refresh_token)


def revoke(engine: Engine, ctx: CallContext, endpoints: DatevEndpoints, settings: Settings, *, token: str,
           hint: str = "refresh_token") -> None:
    """RFC 7009 revoke with Basic auth and the type hint DATEV treats as mandatory."""
    if not endpoints.revocation:
        raise ProviderUnavailable("DATEV nennt keinen Widerrufsendpunkt")
    try:
        with new_session(settings) as session:
            response = send(engine, ctx, session, "POST", endpoints.revocation,
                            data={"token": token, "token_type_hint": hint},
                            auth=HTTPBasicAuth(settings.datev_client_id, settings.datev_client_secret),
                            timeout=settings.http_timeout)
    except requests.RequestException as exc:
        raise unavailable("keine Antwort vom DATEV-Widerrufsdienst", exc) from None
    _raise_for_transport(response)
    if response.status_code != 200:
        raise _oauth_error(response)


def userinfo(engine: Engine, ctx: CallContext, endpoints: DatevEndpoints, settings: Settings, *,
             access_token: str) -> dict[str, Any]:
    try:
        with new_session(settings) as session:
            response = send(engine, ctx, session, "GET", endpoints.userinfo,
                            headers={"Authorization": f"Bearer {access_token}"}, timeout=settings.http_timeout)
    except requests.RequestException as exc:
        raise unavailable("UserInfo nicht erreichbar", exc) from None
    _raise_for_transport(response)
    if response.status_code != 200:
        raise _oauth_error(response)
    return _json_object(response, "UserInfo")


def verify_id_token(engine: Engine, ctx: CallContext, endpoints: DatevEndpoints, settings: Settings, *,
                    id_token: str, nonce: str) -> dict[str, Any]:
    """Check signature (JWKS), issuer, audience, expiry and our nonce; with several audiences the
    authorized party (`azp`) must be us (OIDC Core §3.1.3.7). Raises ProviderRejected."""
    try:
        with new_session(settings) as session:
            response = send(engine, ctx, session, "GET", endpoints.jwks, timeout=settings.http_timeout)
    except requests.RequestException as exc:
        raise unavailable("JWKS nicht erreichbar", exc) from None
    _raise_for_transport(response)
    try:
        token = jwt.decode(id_token, KeySet.import_key_set(response.json()), algorithms=["RS256"])
        jwt.JWTClaimsRegistry(
            leeway=120,
            iss={"essential": True, "value": endpoints.issuer},
            aud={"essential": True, "value": settings.datev_client_id},
            nonce={"essential": True, "value": nonce},
            exp={"essential": True},
        ).validate(token.claims)
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise ProviderRejected("invalid_id_token", type(exc).__name__) from None
    claims = dict(token.claims)
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != settings.datev_client_id:
        raise ProviderRejected("invalid_id_token", "azp")
    return claims
