"""core.providers.http.KeepAliveClient, the transfer engine's upload client (issue #11): the server
receives what requests itself would send; one connection serves many calls and a connection the server
closed is replaced; the deadline, the size cap, certificate checks and the environment's proxy hold as
for every requests session (DeadlineAdapter); every call is in the HTTP log, failures included."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import select
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import create_engine

from core.platform.config import Settings
from core.providers.http import (
    Answer,
    CallContext,
    DeadlineExceeded,
    KeepAliveClient,
    ResponseTooLarge,
    multipart,
)
from tests.support.local_http import origin, serving

FIELDS = {"file": ("Rechnung 1.pdf", b"%PDF-1.4 demo", "application/pdf"),
          "metadata": (None, b'{"document_type": "Rechnungseingang"}', "application/json")}
MIB = 1024 * 1024
UNUSED = create_engine("sqlite://")  # with a sink, log lines land in a list, nothing is written to a database


class Server:
    """HTTP/1.1 with keep-alive. `/ok` 201 (a JSON body), `/moved` 307 to /ok, `/close` 201 and closes the
    connection, `/drip` one byte of body every 0.2 s, `/declared` says 400 MiB, `/streamed` sends chunks
    without end. Keeps each request's path, headers, body and the client's port (one port per connection)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.seen: list[tuple[str, dict[str, str], bytes, int]] = []
        self.connections = 0
        self.dripped = 0  # bytes of /drip's answer that left before the client hung up
        seen, server = self.seen, self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                server.connections += 1

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen.append((self.path, dict(self.headers), body, self.client_address[1]))
                if self.path == "/drip":
                    self.send_response(201)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    for _ in range(100):
                        try:
                            self.wfile.write(b"x")
                            self.wfile.flush()
                        except OSError:
                            return
                        server.dripped += 1
                        time.sleep(0.2)  # the server's pace, not the test's synchronisation
                    return
                if self.path == "/short":  # says 100 bytes, sends 10 and hangs up
                    self.send_response(409)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    self.wfile.write(b'{"error": ')
                    self.close_connection = True
                    return
                if self.path in ("/declared", "/streamed"):
                    self.send_response(200)
                    if self.path == "/declared":
                        self.send_header("Content-Length", str(400 * MIB))
                        self.end_headers()
                        return
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b"x" * (64 * 1024)
                    try:
                        for _ in range(400 * 16):
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    except OSError:
                        pass
                    return
                answer = b'{"id": "abc"}'
                self.send_response(307 if self.path == "/moved" else 201)
                if self.path == "/moved":
                    self.send_header("Location", "/ok")
                self.send_header("X-Global-Transaction-ID", "gt-1")
                self.send_header("Content-Length", str(len(answer)))
                if self.path == "/close":
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.handler, self.tls, self.url = Handler, tls, ""

    @contextmanager
    def running(self) -> Iterator[Server]:
        with serving(self.handler, tls=self.tls) as http_server:
            self.url = origin(http_server, tls=self.tls is not None)
            yield self


@pytest.fixture
def server() -> Iterator[Server]:
    with Server().running() as running:
        yield running


def settings(**changes: object) -> Settings:
    return Settings(_env_file=None, app_env="test").model_copy(update=changes)


def put(client: KeepAliveClient, url: str, log: list[dict]) -> Answer:
    body, content_type = multipart(FIELDS)
    return client.send(UNUSED, CallContext(provider="datev", purpose="upload", sink=log), "PUT", url, body=body,
                       headers={"Authorization": "Bearer abc", "Content-Type": content_type})


def _without_boundary(content_type: str, body: bytes) -> bytes:
    boundary = re.search(r"boundary=([0-9a-f]+)", content_type)
    assert boundary
    return body.replace(boundary.group(1).encode(), b"BOUNDARY")


