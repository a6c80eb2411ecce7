"""A small loopback HTTP server base for the NBIA and Synapse stand-ins.

Binds 127.0.0.1 on an ephemeral port, serves from a background thread, keeps a request log the tests can
inspect, and stops by itself after ``idle_timeout`` seconds without a request (or ``lifetime`` seconds in
total), so a test that forgets to stop it cannot leave it running. Use it as a context manager.
Authorization headers are never logged: the log records only whether a request carried valid credentials.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from etl.standins.faults import HTML_ERROR_PAGE, Faults

log = logging.getLogger("etl.standins")
_Server = TypeVar("_Server", bound="LoopbackServer")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; Authorization is removed before logging
    body: bytes


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop_after: int | None = None  # close the connection after this many body bytes
    delay: float = 0.0  # wait before the status line
    close_delimited: bool = False  # no Content-Length: the body ends when the connection closes

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain") -> Response:
        return cls(status, text.encode(), {"Content-Type": content_type})


@dataclass(frozen=True)
class LogEntry:
    t: float
    method: str
    path: str
    query: dict[str, str]
    ids: frozenset[str]
    status: int
    bytes_sent: int
    fault: str
    auth: str  # "none" | "ok" | "bad" | "n/a"


class _QuietServer(ThreadingHTTPServer):
    """A client hanging up (a timeout, a retry, a killed run) is routine for a stand-in, not a traceback on
    the rehearsing curator's terminal; anything else is logged as one line."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("client %s went away: %s", client_address, exc)
        else:
            log.warning("stand-in request from %s failed: %r", client_address, exc)


class LoopbackServer:
    """Subclasses implement ``handle(request) -> (Response, ids, fault, auth)``."""

    name = "stand-in"

    def __init__(self, faults: Faults | None = None, idle_timeout: float = 120.0, lifetime: float | None = None) -> None:
        self.faults = faults or Faults()
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self.log: list[LogEntry] = []
        self._log_lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()
        self._last = time.monotonic()
        self.stopped_by_idle = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self: _Server) -> _Server:
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.name}-serve", daemon=True)  # fmt: skip
        self._thread.start()
        self._started = time.monotonic()
        self._last = self._started
        self._watchdog = threading.Thread(target=self._watch, name=f"{self.name}-watchdog", daemon=True)
        self._watchdog.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            idle = now - self._last > self.idle_timeout
            old = self.lifetime is not None and now - self._started > self.lifetime
            if idle or old:
                self.stopped_by_idle = True
                log.info("%s on %s stopping by itself (%s)", self.name, self.origin, "idle" if idle else "lifetime")
                self._shutdown()
                return

    def _shutdown(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def stop(self) -> None:
        if not self._stop.is_set():
            self._shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return not self._stop.is_set()

    def wait(self, seconds: float | None = None) -> None:
        """Block until stopped (idle/lifetime) or ``seconds`` pass."""
        self._stop.wait(seconds)

    def __enter__(self: _Server) -> _Server:
        return self.start() if self._httpd is None else self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ log
    def requests(self, path_contains: str = "", **query: str) -> list[LogEntry]:
        with self._log_lock:
            entries = list(self.log)
        return [
            e for e in entries
            if path_contains in e.path and all(e.query.get(k) == v for k, v in query.items())
        ]  # fmt: skip

    def _record(self, entry: LogEntry) -> None:
        with self._log_lock:
            self.log.append(entry)

    def _replace(self, old: LogEntry, new: LogEntry) -> None:
        with self._log_lock:
            for i in range(len(self.log) - 1, -1, -1):
                if self.log[i] is old:
                    self.log[i] = new
                    return

    def touch(self) -> None:
        self._last = time.monotonic()

    def should_stop(self) -> bool:
        return self._stop.is_set()

    # ------------------------------------------------------------------ shared fault knobs
    _STATUS_KNOBS = (("http500", 500, "Internal Server Error"), ("http503", 503, "Service Unavailable"),
                     ("http429", 429, "Too Many Requests"))  # fmt: skip

    def status_fault(self, ids: set[str], as_json: bool, skip: tuple[str, ...] = ()) -> tuple[Response, str] | None:
        """The injected error answer for this request (http500/http503/http429/html_200), if one fires."""
        for knob, status, text in self._STATUS_KNOBS:
            if knob not in skip and self.faults.take(knob, ids):
                body = f"{text} (injected)"
                resp = Response.json({"reason": body}, status) if as_json else Response.text(body, status)
                if status != 500 and self.faults.retry_after > 0:
                    resp.headers["Retry-After"] = f"{self.faults.retry_after:g}"
                return resp, knob
        if self.faults.take("html_200", ids):  # a proxy or maintenance page answering 200 for anything
            return Response(200, HTML_ERROR_PAGE, {"Content-Type": "text/html; charset=utf-8"}), "html_200"
        return None

    # ------------------------------------------------------------------ to implement
    def handle(self, req: Request) -> tuple[Response, set[str], str, str]:
        raise NotImplementedError


class _Handler(BaseHTTPRequestHandler):
    server_owner: LoopbackServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body go out as separate writes; without NODELAY, Nagle + delayed ACK add ~40 ms each
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return  # the owner keeps its own structured log

    def _serve(self) -> None:
        owner = self.server_owner
        owner.touch()
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = Request(self.command, parts.path, query, headers, body)
        try:
            resp, ids, fault, auth = owner.handle(req)
        except Exception as exc:  # a stand-in bug must show up as a 500 with the reason, not a hang
            log.exception("%s failed on %s %s", owner.name, self.command, self.path)
            resp, ids, fault, auth = Response.text(f"stand-in error: {exc}", 500), set(), "bug", "n/a"
        # logged before the answer goes out, so a client that has its answer always finds it in the log
        body_len = 0 if self.command == "HEAD" else len(resp.body)
        planned = body_len if resp.drop_after is None else min(body_len, resp.drop_after)
        entry = LogEntry(time.time(), self.command, parts.path, query, frozenset(ids), resp.status, planned, fault, auth)
        owner._record(entry)
        sent = self._send(resp)
        if sent != planned:  # the client went away mid-answer
            owner._replace(entry, dataclasses.replace(entry, bytes_sent=sent))
        owner.touch()

    def _send(self, resp: Response) -> int:
        if resp.delay > 0:
            end = time.monotonic() + resp.delay
            while time.monotonic() < end and not self.server_owner.should_stop():
                time.sleep(0.02)
        body = b"" if self.command == "HEAD" else resp.body
        try:
            self.send_response(resp.status)
            for k, v in resp.headers.items():
                self.send_header(k, v)
            if resp.close_delimited:
                self.close_connection = True
                self.send_header("Connection", "close")
            elif not any(k.lower() == "content-length" for k in resp.headers):
                self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if resp.drop_after is not None:
                self.wfile.write(body[: resp.drop_after])
                self.wfile.flush()
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return min(len(body), resp.drop_after)
            self.wfile.write(body)
            return len(body)
        except OSError:  # the client gave up (timeout) or the connection broke: nothing more to send
            self.close_connection = True
            return 0

    do_GET = _serve
    do_POST = _serve
    do_HEAD = _serve
    do_PUT = _serve
