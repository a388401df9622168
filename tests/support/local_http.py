"""A local HTTP server for tests that need a real peer: a `BaseHTTPRequestHandler` class on a free loopback
port, in a thread, until the block ends."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], *,
            tls: ssl.SSLContext | None = None) -> Iterator[ThreadingHTTPServer]:
    """Serve `handler` (over TLS with `tls`); each connection in its own daemon thread, so a client that
    hangs up mid-answer never holds the test up."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def origin(server: ThreadingHTTPServer, *, tls: bool = False) -> str:
    return f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
