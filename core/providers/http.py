"""The technical HTTP log: every call to DATEV or Lexware Office, kept at least 14 days.

Recorded: method, host, path (no query string), status, duration, `X-Global-Transaction-ID`,
`V-Cap-Request-ID`, a short error text, and what the call was for. Never the Authorization header,
a token, a body or a query string. Each entry is written in its own short transaction right after
the call (Core insert of the column values), so callers must not hold a transaction open across HTTP
(they never do); the transfer engine collects an upload's entries (`CallContext.sink`) and writes them
with the upload's outcome instead.

Two clients, one set of rules (total deadline, size cap, certificate checks, the environment's proxy,
the log line): requests sessions guarded by `DeadlineAdapter` for every call, and `KeepAliveClient`
(the standard library's http.client on one kept connection) for the transfer engine's uploads, the
one path where the client's own CPU per call matters.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import heapq
import http.client
import itertools
import json
import logging
import os
import select as io_select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from email.message import Message
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from sqlalchemy import Engine, delete, insert
from sqlmodel import col, select
from urllib3.fields import RequestField

from core.platform.config import Settings
from core.platform.db import unit_of_work
from core.platform.models import HttpLogEntry, clip, utcnow

log = logging.getLogger(__name__)

# requests-oauthlib and oauthlib log tokens and Basic credentials at DEBUG (docs/style.md §3.3 rule 6).
for _noisy in ("requests_oauthlib", "oauthlib", "urllib3"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)


@dataclass(frozen=True)
class CallContext:
    """What a provider call belongs to; stored with its log line."""

    provider: str
    purpose: str
    company_id: int | None = None
    connection_id: int | None = None
    correlation_id: str | None = None
    # When set, log entries are collected here instead of written at once: the transfer engine writes
    # an upload's log line in the same transaction as its outcome (one write transaction less).
    sink: list[dict[str, Any]] | None = field(default=None, compare=False, repr=False)

    def with_purpose(self, purpose: str) -> CallContext:
        return replace(self, purpose=purpose)


_INSERT_ENTRY = insert(HttpLogEntry)  # built once: every entry has the same columns (see _entry)


def _write(engine: Engine, entry: dict[str, Any], ctx: CallContext) -> None:
    if ctx.sink is not None:
        ctx.sink.append(entry)
        return
    try:
        with engine.begin() as conn:
            conn.execute(_INSERT_ENTRY, entry)
    except Exception:  # the log must never turn a good call into a failure
        log.warning("could not write the HTTP log entry for %s %s", entry["method"], entry["path"], exc_info=True)


def _entry(ctx: CallContext, method: str, url: str, started: float) -> dict[str, Any]:
    """The column values of one `HttpLogEntry` (all of them, so one built insert serves every entry)."""
    parts = urlsplit(url)
    return {"at": utcnow(), "provider": ctx.provider, "method": method.upper(),
            "host": clip(HttpLogEntry.host, parts.hostname or ""), "path": clip(HttpLogEntry.path, parts.path or "/"),
            "status": None, "duration_ms": int((time.monotonic() - started) * 1000), "global_transaction_id": None,
            "request_id": None, "error": None, "company_id": ctx.company_id, "connection_id": ctx.connection_id,
            "purpose": ctx.purpose, "correlation_id": ctx.correlation_id}


class Headers(Protocol):
    """An answer's headers, looked up without regard to case (requests' and http.client's alike)."""

    def get(self, name: str, /) -> str | None: ...


def record_answer(engine: Engine, ctx: CallContext, method: str, url: str, status: int, headers: Headers,
                  started: float) -> None:
    entry = _entry(ctx, method, url, started)
    entry["status"] = status
    entry["global_transaction_id"] = clip(HttpLogEntry.global_transaction_id, headers.get("X-Global-Transaction-ID"))
    entry["request_id"] = clip(HttpLogEntry.request_id, headers.get("V-Cap-Request-ID"))
    _write(engine, entry, ctx)


def record_response(engine: Engine, ctx: CallContext, response: requests.Response, started: float) -> None:
    record_answer(engine, ctx, response.request.method or "GET", response.url, response.status_code,
                  response.headers, started)


