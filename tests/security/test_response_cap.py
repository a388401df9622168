"""No response cap (issue 9, "Low — no response cap": a 400 MB provider body added 807 MB RSS, then an
unhandled error). Every provider session carries `DeadlineAdapter`: an answer that declares more than
HTTP_MAX_RESPONSE_BYTES is refused before its body is read, one that streams more is cut off at the cap,
and both are `requests.RequestException`s, which every caller already treats as "no usable answer"."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
import requests

from core.platform.config import Settings
from core.providers.http import DeadlineAdapter, ResponseTooLarge, new_session
from tests.support.local_http import origin, serving

MIB = 1024 * 1024
HUGE = 400 * MIB


class HugeAnswers:
    """`/declared`: says 400 MiB in Content-Length; `/streamed`: sends 400 MiB chunked, counting what left."""

    def __init__(self) -> None:
        sent = {"streamed": 0}
        self.sent = sent

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path == "/small":
                    body = b'{"ok": true}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if self.path == "/declared":
                    self.send_header("Content-Length", str(HUGE))
                    self.end_headers()
                    return  # the client must refuse on the header alone
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"x" * (64 * 1024)
                try:
                    while sent["streamed"] < HUGE:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        sent["streamed"] += len(chunk)
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the client hung up at its cap

            def log_message(self, *args: object) -> None:
                pass

        self.handler, self.url = Handler, ""


@pytest.fixture
def huge() -> Iterator[HugeAnswers]:
    answers = HugeAnswers()
    with serving(answers.handler) as server:
        answers.url = origin(server)
        yield answers


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None, app_env="test", database_url="sqlite://", http_max_response_bytes=MIB)


def test_a_declared_oversize_answer_is_refused_before_its_body(huge: HugeAnswers, settings: Settings) -> None:
    with pytest.raises(ResponseTooLarge):
        new_session(settings).get(huge.url + "/declared", timeout=(5, 5))


def test_a_streamed_oversize_answer_is_cut_off_at_the_cap(huge: HugeAnswers, settings: Settings) -> None:
    with pytest.raises(requests.RequestException) as caught:
        new_session(settings).get(huge.url + "/streamed", timeout=(5, 5))
    assert isinstance(caught.value, ResponseTooLarge)
    assert huge.sent["streamed"] < 64 * MIB  # the server stopped far short of 400 MiB: the client hung up


def test_answers_within_the_cap_pass_and_every_provider_session_is_guarded(huge: HugeAnswers,
                                                                         settings: Settings) -> None:
    """(The transfer engine's uploads go through KeepAliveClient, whose cap tests/core/test_keepalive_client.py
    checks.)"""
    assert new_session(settings).get(huge.url + "/small", timeout=(5, 5)).json() == {"ok": True}
    for session in (new_session(settings),):
        for prefix in ("http://", "https://"):
            adapter = session.get_adapter(prefix + "example.org/")
            assert isinstance(adapter, DeadlineAdapter) and adapter.max_bytes == MIB
