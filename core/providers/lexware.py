"""Lexware Office public API client (datev-contract.md §3). Every call is in the HTTP log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from sqlalchemy import Engine

from core.platform.config import Settings
from core.providers.http import CallContext, send


@dataclass
class LexwareApiError(Exception):
    status: int | None
    message: str | None = None
    retry_after: str | None = None
    transport: bool = False

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        if self.transport:
            return "Keine Antwort von Lexware Office (Zeitüberschreitung oder Verbindung abgebrochen)."
        return f"HTTP {self.status}" + (f" – {self.message}" if self.message else "")


def error_message(response: requests.Response) -> str | None:
    """Lexware's error text from any of its error body shapes (contract §3)."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or "")[:200] or None
    if isinstance(body, str):
        return body[:200]
    if isinstance(body, dict):
        if body.get("message"):
            return str(body["message"])[:200]
        issues = body.get("IssueList") or body.get("details") or []
        if issues and isinstance(issues, list) and isinstance(issues[0], dict):
            first = issues[0]
            return str(first.get("i18nKey") or first.get("violation") or first.get("message") or "")[:200] or None
    return None


def request(engine: Engine, ctx: CallContext, settings: Settings, api_key: str, method: str, path: str,
            **kwargs: Any) -> requests.Response:
    url = settings.lexware_base + path
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json", **kwargs.pop("headers", {})}
    try:
        with requests.Session() as session:
            response = send(engine, ctx, session, method, url, headers=headers, timeout=settings.http_timeout,
                            **kwargs)
    except requests.RequestException:
        raise LexwareApiError(status=None, transport=True) from None
    if not 200 <= response.status_code < 300:
        raise LexwareApiError(status=response.status_code, message=error_message(response),
                              retry_after=response.headers.get("Retry-After"))
    return response


def get_profile(engine: Engine, ctx: CallContext, settings: Settings, api_key: str) -> dict:
    data = request(engine, ctx, settings, api_key, "GET", "/v1/profile").json()
    return data if isinstance(data, dict) else {}