def record_failure(engine: Engine, ctx: CallContext, method: str, url: str, exc: BaseException,
                   started: float) -> None:
    entry = _entry(ctx, method, url, started)
    entry["error"] = clip(HttpLogEntry.error, type(exc).__name__)  # the class only: messages can echo URLs or bodies
    _write(engine, entry, ctx)


@contextmanager
def recorded(engine: Engine, ctx: CallContext, session: requests.Session, method: str, url: str) -> Iterator[None]:
    """Record the response (through a hook) or the transport failure of the call made inside."""
    started = time.monotonic()

    def hook(response: requests.Response, *_args: object, **_kwargs: object) -> None:
        record_response(engine, ctx, response, started)

    session.hooks["response"].append(hook)
    try:
        yield
    except requests.RequestException as exc:
        if getattr(exc, "response", None) is None:
            record_failure(engine, ctx, method, url, exc, started)
        raise
    finally:
        session.hooks["response"].remove(hook)


def never_sent(exc: requests.RequestException) -> bool:
    """True only when the request certainly did not reach the provider (so sending it again is safe)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(exc, DeadlineExceeded):
        text = repr(exc)
        return "NewConnectionError" in text or "Connection refused" in text
    return False


def failure_in_words(exc: requests.RequestException) -> str:
    """A transport failure in German, for people (the exception's class goes to the HTTP log)."""
    if never_sent(exc):
        return "keine Verbindung"
    if isinstance(exc, DeadlineExceeded):
        return "Antwort nicht rechtzeitig vollständig"
    if isinstance(exc, requests.exceptions.Timeout):
        return "Zeitüberschreitung"
    if isinstance(exc, ResponseTooLarge):
        return "Antwort zu groß"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "Verbindung abgebrochen"
    return "Übertragungsfehler"


class DeadlineExceeded(requests.Timeout):
    """The answer did not arrive completely within the call's total deadline (e.g. a slow drip).
    A Timeout: like a read timeout, the request may have reached the provider."""


class ResponseTooLarge(requests.RequestException):
    """The answer is larger than the cap (HTTP_MAX_RESPONSE_BYTES); it was not read."""


class _Alarm:
    """One call's deadline: `fire` runs the action unless `cancel` came first (never after it returned)."""

    __slots__ = ("action", "lock")

    def __init__(self, action: Callable[[], None]) -> None:
        self.action: Callable[[], None] | None = action
        self.lock = threading.Lock()

    def cancel(self) -> None:
        with self.lock:
            self.action = None  # also lets go of the socket the action would shut down

    def fire(self) -> None:
        with self.lock:
            action, self.action = self.action, None
            if action is not None:
                action()


class _Watchdog:
    """One thread for the deadlines of every call in the process (a `threading.Timer` per call started
    and ended a thread per upload: measurable CPU on the transfer path). Cancelled alarms are dropped
    lazily; the thread sleeps until the earliest deadline."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, _Alarm]] = []
        self.cond = threading.Condition()
        self.order = itertools.count()
        self.thread: threading.Thread | None = None

    def arm(self, at: float, action: Callable[[], None]) -> _Alarm:
        alarm = _Alarm(action)
        with self.cond:
            if self.thread is None or not self.thread.is_alive():  # first call, or a forked child
                self.thread = threading.Thread(target=self.run, name="http-deadlines", daemon=True)
                self.thread.start()
            heapq.heappush(self.heap, (at, next(self.order), alarm))
            if self.heap[0][2] is alarm:  # earlier than anything the thread waits for
                self.cond.notify()
        return alarm

    def run(self) -> None:
        while True:
            with self.cond:
                while True:
                    while self.heap and self.heap[0][2].action is None:  # cancelled (or fired)
                        heapq.heappop(self.heap)
                    delay = self.heap[0][0] - time.monotonic() if self.heap else None
                    if delay is not None and delay <= 0:
                        due = heapq.heappop(self.heap)[2]
                        break
                    self.cond.wait(delay)
            due.fire()  # outside the heap's lock


_watchdog = _Watchdog()


class DeadlineAdapter(HTTPAdapter):
    """Every call ends at its total deadline, and no answer above the size cap is read into memory.

    requests only knows a connect and a per-read timeout, so a server that sends one byte now and
    then keeps a call open for ever. This adapter reads the body itself, in chunks, with a watchdog
    that shuts the socket down at the deadline; the status line and headers are bounded by the read
    timeout (capped at the deadline) per packet. Both errors are `requests.RequestException`s, so
    every caller already treats them as "no usable answer".
    """

    def __init__(self, deadline: float, max_bytes: int) -> None:
        super().__init__()
        self.deadline, self.max_bytes = deadline, max_bytes

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: float | tuple[float, float] | tuple[float, None] | None = None, verify: bool | str = True,
             cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
             proxies: Mapping[str, str] | None = None) -> requests.Response:
        started = time.monotonic()
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        bounded = (min(connect or self.deadline, self.deadline), min(read or self.deadline, self.deadline))
        response = super().send(request, stream=True, timeout=bounded, verify=verify, cert=cert, proxies=proxies)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response.close()
            raise ResponseTooLarge(f"answer of {declared} bytes exceeds the cap of {self.max_bytes}")
        call = _Call(started, self.deadline, _socket_of(response))
        try:
            body = _read_within(response.raw.stream(16 * 1024, decode_content=True), self.max_bytes, call.has_expired)
        except ResponseTooLarge:
            response.close()
            raise
        except Exception as exc:  # noqa: BLE001  (a read cut by the watchdog, or any broken read)
            response.close()
            if call.has_expired():
                raise call.exceeded() from None
            raise requests.ConnectionError(f"answer broken off ({type(exc).__name__})") from None
        finally:
            call.cancel()
        if call.passed():
            response.close()
            raise call.exceeded()
        response._content = bytes(body)  # what requests' .content reads
        response.__dict__["_content_consumed"] = True  # requests' private flag: iter_content reuses _content
        return response


class _Call:
    """One call's total deadline, for `DeadlineAdapter` and `KeepAliveClient` alike: armed on the shared
    watchdog when made, which at the deadline shuts `sock` down (a read that waits for a dripping server
    ends); `cancel` when the call is over. Without a socket yet (still connecting) the deadline is checked
    between steps (`passed`)."""

    __slots__ = ("alarm", "deadline", "expired", "sock", "started")

    def __init__(self, started: float, deadline: float, sock: socket.socket | None = None) -> None:
        self.started, self.deadline, self.sock, self.expired = started, deadline, sock, False
        self.alarm = _watchdog.arm(started + deadline, self.abort)

    def has_expired(self) -> bool:  # set by the watchdog's thread: read it through a call, never narrowed
        return self.expired

    def passed(self) -> bool:
        return self.expired or time.monotonic() - self.started > self.deadline

    def exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"no complete answer within {self.deadline:g} s")

    def abort(self) -> None:  # the watchdog's thread
        self.expired = True
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self.alarm.cancel()


def _read_within(chunks: Iterator[bytes], max_bytes: int, expired: Callable[[], bool]) -> bytearray:
    """An answer's body, chunk by chunk: refused above the cap, ended early when the deadline passed."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise ResponseTooLarge(f"answer exceeds the cap of {max_bytes} bytes")
        if expired():
            break
    return body


SessionT = TypeVar("SessionT", bound=requests.Session)


def _socket_of(response: requests.Response) -> socket.socket | None:
    """The socket a streamed response reads from (urllib3 → http.client → its buffered socket file).

    urllib3 hands the socket to the response once the headers are in, so the connection object no
    longer has it; without a socket the deadline is checked between reads only."""
    raw = getattr(getattr(getattr(response.raw, "_fp", None), "fp", None), "raw", None)
    found = getattr(raw, "_sock", None)
    return found if isinstance(found, socket.socket) else None


def guard(session: SessionT, settings: Settings) -> SessionT:
    """Mount the deadline and size cap on every request the session makes (also requests-oauthlib's)."""
    adapter = DeadlineAdapter(settings.http_deadline_seconds, settings.http_max_response_bytes)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def new_session(settings: Settings) -> requests.Session:
    """A session for one or a few calls, with the deadline and the size cap."""
    return guard(requests.Session(), settings)


def send(engine: Engine, ctx: CallContext, session: requests.Session, method: str, url: str,
         **kwargs: Any) -> requests.Response:
    """`session.request(...)`, recorded in the HTTP log."""
    with recorded(engine, ctx, session, method, url):
        return session.request(method, url, **kwargs)


def multipart(fields: Mapping[str, tuple[str | None, bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body of `fields` (name → (file name or None, bytes, media type)) and its
    Content-Type, built as requests builds `files=` (urllib3's encoder, one part per field)."""
    parts = []
    for name, (file_name, data, media_type) in fields.items():
        part = RequestField(name=name, data=data, filename=file_name)
        part.make_multipart(content_type=media_type)
        parts.append(part)
    return urllib3.encode_multipart_formdata(parts)


@dataclass(frozen=True)
class Answer:
    """A complete answer of a `KeepAliveClient` call, read within the size cap and the deadline. Reads like
    the parts of `requests.Response` the providers use (`status_code`, `headers`, `content`, `json()`)."""

    status_code: int
    headers: Message  # case-insensitive `get`, as requests' headers
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


USER_AGENT = "TokenDesk"  # what uploads say they are (requests said python-requests/<version>)
_tls_contexts: dict[str, ssl.SSLContext] = {}


def _tls_context() -> ssl.SSLContext:
    """Certificate checks as requests does them: REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (a file, or a directory
    of certificates), else requests' own bundle (certifi's)."""
    bundle = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
              or requests.utils.DEFAULT_CA_BUNDLE_PATH)
    context = _tls_contexts.get(bundle)
    if context is None:
        context = _tls_contexts[bundle] = (ssl.create_default_context(capath=bundle) if os.path.isdir(bundle)
                                           else ssl.create_default_context(cafile=bundle))
    return context


def _dropped(sock: socket.socket) -> bool:
    """A kept-alive connection the server closed (or that has unexpected bytes waiting) is not reused
    (urllib3 checks the same before reusing a pooled connection)."""
    poller = io_select.poll()
    poller.register(sock, io_select.POLLIN)
    return bool(poller.poll(0))


class KeepAliveClient:
    """HTTP/1.1 calls with keep-alive to one provider origin: the transfer engine's uploads, one client per
    worker and pass (not shared between threads).

    The hot path of a pass, so it is the standard library's `http.client` on one kept connection instead
    of requests (measured on one upload: 0.47 instead of 1.1–1.2 ms of CPU; bench/README.md, issue #11).
    What requests and `DeadlineAdapter` give every other call holds here too: the total deadline
    (HTTP_DEADLINE_SECONDS: from the request on, the shared watchdog shuts the socket down; opening a
    connection is bounded by the connect timeout per step, name lookup and connect, a proxy's CONNECT, the
    TLS handshake, and nothing is sent once the deadline has passed), the size cap (HTTP_MAX_RESPONSE_BYTES,
    declared or streamed), an answer cut off before its Content-Length is a broken answer, certificate
    checks (requests' CA bundle rules), the environment's proxy for the origin (HTTPS_PROXY, HTTP_PROXY,
    ALL_PROXY, NO_PROXY as requests reads them; the call goes through a CONNECT tunnel, so the proxy must
    be an http:// one), no redirect followed, and one HTTP log line per call. Transport failures are
    `requests.RequestException`s, as from a session: every caller already treats them as "no usable
    answer", and their messages name no header or body. A kept connection the server has closed
    meanwhile is noticed before it is used, and a fresh one is opened; a call that fails once sent is
    never repeated here (whether it arrived is the caller's question).
    """

    def __init__(self, base_url: str, settings: Settings) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be an http(s) URL")
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port or (443 if self.https else 80)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.deadline, self.max_bytes = settings.http_deadline_seconds, settings.http_max_response_bytes
        self.connect_timeout, self.read_timeout = (min(t, self.deadline) for t in settings.http_timeout)
        proxy = requests.utils.select_proxy(base_url, requests.utils.get_environ_proxies(base_url))  # ALL_PROXY too
        self.proxy = requests.utils.prepend_scheme_if_needed(proxy, "http") if proxy else None
        self.conn: http.client.HTTPConnection | None = None

    def __enter__(self) -> KeepAliveClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _open(self) -> http.client.HTTPConnection:
        host, port, tunnel_headers = self.host, self.port, None
        if self.proxy:
            proxy = urlsplit(self.proxy)
            if proxy.scheme != "http" or not proxy.hostname:
                raise requests.exceptions.InvalidProxyURL("uploads go through an http:// proxy (CONNECT) only")
            host, port = proxy.hostname, proxy.port or 80
            if proxy.username:
                credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
                tunnel_headers = {"Proxy-Authorization": "Basic " + base64.b64encode(credentials).decode()}
        conn: http.client.HTTPConnection
        if self.https:
            conn = http.client.HTTPSConnection(host, port, timeout=self.connect_timeout, context=_tls_context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        if self.proxy:
            conn.set_tunnel(self.host, self.port, headers=tunnel_headers)
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(self.read_timeout)
        return conn

    def send(self, engine: Engine, ctx: CallContext, method: str, url: str, *, body: bytes,
             headers: Mapping[str, str]) -> Answer:
        """One call on the kept connection (opened or replaced as needed), recorded in the HTTP log."""
        if not url.startswith(self.origin + "/"):
            raise ValueError("the URL is not on this client's origin")
        started = time.monotonic()
        call = _Call(started, self.deadline)
        connected = False
        try:
            conn = self.conn
            if conn is None or _dropped(conn.sock):
                self.close()
                conn = self.conn = self._open()
            connected = True
            call.sock = conn.sock
            if call.passed():  # opening took it all
                raise call.exceeded()
            try:
                conn.request(method, url[len(self.origin):], body=body, headers={"User-Agent": USER_AGENT, **headers})
            except (ValueError, UnicodeError):  # http.client's message would quote the header's value
                raise requests.exceptions.InvalidHeader("a header value cannot be sent") from None
            response = conn.getresponse()
            declared = response.getheader("Content-Length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise ResponseTooLarge(f"answer of {declared} bytes exceeds the cap of {self.max_bytes}")
            content = _read_within(iter(functools.partial(response.read, 16 * 1024), b""), self.max_bytes,
                                   call.has_expired)
            if call.passed():
                raise call.exceeded()
            if response.length:  # the server hung up before its Content-Length (http.client returns b"")
                raise requests.ConnectionError("answer broken off (IncompleteRead)")
            if response.will_close:
                self.close()
        except requests.RequestException as exc:
            self.close()
            record_failure(engine, ctx, method, url, exc, started)
            raise
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            failure = _transport_failure(exc, call, connected=connected)
            record_failure(engine, ctx, method, url, failure, started)
            raise failure from None
        except BaseException:  # anything else (a bug, an interrupt): the connection's state is unknown, drop it
            self.close()
            raise
        finally:
            call.cancel()
        answer = Answer(response.status, response.msg, bytes(content))
        record_answer(engine, ctx, method, url, answer.status_code, answer.headers, started)
        return answer


def _transport_failure(exc: BaseException, call: _Call, *, connected: bool) -> requests.RequestException:
    """A `KeepAliveClient` call's failure as the `requests` exception a session would have raised."""
    if call.has_expired():
        return call.exceeded()
    if not connected:  # nothing was sent
        if isinstance(exc, TimeoutError):
            return requests.ConnectTimeout(f"connect timed out ({type(exc).__name__})")
        return requests.ConnectionError(f"NewConnectionError: could not connect ({type(exc).__name__})")
    if isinstance(exc, TimeoutError):
        return requests.ReadTimeout(f"read timed out ({type(exc).__name__})")
    return requests.ConnectionError(f"answer broken off ({type(exc).__name__})")


def purge_older_than(engine: Engine, days: int) -> int:
    """Housekeeping: delete log lines older than the retention (never below DATEV's 14 days)."""
    cutoff = utcnow() - timedelta(days=max(days, 14))
    with unit_of_work(engine) as session:
        result = session.exec(delete(HttpLogEntry).where(col(HttpLogEntry.at) < cutoff))
        return result.rowcount or 0


def entries_for(engine: Engine, *, correlation_id: str | None = None, connection_id: int | None = None,
                limit: int = 200) -> list[HttpLogEntry]:
    with unit_of_work(engine) as session:
        query = select(HttpLogEntry).order_by(col(HttpLogEntry.id).desc()).limit(limit)
        if correlation_id:
            query = query.where(HttpLogEntry.correlation_id == correlation_id)
        if connection_id is not None:
            query = query.where(HttpLogEntry.connection_id == connection_id)
        return list(session.exec(query).all())
