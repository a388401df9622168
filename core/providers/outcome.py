"""What one upload's answer means, for DATEV and Lexware Office alike. The transfer engine acts on it.

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

The transfer history (TransferAttempt.outcome) stores delivered, retry (an automatic retry is
scheduled), failed, unresolved, or waiting: the document is back in the queue but nothing will send
it by itself until a person acts (a new token, resuming the company, a manual transfer).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    delivered = "delivered"
    retry = "retry"
    failed = "failed"
    unauthorized = "unauthorized"
    forbidden = "forbidden"
    unresolved = "unresolved"
    waiting = "waiting"  # history only: back in the queue, waiting for a person (see above)


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


class Sendable(Protocol):
    """What an upload reads of a document: a `Document`, or the transfer engine's claimed copy."""

    @property
    def guid(self) -> str: ...
    @property
    def file_name(self) -> str: ...
    @property
    def media_type(self) -> str: ...
    @property
    def document_type(self) -> str | None: ...
    @property
    def note(self) -> str | None: ...
