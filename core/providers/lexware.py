"""Lexware Office public API client (docs/datev-contract.md §3): the profile call and the voucher upload,
which has no idempotency (a timeout after sending, a 5xx or a dropped connection is `unresolved`).
Every call is in the HTTP log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from sqlalchemy import Engine

from core.platform.config import Settings
from core.platform.models import TransferAttempt, clip
from core.providers.errors import ProviderError
from core.providers.http import CallContext, failure_in_words, never_sent, new_session, send
from core.providers.outcome import Outcome, Sendable, UploadResult


@dataclass
class LexwareApiError(ProviderError):
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
        with new_session(settings) as session:
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


def upload_lexware(engine: Engine, ctx: CallContext, settings: Settings, *, api_key: str, document: Sendable,
                   content: bytes) -> UploadResult:
    """`POST /v1/files` with `type=voucher`. No idempotency: see the module docstring."""
    url = f"{settings.lexware_base}/v1/files"
    try:
        with new_session(settings) as session:
            response = send(engine, ctx, session, "POST", url, timeout=settings.http_timeout,
                            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
                            files={"file": (document.file_name, content, document.media_type)},
                            data={"type": "voucher"})
    except requests.RequestException as exc:
        if never_sent(exc):
            return UploadResult(Outcome.retry, f"Lexware Office nicht erreichbar ({failure_in_words(exc)}).")
        return UploadResult(Outcome.unresolved, "Keine Antwort von Lexware Office nach dem Senden "
                                                f"({failure_in_words(exc)}): bitte in Lexware prüfen.")
    status = response.status_code
    if status in (200, 201, 202):
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("id"):
            # Accepted, but we cannot tell which voucher it became: a person checks in Lexware; never sent again.
            return UploadResult(Outcome.unresolved, f"Lexware Office hat den Beleg angenommen (HTTP {status}), aber "
                                                    "keine lesbare Antwort geliefert: bitte in Lexware prüfen.", status)
        voucher = body.get("voucherId")
        return UploadResult(Outcome.delivered, "An Lexware Office übertragen" + (f" (Beleg {voucher})." if voucher else "."),
                            status, remote_id=str(body["id"]))
    message = error_message(response)
    if status == 429:
        return UploadResult(Outcome.retry, "Lexware Office: zu viele Anfragen (429).", status,
                            retry_after=response.headers.get("Retry-After"))
    if status == 401:
        return UploadResult(Outcome.unauthorized, "Lexware Office lehnt den API-Schlüssel ab (401).", status)
    if status >= 500:
        return UploadResult(Outcome.unresolved, f"Lexware Office meldet HTTP {status}: ob der Beleg angelegt wurde, "
                                                "ist unklar. Bitte in Lexware prüfen.", status)
    return UploadResult(Outcome.failed, f"Lexware Office lehnt den Beleg ab: HTTP {status}"
                                        + (f" – {message}" if message else ""), status, error_code=clip(TransferAttempt.error_code, message) or None)
