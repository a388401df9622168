"""Production start checks (issue 9, "production start checks"): the generated local key is refused by
its value whatever its id, `[auth]` in the dashboard's secrets file needs a long random cookie secret,
an https redirect URI and a real client secret, and provider URLs must be https even on loopback.
No message ever contains a secret's value."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.platform import crypto
from core.platform.config import ConfigurationError, Settings

GOOD_COOKIE_SECRET = "Vq3m9yq2QeV0rJ6kq8Jm1sT4bX7cZ5wD2nF0hL9pR3s"


def auth_file(tmp_path: Path, **changes: str) -> Path:
    values = {"redirect_uri": "https://desk.example.de/oauth2callback", "cookie_secret": GOOD_COOKIE_SECRET,
              "client_id": "token-desk", "client_secret": "a-real-provider-secret",
              "server_metadata_url": "https://login.example.de/.well-known/openid-configuration", **changes}
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "secrets.toml"
    path.write_text("[auth]\n" + "".join(f'{key} = "{value}"\n' for key, value in values.items()))
    return path


def production(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "app_env": "production", "encryption_keys": crypto.new_key_entry("prod1"),
        "encryption_key_file": tmp_path / "none.keys", "datev_client_secret": "real-datev-secret",
        "datev_env": "production", "public_url": "https://desk.example.de", **overrides}
    if "streamlit_secrets_file" not in values:
        values["streamlit_secrets_file"] = auth_file(tmp_path / "good")
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def refusal(tmp_path: Path, **overrides: object) -> str:
    with pytest.raises(ConfigurationError) as info:
        production(tmp_path, **overrides)
    return str(info.value)


def test_real_production_values_start(tmp_path: Path) -> None:
    assert production(tmp_path).production_problems() == []
    # a scheduler-only host has no secrets file: nothing to check there
    assert production(tmp_path, streamlit_secrets_file=tmp_path / "missing.toml").production_problems() == []


def test_the_generated_local_key_is_refused_under_any_key_id(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "encryption.keys"
    assert crypto.ensure_local_key_file(key_file)
    local = crypto.load_keyring(None, key_file)
    renamed = "prod1:" + local.entries()[0].split(":", 1)[1]  # the same bytes under a production-looking id

    # in ENCRYPTION_KEYS, with the key file (and its marker) still where it was generated
    message = refusal(tmp_path, encryption_keys=renamed, encryption_key_file=key_file)
    assert "test or local development key" in message
    assert renamed.split(":", 1)[1] not in message  # never the key itself

    # the key file copied elsewhere and renamed: its header still carries the fingerprint
    copied = tmp_path / "etc" / "tokendesk.keys"
    copied.parent.mkdir()
    copied.write_text(key_file.read_text().replace(local.primary_id + ":", "prod1:"))
    assert "test or local development key" in refusal(tmp_path, encryption_keys=None, encryption_key_file=copied)

    # the marker file alone (header stripped) is enough
    header_free = tmp_path / "stripped.keys"
    header_free.write_text(renamed + "\n")
    crypto.local_key_marker(header_free).write_text(crypto.local_key_marker(key_file).read_text())
    assert "test or local development key" in refusal(tmp_path, encryption_keys=None,
                                                      encryption_key_file=header_free)


def test_the_test_suites_key_is_refused_under_any_key_id(tmp_path: Path) -> None:
    assert "test or local development key" in refusal(tmp_path, encryption_keys="prod1:" + "A" * 43)


def test_a_fresh_key_next_to_an_old_local_key_is_accepted(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "encryption.keys"
    crypto.ensure_local_key_file(key_file)
    assert production(tmp_path, encryption_key_file=key_file).production_problems() == []


@pytest.mark.parametrize("cookie_secret", ["", "changethis", "xxx", "kurz-aber-zufällig-3f9a"])
def test_a_default_or_short_cookie_secret_is_refused(tmp_path: Path, cookie_secret: str) -> None:
    message = refusal(tmp_path, streamlit_secrets_file=auth_file(tmp_path, cookie_secret=cookie_secret))
    assert "[auth] cookie_secret" in message
    if cookie_secret:
        assert cookie_secret not in message.replace("cookie_secret", "")


def test_a_missing_cookie_secret_is_refused(tmp_path: Path) -> None:
    path = auth_file(tmp_path)
    path.write_text(path.read_text().replace(f'cookie_secret = "{GOOD_COOKIE_SECRET}"\n', ""))
    assert "[auth] cookie_secret" in refusal(tmp_path, streamlit_secrets_file=path)


@pytest.mark.parametrize("redirect_uri", ["http://desk.example.de/oauth2callback", "http://localhost:8501/oauth2callback"])
def test_a_plain_http_redirect_uri_is_refused(tmp_path: Path, redirect_uri: str) -> None:
    message = refusal(tmp_path, streamlit_secrets_file=auth_file(tmp_path, redirect_uri=redirect_uri))
    assert "[auth] redirect_uri" in message and "must be https://" in message


def test_the_demo_sign_in_secret_is_refused_also_in_a_provider_section(tmp_path: Path) -> None:
    assert "client_secret" in refusal(tmp_path, streamlit_secrets_file=auth_file(
        tmp_path, client_secret="demo-dashboard-secret"))
    path = auth_file(tmp_path)
    path.write_text(path.read_text() + '\n[auth.firma]\nclient_id = "x"\nclient_secret = "demo-dashboard-secret"\n')
    assert "[auth.firma] client_secret" in refusal(tmp_path, streamlit_secrets_file=path)


def test_an_unreadable_secrets_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text("[auth\nredirect_uri = ")
    assert "cannot be read as TOML" in refusal(tmp_path, streamlit_secrets_file=path)


@pytest.mark.parametrize("setting", ["lexware_api_base_url", "datev_api_base_url", "datev_discovery_url"])
def test_loopback_http_provider_urls_are_refused_in_production_only(tmp_path: Path, setting: str) -> None:
    url = "http://127.0.0.1:8700/stand-in"
    assert "must be https:// in production" in refusal(tmp_path, **{setting: url})
    development = Settings(_env_file=None, app_env="development", **{setting: url})  # type: ignore[arg-type]
    assert development.insecure_provider_urls() == []  # locally the emulator stays fine
