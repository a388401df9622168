"""DATEV API gateway rules (§7.2): bearer token, X-DATEV-Client-Id, scopes, client binding, rights."""

from __future__ import annotations

import json

from flask import jsonify, request

from . import datev_tokens as tokens
from .request_ids import add_datev_headers, request_id

HELP_URI = "https://apps.datev.de/knowledge/help/search?q="


class ApiError(Exception):
    def __init__(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}

    def response(self):
        body = dict(self.body or {})
        body.setdefault("request_id", request_id())
        response = jsonify(body)
        response.status_code = self.status
        response.headers.update(self.headers)
        return add_datev_headers(response)


def dco(code: str, name: str, status: int = 400) -> ApiError:
    number = code.lstrip("#")
    return ApiError(status, {"error": f"#{number}", "error_description": f"restapi.{name}",
                             "error_uri": HELP_URI + number})


def authenticate(state, variant: str, scope: str) -> tuple[dict, dict]:
    """Check token, client-id header and scope; return (grant, person). Call with state.lock held."""
    config = state.config
    auth = request.headers.get("Authorization", "")
    value = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    found = tokens.valid_access_token(state, value, state.clock.now())
    if not found or found[1]["variant"] != variant:
        raise ApiError(401, json.loads(config.gateway_unauthorized_body))
    grant = found[1]
    header_client = request.headers.get("X-DATEV-Client-Id")
    if not header_client:
        raise dco("DCO01018", "MissingMandatoryHeaderFault")
    if header_client != grant["client_id"]:
        raise ApiError(config.client_id_mismatch_status, {"error": "invalid_client"})
    if scope not in grant["scope"]:
        raise dco("DCO01005", "ScopeFault", 403)
    grant["last_used_at"] = state.clock.now()
    return grant, state.data["persons"][grant["person_id"]]


def client_for(state, grant: dict, person: dict, client_id: str) -> dict:
    """The company (Mandant) behind a path client id, after binding and rights checks."""
    if grant["bound_client"] and grant["bound_client"] != client_id:
        raise ApiError(403)
    company: dict | None = state.data["companies"].get(client_id)
    if not company:
        raise ApiError(404)
    if client_id not in person["rights"]:
        raise ApiError(403)
    return company
