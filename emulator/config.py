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
    datev_redirect_uris: tuple[str, ...] = ("http://localhost:8501/datev_callback", "http://localhost:8501/anforderung")
    allow_loopback_http_redirects: bool = True
    offline_without_consent: str = "ignore"  # "ignore" (OIDC §11) | "accept"
    auth_code_ttl: int = 300
    access_token_ttl: int = 900
    refresh_ttl_online: int = 39600
    refresh_ttl_offline: int = 63072000
    offline_refresh_mode: str = "rolling"  # "rolling" | "fixed"
    refresh_grace_seconds: int = 0
    refresh_revokes_previous_access_token: bool = True
    # Identity-provider profile. "datev" answers the DATEV way (refresh_token_expires_in in the token response,
    # offline_access needs exactly one datev:iam:client scope, detailed error_description). "standard" behaves
    # like a plain certified OpenID Connect provider: no refresh_token_expires_in, scopes it does not know are
    # dropped, offline_access needs no client scope, generic error_description.
    idp_profile: str = "datev"  # "datev" | "standard"
    # What is granted for a requested datev:iam:client scope: "as_requested"; "drop" (silently not granted, as a
    # provider that does not know the scope); "other" (client_scope_other is granted instead: a user who picked
    # another data set, to test the refusal).
    client_scope_grant: str = "as_requested"
    client_scope_other: str = "455148-5"
    token_response_scope: str = "granted"  # "granted" | "omit" (RFC 6749 §5.1: absent means as requested)
    authorization_response_iss: bool = False  # RFC 9207: `iss` in the redirect back to the client
    id_token_extra_audiences: tuple[str, ...] = ()  # more audiences in the ID token (the azp rule)
    id_token_azp: str | None = None  # the ID token's azp claim (None: none)
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

    # Fields a test may change at runtime through POST /_admin/config (reset restores the start values).
    RUNTIME_FIELDS = ("idp_profile", "client_scope_grant", "client_scope_other", "token_response_scope",
                      "authorization_response_iss", "id_token_extra_audiences", "id_token_azp", "access_token_ttl",
                      "refresh_ttl_offline", "offline_refresh_mode", "refresh_revokes_previous_access_token")

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
