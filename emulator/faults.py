"""Fault injection applied before/after matching requests.

Kinds: 503, 429, latency (wait, then handle), answer_after (handle, and answer latency_ms after the request
arrived: a server whose whole answer time is latency_ms, its own work included), drop, accept_then_drop (handle, then drop the connection),
revoke_grants, delay_response (handle, then answer after latency_ms: a late answer), slow_drip (handle, then
send the body one byte every latency_ms), html_200 (answer 200 with an HTML page instead of handling),
not_json (handle, then replace the body with text that is not JSON, keeping the status).
"""

from __future__ import annotations

import re
import socket
import threading
import time

from flask import Response, g, jsonify, request

from . import datev_tokens
from .context import emulator_state
from .request_ids import add_datev_headers, request_id

KINDS = ("503", "429", "latency", "answer_after", "drop", "accept_then_drop", "revoke_grants", "delay_response", "slow_drip",
         "html_200", "not_json")
TARGETS = ("token", "revoke", "userinfo", "documents", "clients", "lexware", "discovery", "certs", "any")
_DATEV_API = re.compile(r"^/datev(-sandbox)?-api/(token|revoke|userinfo|certs)$")
_DISCOVERY = re.compile(r"^/openid(sandbox)?/\.well-known/openid-configuration$")
_PLATFORM = re.compile(r"^/platform(-sandbox)?/v2/clients(/[^/]+(/(documents).*)?)?")


def target_of(path: str) -> str | None:
    if path.startswith("/_admin"):
        return None
    match = _DATEV_API.match(path)
    if match:
        return match.group(2)
    if _DISCOVERY.match(path):
        return "discovery"
    match = _PLATFORM.match(path)
    if match:
        return "documents" if match.group(4) else "clients"
    if path.startswith("/lexware/"):
        return "lexware"
    return "other"


class FaultRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[dict] = []

    def add(self, fault: dict) -> dict:
        fault = {"target": fault.get("target", "any"), "kind": str(fault.get("kind", "503")),
                 "count": int(fault.get("count", 1)), "retry_after": fault.get("retry_after"),
                 "latency_ms": int(fault.get("latency_ms", 0))}
        if fault["target"] not in TARGETS or fault["kind"] not in KINDS or fault["count"] < 1:
            raise ValueError(f"target must be one of {TARGETS}, kind one of {KINDS}, count >= 1")
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict]:
        with self._lock:
            return [dict(f) for f in self._faults]

    def consume(self, target: str) -> dict | None:
        with self._lock:
            for fault in self._faults:
                if fault["target"] in (target, "any"):
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        self._faults.remove(fault)
                    return dict(fault)
        return None


def _revoke_every_grant() -> None:
    """What a user does in "Verbundene Anwendungen", at an exact point in a request sequence.

    Tests queue it behind a counted fault so the revocation lands between two known uploads instead
    of racing a polling test thread; the matched request itself then proceeds with revoked tokens.
    """
    state = emulator_state()
    with state.lock:
        for grant_id in list(state.data["grants"]):
            datev_tokens.revoke_grant(state, grant_id)
        state.changed()


def drop_connection() -> Response:
    """Shut the socket down; werkzeug's write then fails quietly and the client sees no response."""
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    return Response(b"", status=500)


def _fault_response(fault: dict, target: str) -> Response:
    headers = {"Retry-After": str(fault["retry_after"])} if fault.get("retry_after") is not None else {}
    if target == "lexware":
        message = "Service Unavailable" if fault["kind"] == "503" else "Rate limit exceeded"
        response = jsonify({"message": message})
    elif fault["kind"] == "429":
        response = Response(b"", mimetype="application/json")
    elif target in ("documents", "clients"):
        response = jsonify({"error": "#DCO01020", "error_description": "restapi.ServiceNotAvailableFault",
                            "error_uri": "https://apps.datev.de/knowledge/help/search?q=DCO01020",
                            "request_id": request_id()})
    else:
        response = jsonify({"error": "temporarily_unavailable", "error_description": "Wartungsarbeiten"})
    response.status_code = int(fault["kind"])
    response.headers.update(headers)
    return add_datev_headers(response) if target != "lexware" else response


def before_request(registry: FaultRegistry):
    target = target_of(request.path)
    if target is None:
        return None
    fault = registry.consume(target)
    if not fault:
        return None
    if fault["kind"] == "latency":
        time.sleep(fault["latency_ms"] / 1000)
        return None
    if fault["kind"] == "answer_after":
        g.answer_at = time.monotonic() + fault["latency_ms"] / 1000
        return None
    if fault["kind"] == "drop":
        return drop_connection()
    if fault["kind"] == "accept_then_drop":
        g.drop_after_response = True
        return None
    if fault["kind"] == "revoke_grants":
        _revoke_every_grant()
        return None
    if fault["kind"] in ("delay_response", "slow_drip", "not_json"):
        g.after_fault = fault
        return None
    if fault["kind"] == "html_200":
        return Response("<!doctype html><html><body><h1>Wartung</h1></body></html>", status=200,
                        mimetype="text/html")
    return _fault_response(fault, target)


def after_request(response: Response) -> Response:
    if g.get("drop_after_response"):
        return drop_connection()
    answer_at = g.get("answer_at")
    if answer_at is not None:  # answer_after: the work is done; the rest of the answer time passes
        time.sleep(max(0.0, answer_at - time.monotonic()))
        return response
    fault = g.get("after_fault")
    if not fault:
        return response
    if fault["kind"] == "delay_response":  # the work is done; the answer comes late
        time.sleep(fault["latency_ms"] / 1000)
        return response
    if fault["kind"] == "not_json":
        response.set_data(b"OK")
        response.mimetype = "text/plain"
        return response
    body, pause = response.get_data(), fault["latency_ms"] / 1000  # slow_drip

    def drip():
        for index in range(len(body)):
            time.sleep(pause)
            yield body[index:index + 1]

    dripping = Response(drip(), status=response.status_code, headers=dict(response.headers),
                        direct_passthrough=True)
    dripping.headers["Content-Length"] = str(len(body))
    return dripping
