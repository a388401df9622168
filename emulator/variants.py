"""DATEV production and sandbox variants: path prefixes and absolute URLs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import request

if TYPE_CHECKING:
    from .config import EmulatorConfig

VARIANTS = {
    "production": {"login": "/openid", "api": "/datev-api", "platform": "/platform/v2"},
    "sandbox": {"login": "/openidsandbox", "api": "/datev-sandbox-api", "platform": "/platform-sandbox/v2"},
}


def base_url(config: EmulatorConfig) -> str:
    """Absolute base URL of this emulator: the configured public URL or the request's host."""
    if config.public_base_url:
        return config.public_base_url.rstrip("/")
    return request.host_url.rstrip("/")


def issuer(config, variant: str) -> str:
    return base_url(config) + VARIANTS[variant]["login"]


def api_url(config, variant: str, endpoint: str) -> str:
    return f"{base_url(config)}{VARIANTS[variant]['api']}/{endpoint}"
