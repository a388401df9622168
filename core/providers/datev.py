"""DATEV accounting-documents v2 client (docs/datev-contract.md §2): the permission check, document types
and the idempotent upload. Every call is in the HTTP log.

Errors carry DATEV's code, text, help link and request id, so the UI can show them as DATEV asks
(help URL on 4xx) and the transfer engine can sort them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests
from sqlalchemy import Engine

from core.platform.config import Settings
from core.providers.errors import ProviderError
from core.providers.http import Answer, CallContext, KeepAliveClient, failure_in_words, multipart, new_session, send
from core.providers.outcome import Outcome, Sendable, UploadResult


@dataclass
class DatevApiError(ProviderError):
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


def error_from(response: requests.Response | Answer) -> DatevApiError:
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
    session = session or new_session(settings)
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


ALREADY_DELIVERED = "#DCO01012"


def _ids(response: requests.Response | Answer) -> dict[str, str | None]:
    return {"global_transaction_id": response.headers.get("X-Global-Transaction-ID"),
            "request_id": response.headers.get("V-Cap-Request-ID")}


def upload_datev(engine: Engine, ctx: CallContext, settings: Settings, *, access_token: str, client_id: str,
                 document: Sendable, content: bytes, client: KeepAliveClient) -> UploadResult:
    """`PUT /clients/{id}/documents/{guid}` with the document's own GUID (exactly once), on the worker's
    kept connection to the documents API."""
    metadata = {k: v for k, v in {"document_type": document.document_type, "note": document.note}.items() if v}
    fields: dict[str, tuple[str | None, bytes, str]] = {"file": (document.file_name, content, document.media_type)}
    if metadata:
        fields["metadata"] = (None, json.dumps(metadata).encode(), "application/json")
    form, content_type = multipart(fields)
    url = f"{settings.datev_documents_base}/clients/{client_id}/documents/{document.guid}"
    try:
        response = client.send(engine, ctx, "PUT", url, body=form, headers={
            **_headers(settings, access_token), "Content-Type": content_type})
    except requests.RequestException as exc:
        return UploadResult(Outcome.retry, f"Keine Antwort von DATEV ({failure_in_words(exc)}); wird wiederholt "
                                           "(dieselbe GUID, also ohne Doppel).")
    status = response.status_code
    if status in (200, 201):
        try:
            body = json.loads(response.content) if response.content else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # Not DATEV's Document (a proxy's or a maintenance page with 200, or an answer spoilt on the way):
            # whether it arrived is unknown. Sending it again is safe: the same GUID answers 409 if it did.
            return UploadResult(Outcome.retry, f"Unlesbare Antwort von DATEV (HTTP {status}); wird wiederholt "
                                               "(dieselbe GUID, also ohne Doppel).", status, **_ids(response))
        return UploadResult(Outcome.delivered, "An DATEV übertragen.", status,
                            remote_id=str(body.get("id") or document.guid), **_ids(response))
    error = error_from(response)
    ids = _ids(response)

    def answer(outcome: Outcome, message: str, *, error_code: str | None = error.code,
               remote_id: str | None = None) -> UploadResult:
        return UploadResult(outcome, message, status, error_code=error_code, help_uri=error.help_uri,
                            remote_id=remote_id, retry_after=error.retry_after, **ids)

    if status == 409 and error.code == ALREADY_DELIVERED:
        return answer(Outcome.delivered, "Bereits bei DATEV angekommen (frühere Antwort ging verloren).",
                      error_code=None, remote_id=document.guid)
    if status == 401:
        return answer(Outcome.unauthorized, "DATEV: Zugriffstoken abgelehnt (401).")
    if status in (403, 404):
        return answer(Outcome.forbidden, f"DATEV verweigert den Zugriff auf den Mandanten ({error.summary()}).")
    if status == 429 or status >= 500:
        return answer(Outcome.retry, f"DATEV vorübergehend nicht verfügbar ({error.summary()}).")
    return answer(Outcome.failed, f"DATEV lehnt den Beleg ab: {error.summary()}")