def test_the_body_is_what_requests_would_send_and_a_redirect_is_not_followed(server: Server) -> None:
    log: list[dict] = []
    with KeepAliveClient(server.url, settings()) as client:
        answer = put(client, server.url + "/ok", log)
        requests.put(server.url + "/ok", files=FIELDS, headers={"Authorization": "Bearer abc"}, timeout=5)
        moved = put(client, server.url + "/moved", log)
    (_, ours, our_body, _), (_, theirs, their_body, _), _ = server.seen
    assert answer.status_code == 201 and answer.json() == {"id": "abc"}
    assert answer.headers.get("x-global-transaction-id") == "gt-1"
    assert _without_boundary(ours["Content-Type"], our_body) == _without_boundary(theirs["Content-Type"], their_body)
    assert ours["Authorization"] == "Bearer abc" and ours["Content-Length"] == str(len(our_body))
    assert ours["User-Agent"] == "TokenDesk"
    assert moved.status_code == 307
    assert [path for path, _, _, _ in server.seen] == ["/ok", "/ok", "/moved"]  # /moved was not sent on to /ok
    assert [(e["method"], e["path"], e["status"], e["global_transaction_id"]) for e in log] == [
        ("PUT", "/ok", 201, "gt-1"), ("PUT", "/moved", 307, "gt-1")]


def test_one_connection_serves_many_calls_and_a_closed_one_is_replaced(server: Server) -> None:
    log: list[dict] = []
    with KeepAliveClient(server.url, settings()) as client:
        for _ in range(3):
            put(client, server.url + "/ok", log)
        put(client, server.url + "/close", log)  # the server says Connection: close and hangs up
        put(client, server.url + "/ok", log)
        # the server drops an idle kept connection: the client notices before using it
        assert client.conn is not None and client.conn.sock is not None
        client.conn.sock.shutdown(socket.SHUT_WR)  # as if the server had closed: the server's side sees EOF
        select.select([client.conn.sock], [], [], 5)  # wait until the server's close reached us (no sleep)
        put(client, server.url + "/ok", log)
    ports = [port for _, _, _, port in server.seen]
    assert len(set(ports[:4])) == 1  # three calls and the closing one on one connection
    assert len(set(ports)) == 3 and server.connections == 3
    assert [e["status"] for e in log] == [201] * 6  # no call failed on a stale connection


def test_a_dripping_answer_ends_at_the_deadline_and_is_logged(server: Server) -> None:
    log: list[dict] = []
    with KeepAliveClient(server.url, settings(http_deadline_seconds=1.0)) as client:
        with pytest.raises(DeadlineExceeded):
            put(client, server.url + "/drip", log)
        assert client.conn is None  # a connection with half an answer on it is never reused
    assert server.dripped < 100  # the client hung up at its deadline, not after the drip's 20 s
    assert [(e["path"], e["status"], e["error"]) for e in log] == [("/drip", None, "DeadlineExceeded")]


def test_an_answer_cut_off_before_its_length_is_broken_not_complete(server: Server) -> None:
    """A 409 whose body breaks off would read as a 409 without DATEV's code (then: "failed"); it is a
    broken answer, which the upload retries with the same GUID."""
    log: list[dict] = []
    with KeepAliveClient(server.url, settings()) as client:
        with pytest.raises(requests.ConnectionError, match="IncompleteRead"):
            put(client, server.url + "/short", log)
        assert client.conn is None
    assert [(e["path"], e["status"], e["error"]) for e in log] == [("/short", None, "ConnectionError")]


def test_a_header_that_cannot_be_sent_is_refused_without_its_value(server: Server) -> None:
    log: list[dict] = []
    body, content_type = multipart(FIELDS)
    with KeepAliveClient(server.url, settings()) as client, pytest.raises(requests.RequestException) as caught:
        client.send(UNUSED, CallContext(provider="datev", purpose="upload", sink=log), "PUT", server.url + "/ok",
                    body=body, headers={"Authorization": "Bearer secret-token\r\nX: y", "Content-Type": content_type})
    assert "secret-token" not in str(caught.value) and "secret-token" not in repr(caught.value)
    assert server.seen == [] and [e["error"] for e in log] == ["InvalidHeader"]


