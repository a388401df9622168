"""Dashboard sign-in IdP (/idp): OIDC code flow with PKCE, driven by Authlib's requests client."""

from __future__ import annotations

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

CALLBACK = "http://localhost:8599/oauth2callback"


def _session() -> OAuth2Session:
    return OAuth2Session("token-desk-dashboard", "demo-dashboard-secret", scope="openid profile email",
                         redirect_uri=CALLBACK, code_challenge_method="S256")


def test_discovery_document(base) -> None:
    meta = requests.get(base + "/idp/.well-known/openid-configuration", timeout=5).json()
    assert meta["issuer"] == base + "/idp"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "client_secret_post"]
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]


def test_full_code_flow_with_pkce_and_verified_id_token(base, monkeypatch) -> None:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    meta = requests.get(base + "/idp/.well-known/openid-configuration", timeout=5).json()
    client, verifier, nonce = _session(), generate_token(48), generate_token(24)
    url, _ = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                             nonce=nonce, prompt="select_account")
    login_page = requests.get(url, timeout=5)
    assert 'data-testid="login-admin"' in login_page.text and "Norbert Ohnerolle" in login_page.text
    chosen = requests.post(url, data={"user": "admin"}, allow_redirects=False, timeout=5)
    assert chosen.status_code == 302 and chosen.headers["Location"].startswith(CALLBACK)
    token = client.fetch_token(meta["token_endpoint"], authorization_response=chosen.headers["Location"],
                               code_verifier=verifier)
    keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=5).json())
    claims = jwt.decode(token["id_token"], keys).claims
    assert claims["iss"] == base + "/idp" and claims["aud"] == "token-desk-dashboard"
    assert claims["sub"] == "demo-admin" and claims["nonce"] == nonce
    assert claims["email"] == "admin@tokendesk.demo" and claims["email_verified"] is True
    assert claims["name"] == "Anna Admin" and claims["exp"] > claims["iat"]
    info = client.get(meta["userinfo_endpoint"], timeout=5).json()
    assert info["sub"] == "demo-admin" and info["email"] == "admin@tokendesk.demo"


def test_wrong_verifier_is_rejected(base, monkeypatch) -> None:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    client = _session()
    url, _ = client.create_authorization_url(base + "/idp/authorize", code_verifier=generate_token(48),
                                             nonce=generate_token(24))
    location = requests.post(url, data={"user": "viewer"}, allow_redirects=False, timeout=5).headers["Location"]
    code = location.split("code=")[1].split("&")[0]
    response = requests.post(base + "/idp/token", auth=("token-desk-dashboard", "demo-dashboard-secret"), timeout=5,
                             data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
                                   "code_verifier": generate_token(48)})
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_pkce_is_required_and_foreign_redirect_refused(base) -> None:
    params = {"response_type": "code", "client_id": "token-desk-dashboard", "redirect_uri": CALLBACK,
              "scope": "openid", "state": "s" * 20}
    no_pkce = requests.get(base + "/idp/authorize", params=params, allow_redirects=False, timeout=5)
    assert no_pkce.status_code == 302 and "error=invalid_request" in no_pkce.headers["Location"]
    foreign = dict(params, redirect_uri="https://evil.example/oauth2callback", code_challenge="a" * 43,
                   code_challenge_method="S256")
    refused = requests.get(base + "/idp/authorize", params=foreign, allow_redirects=False, timeout=5)
    assert refused.status_code == 400 and "Location" not in refused.headers
