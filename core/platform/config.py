"""The one settings object shared by the dashboard and the scheduler.

Read from the environment and an optional `.env` file. Streamlit's `st.secrets` exists only in the
dashboard process, so nothing here comes from it: only `st.login`'s `[auth]` block lives in
`.streamlit/secrets.toml`.

`APP_ENV` decides how strict the checks are:
- `development` (the embedded default of `make run`) and `test`: placeholders are allowed, with a
  warning in development;
- `production`: the process refuses to start while a secret is missing or still a demo value, or a
  public URL is not HTTPS. The error says exactly what to set. Production also refuses the generated
  local key by its value (its fingerprint is recorded when it is generated: core.platform.crypto),
  plain HTTP to a provider even on loopback, and, when the dashboard's `.streamlit/secrets.toml`
  is present (STREAMLIT_SECRETS_FILE), an `[auth]` block with a default or short `cookie_secret`, a
  non-HTTPS `redirect_uri` or a demo `client_secret`. Messages never contain a secret's value.
"""

from __future__ import annotations

import functools
import logging
import tomllib
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = PROJECT_ROOT / "data"

# Demo values shipped with the embedded default. Production refuses every one of them.
DEMO_DATEV_CLIENT_SECRET = "demo-datev-secret"
DEMO_DASHBOARD_CLIENT_SECRET = "demo-dashboard-secret"
DEMO_SECRET_VALUES = frozenset({DEMO_DATEV_CLIENT_SECRET, DEMO_DASHBOARD_CLIENT_SECRET, "changethis", ""})
# st.login's cookie secret: at least this long, and none of the placeholders of docs and examples.
COOKIE_SECRET_MIN_LENGTH = 32
DEFAULT_COOKIE_SECRETS = frozenset({"changethis", "changeme", "xxx", "secret", "cookie_secret",
                                    "your-cookie-secret", "your_cookie_secret", ""})

log = logging.getLogger(__name__)


class ConfigurationError(RuntimeError):
    """Raised when the process must not start with the given settings."""


