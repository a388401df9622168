"""All emulator switches in one dataclass; every field can also come from an EMULATOR_* env var."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

_TRUE = {"1", "true", "yes", "on"}


@dataclass
class EmulatorConfig:
    # Dashboard identity provider (st.login)
    idp_client_id: str = "token-desk-dashboard"
    idp_client_secret: str = "demo-dashboard-secret"
    idp_extra_redirect_uris: tuple[str, ...] = ()
    # Login mit DATEV
    datev_client_id: str = "token-desk-demo"
    datev_client_secret: str = "demo-datev-secret"
    datev_redirect_uris: tuple[str, ...] = ("http://localhost:8501/datev_callback",)
    allow_loopback_http_redirects: bool = True
    offline_without_consent: str = "ignore"  # "ignore" (OIDC §11) | "accept"
    auth_code_ttl: int = 300
    access_token_ttl: int = 900
    refresh_ttl_online: int = 39600
    refresh_ttl_offline: int = 63072000
    offline_refresh_mode: str = "rolling"  # "rolling" | "fixed"
    refresh_grace_seconds: int = 0
    refresh_revokes_previous_access_token: bool = True
    # DATEV API gateway + accounting-documents
    client_id_mismatch_status: int = 401
    gateway_unauthorized_body: str = '{"error": "invalid_token"}'
    bound_token_clients_list: str = "forbid"  # "forbid" | "only_bound"
    scope_documents: str = "accounting:documents"
    scope_clients_read: str = "accounting:clients:read"
    max_upload_bytes: int = 20 * 1024 * 1024
    duplicate_key: str = "sha256+name+type"  # "sha256+name+type" | "sha256+name" | "sha256" | "off"
    require_all_repository_levels: bool = True
    # Lexware Office
    lexware_api_key: str = "demo-lexware-key"
    lexware_rate_per_second: float = 2.0
    lexware_burst: int = 2
    lexware_retry_after: int = 1  # seconds; 0 = no Retry-After header
    lexware_file_error_status: int = 406
    lexware_type_error_status: int = 400
    lexware_error_shape: str = "issuelist"  # "issuelist" | "details"
    lexware_unauthorized_body: str = '{"message": "Unauthorized"}'
    lexware_max_file_bytes: int = 5 * 1024 * 1024
    # Process
    state_file: str | None = None
    public_base_url: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> EmulatorConfig:
        """Defaults, then EMULATOR_<FIELD> environment variables, then explicit overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}  # each converted to its field's type by _convert
        for f in dataclasses.fields(cls):
            raw = env.get(f"EMULATOR_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _convert(raw, f.default)
        values.update(overrides)
        return cls(**values)


def _convert(raw: str, default: object) -> object:
    if isinstance(default, bool):
        return raw.strip().lower() in _TRUE
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if default is None:
        return raw or None
    return raw
