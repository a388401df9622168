"""Login mit DATEV /authorize: every rejection, login methods, consent, deny, missing rights."""

from __future__ import annotations

import pytest
import requests

from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer
from tests.support.emulator_client import REDIRECT, authorize_params, hidden, login_and_consent, query_of


def _authorize(base: str, variant: str = "production", **overrides) -> requests.Response:
    params = {k: v for k, v in authorize_params(**overrides).items() if not k.startswith("_") and v is not None}
    login = "/openid" if variant == "production" else "/openidsandbox"
    return requests.get(base + login + "/authorize", params=params, allow_redirects=False, timeout=5)


@pytest.mark.parametrize("overrides", [{"client_id": "unknown-app"}, {"redirect_uri": "http://localhost:8501/other"},
                                       {"redirect_uri": None}])
def test_untrusted_client_or_redirect_gives_error_page(base, overrides) -> None:
    response = _authorize(base, **overrides)
    assert response.status_code == 400 and "Location" not in response.headers
    assert 'data-testid="authorize-error"' in response.text


def test_production_refuses_datev_host_and_plain_http(base) -> None:
    bad = ["https://datev.example.com/cb", "http://app.example.com/cb", "https://10.0.0.1/cb"]
    requests.post(base + "/_admin/datev/clients", json={"redirect_uris": bad}, timeout=5)
    for uri in bad:
        assert _authorize(base, redirect_uri=uri).status_code == 400
    requests.post(base + "/_admin/datev/clients", json={"redirect_uris": ["https://app.example.com/cb"]}, timeout=5)
    assert _authorize(base, redirect_uri="https://app.example.com/cb").status_code == 200


@pytest.mark.parametrize(("overrides", "error"), [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": "profile accounting:documents"}, "invalid_scope"),
    ({"state": "too-short"}, "invalid_request"),
    ({"nonce": None}, "invalid_request"),
    ({"nonce": "short-nonce"}, "invalid_request"),
    ({"code_challenge": None}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"scope": "openid offline_access"}, "invalid_scope"),
    ({"scope": "openid offline_access datev:iam:client:455148-1 datev:iam:client:455148-2"}, "invalid_scope"),
])
def test_invalid_request_redirects_with_error_and_state(base, overrides, error) -> None:
    response = _authorize(base, **overrides)
    assert response.status_code == 302
    query = query_of(response)
    assert query["error"] == error and query["error_description"]
    assert query.get("state") == overrides.get("state", query.get("state"))


def test_sandbox_accepts_any_localhost_port_and_path(base) -> None:
    assert _authorize(base, "sandbox", redirect_uri="http://localhost:1234/any/path").status_code == 200
    assert _authorize(base, "production", redirect_uri="http://localhost:1234/any/path").status_code == 400


def test_loopback_http_on_production_can_be_switched_off() -> None:
    with EmulatorServer(EmulatorConfig(allow_loopback_http_redirects=False)) as emu:
        assert _authorize(emu.base_url, redirect_uri=REDIRECT).status_code == 400


def test_login_page_methods(base) -> None:
    with_sso = _authorize(base).text
    assert 'id="method-smartlogin"' in with_sso and 'id="method-windowssso"' in with_sso
    assert 'id="method-benutzerkonto"' not in with_sso and "Anmeldeverfahren merken" in with_sso
    assert 'id="method-windowssso"' not in _authorize(base, enableWindowsSso=None).text
    assert 'id="method-benutzerkonto"' in _authorize(base, "sandbox").text


def test_sandbox_account_login_and_consent_lists_long_term_access(base) -> None:
    page = _authorize(base, "sandbox")
    pending = hidden(page.text, "pending")
    wrong = requests.post(base + "/openidsandbox/authorize/login", timeout=5,
                          data={"pending": pending, "method": "benutzerkonto", "username": "max", "password": "x"})
    assert 'data-testid="login-error"' in wrong.text
    consent = requests.post(base + "/openidsandbox/authorize/login", timeout=5,
                            data={"pending": pending, "method": "benutzerkonto", "username": "max",
                                  "password": "demo"})
    assert "Max Mustermann" in consent.text
    assert "Dauerhaften Zugriff erlauben (Langzeittoken)" in consent.text and 'id="consent-deny"' in consent.text


def test_deny_gives_access_denied(base) -> None:
    params = authorize_params()
    query = query_of(login_and_consent(base, params, decision="deny"))
    assert query["error"] == "access_denied" and query["state"] == params["state"]


def test_person_without_rights_on_bound_client_gets_access_denied(base) -> None:
    params = authorize_params(scope="openid offline_access datev:iam:client:455148-2")
    query = query_of(login_and_consent(base, params, person="erika"))
    assert query["error"] == "access_denied"


def test_success_redirects_with_code_and_state(base) -> None:
    params = authorize_params()
    response = login_and_consent(base, params)
    assert response.status_code == 302 and response.headers["Location"].startswith(REDIRECT + "?")
    query = query_of(response)
    assert query["code"] and query["state"] == params["state"]