def is_loopback_url(url: str) -> bool:
    host = (urlparse(url).hostname or "").lower()
    return host in {"localhost", "127.0.0.1", "::1"} or host.startswith("127.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_ignore_empty=True, extra="ignore", case_sensitive=False
    )

    app_env: Literal["development", "test", "production"] = "development"

    # Database: a SQLite file under data/ unless DATABASE_URL says otherwise.
    database_url: str = f"sqlite:///{DATA_DIR / 'tokendesk.db'}"

    # Secrets at rest. Keys come from ENCRYPTION_KEYS ("kid:base64key,kid2:base64key", primary first)
    # or from the key file (same format, one per line). Never from the database.
    encryption_keys: str | None = None
    encryption_key_file: Path = DATA_DIR / "encryption.keys"

    # Where the dashboard is reached (used for redirect URIs and the production HTTPS check).
    public_url: str = "http://localhost:8501"
    # The dashboard's Streamlit secrets file: its [auth] block (st.login) is checked in production.
    streamlit_secrets_file: Path = PROJECT_ROOT / ".streamlit" / "secrets.toml"

    # First admins: comma-separated e-mail addresses that get the admin role on first sign-in.
    admin_emails: str = ""

    # The local emulator (identity provider, DATEV, Lexware Office) of the embedded default.
    emulator_url: str = "http://127.0.0.1:8700"

    # DATEV (docs/datev-contract.md). Endpoints come from the discovery document of DATEV_ENV unless
    # DATEV_DISCOVERY_URL / DATEV_API_BASE_URL override them.
    datev_env: Literal["emulator", "sandbox", "production"] = "emulator"
    datev_discovery_url: str | None = None
    datev_api_base_url: str | None = None
    datev_client_id: str = "token-desk-demo"
    datev_client_secret: str = DEMO_DATEV_CLIENT_SECRET
    datev_redirect_uri: str | None = None  # default: PUBLIC_URL + /datev_callback
    # Where DATEV sends the browser back after a login started from an Anforderungslink (must be registered
    # for the DATEV app too). Default: PUBLIC_URL + /anforderung (the link page itself).
    datev_link_redirect_uri: str | None = None
    request_link_default_days: int = Field(default=7, ge=1, le=30)
    request_link_max_days: int = Field(default=30, ge=1, le=30)
    # Tries with an unknown, used, expired or withdrawn link per client address and window, then refused.
    request_link_max_failures: int = Field(default=10, ge=1, le=1000)
    request_link_failure_window_minutes: int = Field(default=15, ge=1, le=1440)
    # Scope strings are uncertain at DATEV (contract §8 item 8): configurable.
    datev_scopes: str = "openid profile accounting:documents accounting:clients:read"
    datev_prompt_consent: bool = True  # prompt=consent with offline_access (OIDC §11; contract §1.2)
    datev_enable_windows_sso: bool = True  # enableWindowsSso=true (DATEV MUST for certification)
    # DATEV's rule is one valid refresh token per connection. False (default): the old token is revoked
    # right after the new one has been obtained, so an abandoned login never leaves the company without
    # a token. True: revoke before sending the user to DATEV.
    datev_revoke_before_new_login: bool = False
    lexware_api_base_url: str | None = None
    lexware_key_validity_months: int = Field(default=24, ge=1, le=24)

    # HTTP to providers. Every call ends at its total deadline (a slow-dripping answer too); a body above the
    # cap is refused. Both leases (refresh, transfer claim) must outlast the deadline (checked below).
    http_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    http_read_timeout_seconds: float = Field(default=25.0, gt=0, le=120)
    http_deadline_seconds: float = Field(default=30.0, gt=0, le=300)
    http_max_response_bytes: int = Field(default=1024 * 1024, ge=64 * 1024)  # JSON answers: 1 MiB
    http_log_retention_days: int = Field(default=30, ge=14)  # DATEV requires at least 14 days
    # Token refresh: the lease must outlast one refresh call (its deadline).
    refresh_lease_seconds: int = Field(default=90, ge=10)
    # Refresh this long before the access token expires; never more than a third of its lifetime, so a short
    # token (seconds) is not refreshed on every call. Long enough that after a refresh whose answer was lost
    # (at most one deadline) and one more deadline of waiting, the old access token still decides whether
    # DATEV rotated (core.connections.access).
    access_token_skew_seconds: int = Field(default=120, ge=0, le=600)
    # DATEV documents 2 years for a refresh token with offline_access (contract §1.5). Used when the token
    # response has no refresh_token_expires_in (a vendor extra that standard providers do not send).
    datev_offline_lifetime_days: int = Field(default=730, ge=1, le=3650)
    # Whether a refresh kills the previous access token ([U], contract §1.6). True lets a lost refresh answer be
    # decided by one call with the stored access token (it fails only if the refresh went through).
    datev_refresh_revokes_access_token: bool = True
    pending_authorization_minutes: int = Field(default=10, ge=1, le=60)

    # Transfers and the scheduler.
    transfer_interval_seconds: int = Field(default=60, ge=5)
    transfer_concurrency: int = Field(default=4, ge=1, le=32)
    transfer_max_attempts: int = Field(default=6, ge=1, le=50)
    retry_base_seconds: float = Field(default=30.0, ge=0)
    retry_cap_seconds: float = Field(default=3600.0, ge=1)
    # A claim must outlive one upload (connect + read timeout); a crashed worker's claim expires.
    transfer_lease_seconds: int = Field(default=120, ge=1)
    lexware_requests_per_second: float = Field(default=2.0, gt=0, le=10)
    token_care_interval_minutes: int = Field(default=60, ge=1)
    # Rolling 2-year window (contract §1.5, [U]): refresh this often so the token never runs out.
    datev_refresh_rolling: bool = True
    token_keepalive_days: int = Field(default=7, ge=1, le=365)
    housekeeping_interval_minutes: int = Field(default=60, ge=1)
    inbox_root: Path | None = None  # base for relative per-company inbox folders

    # Alarms: Apprise URLs (json://, msteams://, slack://, mailto://) and/or SMTP for e-mail.
    alarm_targets: str = ""
    alarm_emails: str = ""  # global recipients; companies add their own
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_tls: Literal["none", "starttls", "ssl"] = "starttls"
    smtp_sender: str = "token-desk@localhost"
    transfer_failure_alarm_threshold: int = Field(default=3, ge=1)
    # An alarm not delivered to every target is retried with backoff until this many attempts in all.
    alarm_max_attempts: int = Field(default=8, ge=1, le=50)
    # alarm_sent rows are deleted this many days after the first attempt (retries pending are kept).
    alarm_retention_days: int = Field(default=400, ge=30)
    # How often the scheduler looks for undelivered alarms whose next attempt is due.
    alarm_retry_interval_minutes: int = Field(default=5, ge=1)

    # Display.
    display_timezone: str = "Europe/Berlin"
    token_expiry_warning_days: int = Field(default=30, ge=1, le=365)

    @property
    def datev_discovery(self) -> str:
        if self.datev_discovery_url:
            return self.datev_discovery_url
        if self.datev_env == "emulator":
            return f"{self.emulator_url.rstrip('/')}/openid/.well-known/openid-configuration"
        variant = "openidsandbox" if self.datev_env == "sandbox" else "openid"
        return f"https://login.datev.de/{variant}/.well-known/openid-configuration"

    @property
    def datev_documents_base(self) -> str:
        if self.datev_api_base_url:
            return self.datev_api_base_url.rstrip("/")
        if self.datev_env == "emulator":
            return f"{self.emulator_url.rstrip('/')}/platform/v2"
        variant = "platform-sandbox" if self.datev_env == "sandbox" else "platform"
        return f"https://accounting-documents.api.datev.de/{variant}/v2"

    @property
    def datev_callback_uri(self) -> str:
        return self.datev_redirect_uri or f"{self.public_url.rstrip('/')}/datev_callback"

    @property
    def datev_link_callback_uri(self) -> str:
        return self.datev_link_redirect_uri or f"{self.public_url.rstrip('/')}/anforderung"

    @property
    def lexware_base(self) -> str:
        if self.lexware_api_base_url:
            return self.lexware_api_base_url.rstrip("/")
        if self.datev_env == "emulator":
            return f"{self.emulator_url.rstrip('/')}/lexware"
        return "https://api.lexware.io"

    @property
    def http_timeout(self) -> tuple[float, float]:
        return (self.http_connect_timeout_seconds, self.http_read_timeout_seconds)

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        # One driver for PostgreSQL: psycopg 3.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @field_validator("display_timezone")
    @classmethod
    def _known_display_timezone(cls, value: str) -> str:
        # Every displayed time goes through core.platform.timefmt: refuse a zone it can't load.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(
                f"DISPLAY_TIMEZONE {value!r} is not a known time zone: set an IANA name such as Europe/Berlin"
            ) from None
        return value

    @model_validator(mode="after")
    def _deadline_within_the_refresh_lease(self) -> Settings:
        # A refresh must end before its lease runs out, or another process refreshes with the same token meanwhile.
        # (A transfer claim is extended to a whole deadline right before its upload: core.transfers.engine.)
        if self.http_deadline_seconds >= self.refresh_lease_seconds:
            raise ConfigurationError(f"HTTP_DEADLINE_SECONDS ({self.http_deadline_seconds:g}) must be shorter than "
                                     f"REFRESH_LEASE_SECONDS ({self.refresh_lease_seconds})")
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        insecure = self.insecure_provider_urls()
        if insecure:  # in every mode: tokens must never travel over plain HTTP beyond this machine
            raise ConfigurationError("Plain HTTP is accepted only for loopback hosts:\n- " + "\n- ".join(insecure))
        problems = self.production_problems()
        if not problems:
            return self
        if self.app_env == "production":
            raise ConfigurationError(
                "Token Desk refuses to start in production:\n- " + "\n- ".join(problems)
            )
        if self.app_env == "development":
            log.warning(
                "Embedded default settings in use (fine locally, never in production): %s",
                "; ".join(problems),
            )
        return self

    def insecure_provider_urls(self) -> list[str]:
        return [f"{name} must be https:// (is {url!r})" for name, url in self._provider_urls()
                if urlparse(url).scheme != "https" and not is_loopback_url(url)]

    def production_problems(self) -> list[str]:
        """Everything that would stop a production start, each with what to set."""
        problems: list[str] = []
        if not self.encryption_keys and not self.encryption_key_file.exists():
            problems.append("no encryption key: set ENCRYPTION_KEYS or ENCRYPTION_KEY_FILE")
        elif self._uses_local_key():
            problems.append(
                "the encryption key is a test or local development key: "
                "supply your own with ENCRYPTION_KEYS or ENCRYPTION_KEY_FILE"
            )
        if self.datev_client_secret in DEMO_SECRET_VALUES:
            problems.append("DATEV_CLIENT_SECRET is a demo value: set the secret of your DATEV app")
        if self.datev_env == "emulator":
            problems.append("DATEV_ENV is 'emulator': set it to 'sandbox' or 'production'")
        if urlparse(self.public_url).scheme != "https":
            problems.append(f"PUBLIC_URL must be https:// (is {self.public_url!r})")
        if self.datev_env != "emulator":  # (the emulator is refused above; its URLs need no second line)
            problems += [f"{name} must be https:// in production, loopback included (is {url!r})"
                         for name, url in self._provider_urls() if urlparse(url).scheme != "https"]
        problems += self.auth_problems()
        return problems

    def _provider_urls(self) -> tuple[tuple[str, str], ...]:
        return (("DATEV_DISCOVERY_URL", self.datev_discovery), ("DATEV_API_BASE_URL", self.datev_documents_base),
                ("LEXWARE_API_BASE_URL", self.lexware_base), ("DATEV_REDIRECT_URI", self.datev_callback_uri),
                ("DATEV_LINK_REDIRECT_URI", self.datev_link_callback_uri))

    def auth_problems(self) -> list[str]:
        """The dashboard's `[auth]` block (st.login) in STREAMLIT_SECRETS_FILE, if that file exists here
        (a scheduler-only host has none). Names what is wrong, never a value."""
        path = self.streamlit_secrets_file
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            return []
        except (OSError, tomllib.TOMLDecodeError) as exc:
            return [f"{path} cannot be read as TOML ({type(exc).__name__}): fix the file or set STREAMLIT_SECRETS_FILE"]
        auth = data.get("auth")
        if not isinstance(auth, dict):
            return []
        problems: list[str] = []
        cookie_secret = auth.get("cookie_secret")
        if (not isinstance(cookie_secret, str) or cookie_secret.strip().lower() in DEFAULT_COOKIE_SECRETS
                or len(cookie_secret) < COOKIE_SECRET_MIN_LENGTH):
            problems.append(f"[auth] cookie_secret in {path} is missing, a default or shorter than "
                            f"{COOKIE_SECRET_MIN_LENGTH} characters: set a long random value, e.g. "
                            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        redirect_uri = auth.get("redirect_uri")
        if not isinstance(redirect_uri, str) or urlparse(redirect_uri).scheme != "https":
            problems.append(f"[auth] redirect_uri in {path} must be https:// (is {redirect_uri!r}): "
                            "https://<host>/oauth2callback")
        providers = {"[auth]": auth} | {f"[auth.{name}]": value for name, value in auth.items() if isinstance(value, dict)}
        for section, block in providers.items():
            if "client_secret" in block and block.get("client_secret") in DEMO_SECRET_VALUES:
                problems.append(f"{section} client_secret in {path} is a demo value: set your identity "
                                "provider's client secret")
        return problems

    def _uses_local_key(self) -> bool:
        from core.platform.crypto import DEMO_KEY_ID_PREFIXES, KeyConfigurationError, Keyring, local_key_fingerprints

        text = self.encryption_keys or self._read_key_file_quietly()
        if any(line.strip().startswith(DEMO_KEY_ID_PREFIXES) for line in text.replace(",", "\n").splitlines()):
            return True
        try:
            keyring = Keyring.parse(text)
        except KeyConfigurationError:
            return False  # a malformed key is reported when the keyring is loaded
        # By value: the generated key's fingerprint is recorded next to the key file it was written to.
        generated = local_key_fingerprints({self.encryption_key_file, DATA_DIR / "encryption.keys"})
        return bool(keyring.weak_key_ids()) or any(fp in generated for fp in keyring.fingerprints().values())

    def _read_key_file_quietly(self) -> str:
        try:
            return self.encryption_key_file.read_text()
        except OSError:
            return ""

    @property
    def admin_email_set(self) -> frozenset[str]:
        return frozenset(e.strip().lower() for e in self.admin_emails.split(",") if e.strip())

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings (read once). Tests build their own `Settings(...)` instead."""
    return Settings()
