"""core.providers.http.send_form, the upload path prepared without `session.request` (issue #11): the
server receives what requests itself would send, a redirect is answered but not followed, and the call
is in the HTTP log like every other."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from sqlalchemy import create_engine

from core.platform.config import Settings
from core.providers.http import CallContext, provider_session, send_form

FIELDS = {"file": ("Rechnung 1.pdf", b"%PDF-1.4 demo", "application/pdf"),
          "metadata": (None, b'{"document_type": "Rechnungseingang"}', "application/json")}
HEADERS = {"Authorization": "Bearer abc", "Accept": "application/json"}


class Recorder:
    """Answers 201 on /ok and 307 (to /ok) on /moved; keeps each request's path, headers and body."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen.append((self.path, dict(self.headers), body))
                self.send_response(307 if self.path == "/moved" else 201)
                if self.path == "/moved":
                    self.send_header("Location", "/ok")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _without_boundary(content_type: str, body: bytes) -> bytes:
    boundary = re.search(r"boundary=([0-9a-f]+)", content_type)
    assert boundary
    return body.replace(boundary.group(1).encode(), b"BOUNDARY")


def test_the_body_is_what_requests_would_send_and_a_redirect_is_not_followed(recorder: Recorder) -> None:
    settings = Settings(_env_file=None, app_env="test")
    session = provider_session(recorder.url, settings)
    log: list[dict] = []
    ctx = CallContext(provider="datev", purpose="upload", sink=log)  # the log lines land in `log`
    unused = create_engine("sqlite://")  # with a sink, nothing is written to a database

    answer = send_form(unused, ctx, session, "PUT", recorder.url + "/ok", fields=FIELDS, headers=HEADERS,
                       timeout=settings.http_timeout)
    requests.put(recorder.url + "/ok", files=FIELDS, headers=HEADERS, timeout=5)
    (_, ours, our_body), (_, theirs, their_body) = recorder.seen
    assert answer.status_code == 201
    assert _without_boundary(ours["Content-Type"], our_body) == _without_boundary(theirs["Content-Type"], their_body)
    assert ours["Authorization"] == "Bearer abc" and ours["Content-Length"] == str(len(our_body))

    moved = send_form(unused, ctx, session, "PUT", recorder.url + "/moved", fields=FIELDS, headers=HEADERS,
                      timeout=settings.http_timeout)
    assert moved.status_code == 307
    assert [path for path, _, _ in recorder.seen] == ["/ok", "/ok", "/moved"]  # /moved was not sent on to /ok
    assert [(e["method"], e["path"], e["status"]) for e in log] == [("PUT", "/ok", 201), ("PUT", "/moved", 307)]
