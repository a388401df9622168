"""DATEV accounting-documents v2 client (datev-contract.md §2). Every call is in the HTTP log.

Errors carry DATEV's code, text, help link and request id, so the UI can show them as DATEV asks
(help URL on 4xx) and the transfer engine can sort them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from sqlalchemy import Engine

from core.platform.config import Settings
from core.providers.http import CallContext, send


@dataclass
class DatevApiError(Exception):
    status: int | None
    code: str | None = None  # e.g. "#DCO01012"
    description: str | None = None
    help_uri: str | None = None
    request_id: str | None = None
    retry_after: str | None = None
    transport: bool = False  # timeout or dropped connection: outcome unknown

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        if self.transport:
            return "Keine Antwort von DATEV (Zeitüberschreitung oder Verbindung abgebrochen)."
        parts = [f"HTTP {self.status}"]
        if self.code:
            parts.append(self.code)
        if self.description:
            parts.append(self.description)
        return " – ".join(parts)


def _headers(settings: Settings, access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}", "X-DATEV-Client-Id": settings.datev_client_id,
            "Accept": "application/json"}


def error_from(response: requests.Response) -> DatevApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if isinstance(body, list) and body:  # DATEV's spec examples wrap bodies in an array
        body = body[0]
    if not isinstance(body, dict):
        body = {}
    return DatevApiError(status=response.status_code, code=body.get("error"),
                         description=str(body.get("error_description") or "")[:300] or None,
                         help_uri=body.get("error_uri"), request_id=body.get("request_id"),
                         retry_after=response.headers.get("Retry-After"))


def request(engine: Engine, ctx: CallContext, settings: Settings, access_token: str, method: str, path: str,
            session: requests.Session | None = None, **kwargs: Any) -> requests.Response:
    """One call to the documents API. Raises DatevApiError for anything but 2xx."""
    url = settings.datev_documents_base + path
    own = session is None
    session = session or requests.Session()
    try:
        headers = {**_headers(settings, access_token), **kwargs.pop("headers", {})}
        response = send(engine, ctx, session, method, url, headers=headers, timeout=settings.http_timeout, **kwargs)
    except requests.RequestException:
        raise DatevApiError(status=None, transport=True) from None
    finally:
        if own:
            session.close()
    if not 200 <= response.status_code < 300:
        raise error_from(response)
    return response


def get_client(engine: Engine, ctx: CallContext, settings: Settings, access_token: str, client_id: str) -> dict:
    """`GET /clients/{id}`: the permission check (contract §2.8) and the connection test."""
    data = request(engine, ctx, settings, access_token, "GET", f"/clients/{client_id}").json()
    return data if isinstance(data, dict) else {}


def get_document_types(engine: Engine, ctx: CallContext, settings: Settings, access_token: str,
                       client_id: str) -> list[dict]:
    data = request(engine, ctx, settings, access_token, "GET", f"/clients/{client_id}/document-types").json()
    return data if isinstance(data, list) else []
