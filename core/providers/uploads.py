"""One upload of one document to DATEV or Lexware Office, and what its answer means.

Outcomes (the transfer engine acts on them):
- delivered: DATEV 201, or 409 #DCO01012 (an earlier attempt arrived, its answer was lost);
  Lexware 202;
- retry: nothing was done or doing it again is safe (DATEV: 429, 5xx, timeouts, dropped
  connections, since the PUT with our GUID is idempotent; Lexware: 429, or a connection that
  never reached the server);
- failed: the provider refused the document (4xx with a reason): permanent;
- unauthorized: 401 (DATEV: refresh once and retry; Lexware: the key is invalid);
- forbidden: DATEV 403/404: the company must pause;
- unresolved: Lexware only: the request may have been processed (timeout after sending, 5xx,
  dropped connection). Lexware has no idempotency, so it is never sent again automatically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

import requests
from sqlalchemy import Engine

from core.platform.config import Settings
from core.platform.models import Document
from core.providers.datev import error_from
from core.providers.http import CallContext, send
from core.providers.lexware import error_message as lexware_error_message

ALREADY_DELIVERED = "#DCO01012"


class Outcome(StrEnum):
    delivered = "delivered"
    retry = "retry"
    failed = "failed"
    unauthorized = "unauthorized"
    forbidden = "forbidden"
    unresolved = "unresolved"


@dataclass(frozen=True)
class UploadResult:
    outcome: Outcome
    message: str
    http_status: int | None = None
    error_code: str | None = None
    help_uri: str | None = None
    remote_id: str | None = None
    retry_after: str | None = None
    global_transaction_id: str | None = None
    request_id: str | None = None


def _ids(response: requests.Response) -> dict[str, str | None]:
    return {"global_transaction_id": response.headers.get("X-Global-Transaction-ID"),
            "request_id": response.headers.get("V-Cap-Request-ID")}


def upload_datev(engine: Engine, ctx: CallContext, settings: Settings, *, access_token: str, client_id: str,
                 document: Document, content: bytes, session: requests.Session | None = None) -> UploadResult:
    """`PUT /clients/{id}/documents/{guid}` with the document's own GUID (exactly once)."""
    metadata = {k: v for k, v in {"document_type": document.document_type, "note": document.note}.items() if v}
    files = {"file": (document.file_name, content, document.media_type)}
    if metadata:
        files["metadata"] = (None, json.dumps(metadata).encode(), "application/json")  # type: ignore[assignment]
    url = f"{settings.datev_documents_base}/clients/{client_id}/documents/{document.guid}"
    own = session is None
    session = session or requests.Session()
    try:
        response = send(engine, ctx, session, "PUT", url, files=files, timeout=settings.http_timeout, headers={
            "Authorization": f"Bearer {access_token}", "X-DATEV-Client-Id": settings.datev_client_id,
            "Accept": "application/json"})
    except requests.RequestException as exc:
        return UploadResult(Outcome.retry, f"Keine Antwort von DATEV ({type(exc).__name__}); wird wiederholt "
                                           "(dieselbe GUID, also ohne Doppel).")
    finally:
        if own:
            session.close()
    status = response.status_code
    if status in (200, 201):
        body = response.json() if response.content else {}
        return UploadResult(Outcome.delivered, "An DATEV übertragen.", status,
                            remote_id=str(body.get("id") or document.guid), **_ids(response))
    error = error_from(response)
    common = dict(http_status=status, error_code=error.code, help_uri=error.help_uri,
                  retry_after=error.retry_after, **_ids(response))
    if status == 409 and error.code == ALREADY_DELIVERED:
        return UploadResult(Outcome.delivered, "Bereits bei DATEV angekommen (frühere Antwort ging verloren).",
                            remote_id=document.guid, **{**common, "error_code": None})
    if status == 401:
        return UploadResult(Outcome.unauthorized, "DATEV: Zugriffstoken abgelehnt (401).", **common)
    if status in (403, 404):
        return UploadResult(Outcome.forbidden, f"DATEV verweigert den Zugriff auf den Mandanten ({error.summary()}).",
                            **common)
    if status == 429 or status >= 500:
        return UploadResult(Outcome.retry, f"DATEV vorübergehend nicht verfügbar ({error.summary()}).", **common)
    return UploadResult(Outcome.failed, f"DATEV lehnt den Beleg ab: {error.summary()}", **common)


def _never_sent(exc: requests.RequestException) -> bool:
    """True only when the request certainly did not reach Lexware (so sending again is safe)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = repr(exc)
        return "NewConnectionError" in text or "Connection refused" in text
    return False


def upload_lexware(engine: Engine, ctx: CallContext, settings: Settings, *, api_key: str, document: Document,
                   content: bytes) -> UploadResult:
    """`POST /v1/files` with `type=voucher`. No idempotency: see the module docstring."""
    url = f"{settings.lexware_base}/v1/files"
    try:
        with requests.Session() as session:
            response = send(engine, ctx, session, "POST", url, timeout=settings.http_timeout,
                            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
                            files={"file": (document.file_name, content, document.media_type)},
                            data={"type": "voucher"})
    except requests.RequestException as exc:
        if _never_sent(exc):
            return UploadResult(Outcome.retry, f"Lexware Office nicht erreichbar ({type(exc).__name__}).")
        return UploadResult(Outcome.unresolved, "Keine Antwort von Lexware Office nach dem Senden "
                                                f"({type(exc).__name__}): bitte in Lexware prüfen.")
    status = response.status_code
    if status in (200, 201, 202):
        body = response.json() if response.content else {}
        remote = body.get("id") if isinstance(body, dict) else None
        voucher = body.get("voucherId") if isinstance(body, dict) else None
        return UploadResult(Outcome.delivered, "An Lexware Office übertragen" + (f" (Beleg {voucher})." if voucher else "."),
                            status, remote_id=str(remote) if remote else None)
    message = lexware_error_message(response)
    if status == 429:
        return UploadResult(Outcome.retry, "Lexware Office: zu viele Anfragen (429).", status,
                            retry_after=response.headers.get("Retry-After"))
    if status == 401:
        return UploadResult(Outcome.unauthorized, "Lexware Office lehnt den API-Schlüssel ab (401).", status)
    if status >= 500:
        return UploadResult(Outcome.unresolved, f"Lexware Office meldet HTTP {status}: ob der Beleg angelegt wurde, "
                                                "ist unklar. Bitte in Lexware prüfen.", status)
    return UploadResult(Outcome.failed, f"Lexware Office lehnt den Beleg ab: HTTP {status}"
                                        + (f" – {message}" if message else ""), status, error_code=(message or "")[:20] or None)
