"""Login mit DATEV token endpoint: exchange, lifetimes, rotation, reuse detection, revoke, userinfo."""

from __future__ import annotations

import threading

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer
from tests.support.emulator_client import (
    DATEV_ID,
    DATEV_SECRET,
    authorize_params,
    connect,
    exchange,
    login_and_consent,
    query_of,
    refresh,
    set_clock,
    stats,
    token_url,
)

ONLINE_SCOPE = "openid profile email account_id accounting:documents accounting:clients:read"


def _userinfo(base: str, access_token: str) -> requests.Response:
    return requests.get(token_url(base, endpoint="userinfo"), timeout=5,
                        headers={"Authorization": f"Bearer {access_token}"})


def test_offline_flow_issues_bound_two_year_token_with_verified_id_token(base) -> None:
    params = authorize_params()
    code = query_of(login_and_consent(base, params))["code"]
    body = exchange(base, params, code).json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert "offline_access" in body["scope"].split() and "datev:iam:client:455148-1" in body["scope"].split()
    assert abs(body["refresh_token_expires_in"] - 63072000) <= 5
    keys = KeySet.import_key_set(requests.get(token_url(base, endpoint="certs"), timeout=5).json())
    claims = jwt.decode(body["id_token"], keys).claims
    assert claims["iss"] == base + "/openid" and claims["aud"] == DATEV_ID
    assert claims["nonce"] == params["nonce"] and claims["name"] == "Max Mustermann"
    grants = requests.get(base + "/_admin/datev/grants", timeout=5).json()
    assert grants[0]["bound_client"] == "455148-1" and grants[0]["offline"] is True


def test_offline_without_prompt_consent_is_ignored() -> None:
    with EmulatorServer() as emu:
        body = connect(emu.base_url, prompt=None)
        assert "offline_access" not in body["scope"].split()
        assert abs(body["refresh_token_expires_in"] - 39600) <= 5
    with EmulatorServer(EmulatorConfig(offline_without_consent="accept")) as emu:
        body = connect(emu.base_url, prompt=None)
        assert "offline_access" in body["scope"].split()


def test_code_is_single_use_and_checked(base) -> None:
    params = authorize_params()
    code = query_of(login_and_consent(base, params))["code"]
    wrong_verifier = dict(params, _verifier="x" * 50)
    assert exchange(base, wrong_verifier, code).json()["error"] == "invalid_grant"
    params2 = authorize_params()
    code2 = query_of(login_and_consent(base, params2))["code"]
    assert exchange(base, dict(params2, redirect_uri="http://localhost:1/x"), code2).json()["error"] == "invalid_grant"
    params3 = authorize_params()
    code3 = query_of(login_and_consent(base, params3))["code"]
    assert exchange(base, params3, code3).status_code == 200
    assert exchange(base, params3, code3).json()["error"] == "invalid_grant"


def test_code_expires(base) -> None:
    params = authorize_params()
    code = query_of(login_and_consent(base, params))["code"]
    set_clock(base, 301)
    assert exchange(base, params, code).json()["error"] == "invalid_grant"


def test_basic_auth_only_and_parameter_errors(base) -> None:
    url = token_url(base)
    post = requests.post(url, timeout=5, data={"grant_type": "refresh_token", "refresh_token": "x",
                                               "client_id": DATEV_ID, "client_secret": DATEV_SECRET})
    assert post.status_code == 401 and post.json()["error"] == "invalid_client"
    assert post.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.post(url, auth=(DATEV_ID, "wrong"), data={}, timeout=5).status_code == 401
    auth = (DATEV_ID, DATEV_SECRET)
    assert requests.post(url, auth=auth, data={}, timeout=5).json()["error"] == "invalid_request"
    assert requests.post(url, auth=auth, data={"grant_type": "password"}, timeout=5).json()["error"] == \
        "unsupported_grant_type"
    assert requests.post(url, auth=auth, data={"grant_type": "authorization_code", "code": "x"},
                         timeout=5).json()["error"] == "invalid_request"
    assert requests.post(url, auth=auth, data={"grant_type": "refresh_token"}, timeout=5).json()["error"] == \
        "invalid_request"
    assert refresh(base, "unknown").json()["error"] == "invalid_grant"