@pytest.mark.parametrize("path", ["/declared", "/streamed"])
def test_an_oversize_answer_is_refused_at_the_cap(server: Server, path: str) -> None:
    log: list[dict] = []
    with KeepAliveClient(server.url, settings(http_max_response_bytes=MIB)) as client:
        with pytest.raises(ResponseTooLarge):
            put(client, server.url + path, log)
        assert client.conn is None
    assert [e["error"] for e in log] == ["ResponseTooLarge"]


def test_no_server_is_a_connection_error_that_says_nothing_was_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # bound, not listening: refused
        log: list[dict] = []
        with KeepAliveClient(url, settings()) as client, pytest.raises(requests.ConnectionError) as caught:
            put(client, url + "/ok", log)
    assert "NewConnectionError" in str(caught.value)
    assert [e["error"] for e in log] == ["ConnectionError"]


def test_a_url_of_another_origin_is_refused(server: Server) -> None:
    with KeepAliveClient(server.url, settings()) as client, pytest.raises(ValueError):
        put(client, "http://example.org/ok", [])
    assert server.seen == []


# --- TLS and proxy ---------------------------------------------------------------------------------


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    cert_file, key_file = _certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    with Server(tls=context).running() as running:
        yield running, cert_file


def test_certificates_are_checked_against_requests_bundle(tls_server: tuple[Server, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    server, cert_file = tls_server
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    log: list[dict] = []
    with KeepAliveClient(server.url, settings()) as client, pytest.raises(requests.ConnectionError):
        put(client, server.url + "/ok", log)  # self-signed: not in certifi's bundle
    assert server.seen == []
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
    with KeepAliveClient(server.url, settings()) as client:
        assert put(client, server.url + "/ok", log).status_code == 201
    assert [e["status"] for e in log] == [None, 201]


class ConnectProxy:
    """A CONNECT-only forward proxy: keeps each CONNECT target and its Proxy-Authorization, then relays bytes."""

    def __init__(self) -> None:
        self.tunnels: list[tuple[str, str | None]] = []
        tunnels = self.tunnels

        class Handler(BaseHTTPRequestHandler):
            def do_CONNECT(self) -> None:
                tunnels.append((self.path, self.headers.get("Proxy-Authorization")))
                host, port = self.path.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)))
                self.send_response(200, "Connection established")
                self.end_headers()
                sockets = [self.connection, upstream]
                while True:
                    readable, _, _ = select.select(sockets, [], [], 10)
                    if not readable:
                        break
                    data = b""
                    for sock in readable:
                        data = sock.recv(65536)
                        if not data:
                            break
                        (upstream if sock is self.connection else self.connection).sendall(data)
                    if not data:
                        break
                upstream.close()

            def log_message(self, *args: object) -> None:
                pass

        self.handler = Handler


def test_the_environments_proxy_is_used_through_a_tunnel(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = ConnectProxy()
    with serving(proxy.handler) as proxy_server:
        port = proxy_server.server_address[1]
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://user:p%40ss@127.0.0.1:{port}")
        with KeepAliveClient(server.url, settings()) as client:
            assert put(client, server.url + "/ok", []).status_code == 201
            assert put(client, server.url + "/ok", []).status_code == 201
        target = server.url.removeprefix("http://")
        assert proxy.tunnels == [(target, "Basic dXNlcjpwQHNz")]  # user:p@ss, one tunnel for both calls
        monkeypatch.delenv("HTTP_PROXY")
        monkeypatch.setenv("ALL_PROXY", f"127.0.0.1:{port}")  # requests' rules: any scheme,
        with KeepAliveClient(server.url, settings()) as client:  # and http:// when none is given
            assert put(client, server.url + "/ok", []).status_code == 201
        assert proxy.tunnels[1:] == [(target, None)]
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # NO_PROXY wins
        with KeepAliveClient(server.url, settings()) as client:
            assert put(client, server.url + "/ok", []).status_code == 201
        assert len(proxy.tunnels) == 2 and len(server.seen) == 4
