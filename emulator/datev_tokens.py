"""DATEV grants and tokens: issue, rotate, detect refresh-token reuse, revoke. Call with state.lock held."""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from .signing import sign_id_token

if TYPE_CHECKING:
    from .config import EmulatorConfig


class TokenError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


def pairwise_sub(client_id: str, person_id: str) -> str:
    return hashlib.sha256(f"{client_id}|{person_id}|token-desk-emulator".encode()).hexdigest()[:32]


def create_grant(state, code: dict, now: float) -> dict:
    grant = {
        "id": secrets.token_hex(12), "client_id": code["client_id"], "person_id": code["person_id"],
        "variant": code["variant"], "scope": code["scope"], "offline": code["offline"],
        "bound_client": code["bound_client"], "nonce": code["nonce"], "login_at": code["login_at"],
        "created_at": now, "last_used_at": now, "revoked": False, "login_method": code["login_method"],
    }
    state.data["grants"][grant["id"]] = grant
    return grant


def _refresh_expiry(config: EmulatorConfig, grant: dict, now: float) -> float:
    login_at: float = grant["login_at"]
    if not grant["offline"]:
        return login_at + config.refresh_ttl_online
    if config.offline_refresh_mode == "fixed":
        return login_at + config.refresh_ttl_offline
    return now + config.refresh_ttl_offline


def issue_tokens(state, grant: dict, now: float, issuer: str) -> dict:
    """New access + refresh token for the grant; returns the token endpoint body."""
    config = state.config
    access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
    refresh_expires = _refresh_expiry(config, grant, now)
    state.data["access_tokens"][access] = {
        "grant_id": grant["id"], "expires_at": now + config.access_token_ttl, "revoked": False,
    }
    state.data["refresh_tokens"][refresh] = {
        "grant_id": grant["id"], "expires_at": refresh_expires, "used_at": None, "revoked": False,
    }
    body = {
        "access_token": access, "token_type": "Bearer", "expires_in": config.access_token_ttl,
        "refresh_token": refresh, "refresh_token_expires_in": max(0, int(refresh_expires - now)),
        "scope": " ".join(grant["scope"]),
    }
    if config.idp_profile == "standard":  # a plain OIDC provider knows no refresh_token_expires_in
        del body["refresh_token_expires_in"]
    if config.token_response_scope == "omit":  # RFC 6749 §5.1: absent means "as requested"
        del body["scope"]
    if "openid" in grant["scope"]:
        body["id_token"] = _id_token(state, grant, now, issuer)
    return body


def _id_token(state, grant: dict, now: float, issuer: str) -> str:
    person = state.data["persons"].get(grant["person_id"], {})
    config = state.config
    audiences = [grant["client_id"], *config.id_token_extra_audiences]
    claims = {
        "iss": issuer, "aud": audiences if len(audiences) > 1 else grant["client_id"],
        "sub": pairwise_sub(grant["client_id"], grant["person_id"]),
        "iat": int(now), "exp": int(now) + state.config.access_token_ttl, "auth_time": int(grant["login_at"]),
        "nonce": grant["nonce"],
    }
    if config.id_token_azp:
        claims["azp"] = config.id_token_azp
    if "profile" in grant["scope"]:
        claims.update({k: person.get(k) for k in ("name", "given_name", "family_name")})
    return sign_id_token(state.data["signing_key"], claims)


def revoke_grant(state, grant_id: str) -> bool:
    grant = state.data["grants"].get(grant_id)
    if not grant or grant["revoked"]:
        return False
    grant["revoked"] = True
    for store in ("access_tokens", "refresh_tokens"):
        for token in state.data[store].values():
            if token["grant_id"] == grant_id:
                token["revoked"] = True
    return True


def refresh(state, refresh_token: str, client_id: str, now: float, issuer: str, variant: str) -> dict:
    config = state.config
    record = state.data["refresh_tokens"].get(refresh_token)
    grant = state.data["grants"].get(record["grant_id"]) if record else None
    if not record or not grant or grant["client_id"] != client_id or grant["variant"] != variant:
        raise TokenError("invalid_grant", "Unknown refresh token.")
    if record["used_at"] is not None and now - record["used_at"] > config.refresh_grace_seconds:
        state.count("reuse_detections")
        revoke_grant(state, grant["id"])
        raise TokenError("invalid_grant", "Refresh token already used; the grant has been revoked.")
    if record["revoked"] or grant["revoked"]:
        raise TokenError("invalid_grant", "Refresh token has been revoked.")
    if now >= record["expires_at"]:
        raise TokenError("invalid_grant", "Refresh token expired.")
    record["used_at"] = now
    if config.refresh_revokes_previous_access_token:
        for token in state.data["access_tokens"].values():
            if token["grant_id"] == grant["id"]:
                token["revoked"] = True
    grant["last_used_at"] = now
    return issue_tokens(state, grant, now, issuer)


def valid_access_token(state, token: str | None, now: float) -> tuple[dict, dict] | None:
    """(token record, grant) for a usable access token, else None."""
    record = state.data["access_tokens"].get(token or "")
    if not record or record["revoked"] or now >= record["expires_at"]:
        return None
    grant = state.data["grants"].get(record["grant_id"])
    if not grant or grant["revoked"]:
        return None
    return record, grant