def test_refresh_rotates_and_invalidates_previous_access_token(base) -> None:
    first = connect(base)
    second = refresh(base, first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert _userinfo(base, first["access_token"]).status_code == 401
    assert _userinfo(base, second["access_token"]).status_code == 200
    counters = stats(base)
    assert counters["refresh_requests"] == 1 and counters["refresh_successes"] == 1


def test_reused_refresh_token_revokes_whole_family(base) -> None:
    first = connect(base)
    second = refresh(base, first["refresh_token"]).json()
    reuse = refresh(base, first["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert refresh(base, second["refresh_token"]).json()["error"] == "invalid_grant"
    assert _userinfo(base, second["access_token"]).status_code == 401
    assert stats(base)["reuse_detections"] == 1


def test_eleven_hour_window_is_not_extended(base) -> None:
    body = connect(base, scope=ONLINE_SCOPE)
    assert abs(body["refresh_token_expires_in"] - 39600) <= 5
    set_clock(base, 10 * 3600)
    later = refresh(base, body["refresh_token"]).json()
    assert abs(later["refresh_token_expires_in"] - 3600) <= 5
    set_clock(base, 11 * 3600 + 1)
    assert refresh(base, later["refresh_token"]).json()["error"] == "invalid_grant"


def test_offline_token_rolls_by_default(base) -> None:
    body = connect(base)
    set_clock(base, 365 * 86400)
    later = refresh(base, body["refresh_token"]).json()
    assert abs(later["refresh_token_expires_in"] - 63072000) <= 5
    set_clock(base, 365 * 86400 + 63072000 - 10)
    assert refresh(base, later["refresh_token"]).status_code == 200


def test_offline_token_fixed_mode() -> None:
    with EmulatorServer(EmulatorConfig(offline_refresh_mode="fixed")) as emu:
        body = connect(emu.base_url)
        set_clock(emu.base_url, 365 * 86400)
        later = refresh(emu.base_url, body["refresh_token"]).json()
        assert abs(later["refresh_token_expires_in"] - (63072000 - 365 * 86400)) <= 5
        set_clock(emu.base_url, 63072000 + 1)
        assert refresh(emu.base_url, later["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoke(base) -> None:
    url, auth = token_url(base, endpoint="revoke"), (DATEV_ID, DATEV_SECRET)
    body = connect(base)
    assert requests.post(url, auth=auth, data={"token": body["refresh_token"]}, timeout=5).status_code == 400
    assert requests.post(url, data={"token": "x", "token_type_hint": "refresh_token"}, timeout=5).status_code == 401
    unknown = requests.post(url, auth=auth, data={"token": "nope", "token_type_hint": "access_token"}, timeout=5)
    assert unknown.status_code == 200 and unknown.text == ""
    done = requests.post(url, auth=auth, data={"token": body["refresh_token"], "token_type_hint": "refresh_token"},
                         timeout=5)
    assert done.status_code == 200 and done.text == ""
    assert _userinfo(base, body["access_token"]).status_code == 401
    assert refresh(base, body["refresh_token"]).json()["error"] == "invalid_grant"
    assert stats(base)["revocations"] == 1


def test_revoking_access_token_keeps_grant(base) -> None:
    body = connect(base)
    requests.post(token_url(base, endpoint="revoke"), auth=(DATEV_ID, DATEV_SECRET), timeout=5,
                  data={"token": body["access_token"], "token_type_hint": "access_token"})
    assert _userinfo(base, body["access_token"]).status_code == 401
    assert refresh(base, body["refresh_token"]).status_code == 200


def test_userinfo_and_sandbox_separation(base) -> None:
    body = connect(base, scope=ONLINE_SCOPE)
    info = _userinfo(base, body["access_token"]).json()
    assert info["name"] == "Max Mustermann" and info["given_name"] == "Max" and info["family_name"] == "Mustermann"
    assert info["email"] == "max.mustermann@kanzlei.demo" and info["account_id"] == "acc-max" and info["sub"]
    sandbox = requests.get(token_url(base, "sandbox", "userinfo"), timeout=5,
                           headers={"Authorization": f"Bearer {body['access_token']}"})
    assert sandbox.status_code == 401
    assert _userinfo(base, "garbage").status_code == 401
    assert requests.get(token_url(base, endpoint="endsession"), timeout=5).status_code == 200


def test_introspect(base) -> None:
    body = connect(base)
    url, auth = token_url(base, endpoint="introspect"), (DATEV_ID, DATEV_SECRET)
    active = requests.post(url, auth=auth, data={"token": body["access_token"]}, timeout=5).json()
    assert active["active"] is True and active["client_id"] == DATEV_ID
    assert requests.post(url, auth=auth, data={"token": "nope"}, timeout=5).json() == {"active": False}


def test_concurrent_redemption_of_one_refresh_token(base) -> None:
    body = connect(base)
    barrier, results = threading.Barrier(8), []

    def redeem() -> None:
        barrier.wait()
        response = refresh(base, body["refresh_token"])
        results.append((response.status_code, response.json()))

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    winners = [r for status, r in results if status == 200]
    assert len(results) == 8 and len(winners) == 1
    assert all(r["error"] == "invalid_grant" for status, r in results if status != 200)
    assert refresh(base, winners[0]["refresh_token"]).json()["error"] == "invalid_grant"
    assert stats(base)["reuse_detections"] == 7
