"""Persistence across restarts, reset, clock, config from environment, start pages."""

from __future__ import annotations

import requests

from emulator.config import EmulatorConfig
from emulator.server import EmulatorServer
from tests.support.emulator_client import connect, refresh


def test_tokens_survive_a_restart_with_state_file(tmp_path) -> None:
    config = EmulatorConfig(state_file=str(tmp_path / "state.json"))
    with EmulatorServer(config) as first:
        body = connect(first.base_url)
    with EmulatorServer(config) as second:
        assert refresh(second.base_url, body["refresh_token"]).status_code == 200
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600  # it holds tokens and the signing key


def test_a_kept_state_learns_the_redirect_uris_configured_now(tmp_path) -> None:
    """`make run` with another PUBLIC_URL: the DATEV app accepts the dashboard's return addresses."""
    from emulator.state import EmulatorState

    path = str(tmp_path / "state.json")
    EmulatorState(EmulatorConfig(state_file=path))  # the state of an earlier start, default addresses
    later = EmulatorState(EmulatorConfig(state_file=path, datev_redirect_uris=("http://localhost:8511/datev_callback",
                                                                               "http://localhost:8511/anforderung")))
    uris = later.data["datev_oauth_clients"]["token-desk-demo"]["redirect_uris"]
    assert "http://localhost:8511/datev_callback" in uris and "http://localhost:8511/anforderung" in uris
    assert "http://localhost:8501/datev_callback" in uris  # earlier ones are kept


def test_reset_clears_grants_and_clock(base) -> None:
    connect(base)
    requests.post(base + "/_admin/clock", json={"offset_seconds": 100}, timeout=5)
    assert requests.get(base + "/_admin/clock", timeout=5).json()["offset_seconds"] == 100
    requests.post(base + "/_admin/reset", timeout=5)
    assert requests.get(base + "/_admin/datev/grants", timeout=5).json() == []
    assert requests.get(base + "/_admin/clock", timeout=5).json()["offset_seconds"] == 0


def test_config_from_env() -> None:
    config = EmulatorConfig.from_env({
        "EMULATOR_DATEV_CLIENT_ID": "x", "EMULATOR_ALLOW_LOOPBACK_HTTP_REDIRECTS": "false",
        "EMULATOR_REFRESH_GRACE_SECONDS": "5", "EMULATOR_DATEV_REDIRECT_URIS": "https://a/cb, https://b/cb",
        "EMULATOR_LEXWARE_RATE_PER_SECOND": "3.5",
    })
    assert config.datev_client_id == "x" and config.allow_loopback_http_redirects is False
    assert config.refresh_grace_seconds == 5 and config.datev_redirect_uris == ("https://a/cb", "https://b/cb")
    assert config.lexware_rate_per_second == 3.5


def test_start_page_and_connected_apps(base) -> None:
    assert "Verbundene Anwendungen" in requests.get(base + "/", timeout=5).text
    body = connect(base)
    page = requests.get(base + "/tokrevui", timeout=5).text
    grant_id = requests.get(base + "/_admin/datev/grants", timeout=5).json()[0]["id"]
    assert f'id="revoke-{grant_id}"' in page and "Dauerhafter Zugriff" in page
    requests.post(base + "/tokrevui/revoke", data={"grant_id": grant_id}, timeout=5)
    assert refresh(base, body["refresh_token"]).json()["error"] == "invalid_grant"
    assert requests.get(base + "/uploads", timeout=5).status_code == 200
    assert requests.get(base + "/lexware-files", timeout=5).status_code == 200


def test_admin_revoke_by_person(base) -> None:
    body = connect(base)
    revoked = requests.post(base + "/_admin/datev/grants/revoke", json={"person": "max"}, timeout=5).json()
    assert len(revoked["revoked"]) == 1
    assert refresh(base, body["refresh_token"]).json()["error"] == "invalid_grant"
