"""Settings: production refuses placeholders with exact instructions; development only warns."""

import logging
from pathlib import Path

import pytest

from core.platform.config import ConfigurationError, Settings
from core.platform.crypto import ensure_local_key_file, new_key_entry


def test_production_refuses_demo_values_and_says_what_to_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENCRYPTION_KEYS")
    with pytest.raises(ConfigurationError) as info:
        Settings(app_env="production", encryption_key_file=tmp_path / "none", _env_file=None)
    message = str(info.value)
    for expected in ("ENCRYPTION_KEYS", "DATEV_CLIENT_SECRET", "DATEV_ENV", "PUBLIC_URL must be https://"):
        assert expected in message


def test_production_refuses_the_generated_local_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENCRYPTION_KEYS")
    key_file = tmp_path / "encryption.keys"
    ensure_local_key_file(key_file)
    with pytest.raises(ConfigurationError, match="test or local development key"):
        Settings(app_env="production", encryption_key_file=key_file, datev_client_secret="real",
                 datev_env="production", public_url="https://desk.example.de", _env_file=None)


def test_production_starts_with_real_values() -> None:
    settings = Settings(app_env="production", encryption_keys=new_key_entry("prod1"), datev_client_secret="s3cr3t",
                        datev_env="production", public_url="https://desk.example.de", _env_file=None)
    assert settings.production_problems() == []


def test_development_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        Settings(app_env="development", encryption_key_file=tmp_path / "none", _env_file=None)
    assert "Embedded default settings in use" in caplog.text


def test_postgres_urls_use_psycopg3() -> None:
    assert Settings(database_url="postgresql://u@h/db", _env_file=None).database_url == "postgresql+psycopg://u@h/db"
    assert Settings(database_url="postgres://u@h/db", _env_file=None).database_url == "postgresql+psycopg://u@h/db"


def test_production_refuses_the_test_suite_key() -> None:
    with pytest.raises(ConfigurationError, match="test or local development key"):
        Settings(app_env="production", datev_client_secret="real", datev_env="production",
                 public_url="https://desk.example.de", _env_file=None)


def test_plain_http_to_a_provider_is_refused_in_every_mode() -> None:
    for env in ("development", "test"):
        with pytest.raises(ConfigurationError, match="DATEV_API_BASE_URL must be https://"):
            Settings(app_env=env, datev_api_base_url="http://datev.example.com/platform/v2", _env_file=None)
    ok = Settings(datev_api_base_url="http://127.0.0.1:9/platform/v2", _env_file=None)
    assert ok.datev_documents_base == "http://127.0.0.1:9/platform/v2"


def test_endpoints_follow_datev_env() -> None:
    sandbox = Settings(datev_env="sandbox", _env_file=None)
    assert sandbox.datev_discovery == "https://login.datev.de/openidsandbox/.well-known/openid-configuration"
    assert sandbox.datev_documents_base == "https://accounting-documents.api.datev.de/platform-sandbox/v2"
    emu = Settings(emulator_url="http://127.0.0.1:8700", _env_file=None)
    assert emu.datev_discovery == "http://127.0.0.1:8700/openid/.well-known/openid-configuration"
    assert emu.lexware_base == "http://127.0.0.1:8700/lexware"
    assert emu.datev_callback_uri == "http://localhost:8501/datev_callback"
