"""A real SMTP server and a real webhook for the alarm tests, on free local ports."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class SmtpSink:
    """A plain local SMTP server (aiosmtpd) that keeps what it receives."""

    port: int = field(default_factory=free_port)
    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd hook
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(message["Subject"]) for _, message in self.messages]

    @classmethod
    @contextmanager
    def running(cls, port: int | None = None) -> Iterator[SmtpSink]:
        sink = cls(port) if port is not None else cls()
        controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
        controller.start()  # returns once the server answers
        try:
            yield sink
        finally:
            controller.stop()


@dataclass
class HookSink:
    """A local JSON webhook receiver; paths under /fail answer 500."""

    port: int
    received: list[dict[str, Any]]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[HookSink]:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server hook
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"path": self.path, "json": json.loads(raw.decode("utf-8"))})
                self.send_response(500 if self.path.startswith("/fail") else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield cls(server.server_address[1], received)
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
