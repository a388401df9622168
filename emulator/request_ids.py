"""Per-request ids that DATEV returns as X-Global-Transaction-ID and V-Cap-Request-ID."""

from __future__ import annotations

import uuid

from flask import g


def request_id() -> str:
    if "v_cap_request_id" not in g:
        g.v_cap_request_id = str(uuid.uuid4())
        g.global_transaction_id = uuid.uuid4().hex
    rid: str = g.v_cap_request_id
    return rid


def add_datev_headers(response):
    rid = request_id()
    response.headers["X-Global-Transaction-ID"] = g.global_transaction_id
    response.headers["V-Cap-Request-ID"] = rid
    return response
