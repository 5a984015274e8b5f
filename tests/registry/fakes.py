"""Small misbehaving HTTP servers on 127.0.0.1 for registry tests: liars, redirectors, drips, silence.

A :class:`ScriptedServer` answers from a route table (path -> :class:`Route`) and records every request.
A :class:`SilentServer` accepts TCP connections and never answers.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

DRIP_STOP_SECONDS = 10.0
"""A dripping answer gives up after this long, so no test thread outlives its test by much."""


@dataclass(frozen=True)
class Route:
    """How to answer one path. ``drip`` sends the body a byte at a time with that pause.

    ``raw`` replaces the body: its pieces are written as they are (no framing added), as fast as the
    client takes them, until it hangs up or :data:`DRIP_STOP_SECONDS` pass; it may be endless.
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunked: bool = False
    content_length: int | None = None  # a lie, when set; -1: no Content-Length, the body ends at close
    drip: float | None = None
    raw: Callable[[], Iterable[bytes]] | None = None


@dataclass(frozen=True)
class Seen:
    """A request the server received (``peer``: the client's port, one per TCP connection)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    peer: int = 0


Responder = Callable[[Seen], Route]


class _QuietServer(http.server.ThreadingHTTPServer):
    """Clients that hang up early are the point of these tests: no tracebacks for them."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return


class ScriptedServer:
    """An HTTP(S) server in a thread; unknown paths get a 404."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route | Responder] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                seen = Seen(
                    self.command,
                    parts.path,
                    parts.query,
                    dict(self.headers.items()),
                    peer=self.client_address[1],
                )
                with server._lock:
                    server.seen.append(seen)
                    route = server.routes.get(
                        parts.path, Route(404, body=b'{"errors":[{"code":"NOT_FOUND"}]}')
                    )
                if callable(route):
                    route = route(seen)
                server._answer(self, route)

            def do_GET(self) -> None:
                self._handle()

            def do_HEAD(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def connections(self) -> int:
        """How many TCP connections the requests so far came over."""
        with self._lock:
            return len({s.peer for s in self.seen})

    def paths(self, method: str | None = None) -> list[str]:
        """The paths requested so far (optionally only those of ``method``)."""
        with self._lock:
            return [s.path for s in self.seen if method is None or s.method == method]

    def _answer(self, handler: http.server.BaseHTTPRequestHandler, route: Route) -> None:
        handler.send_response(route.status)
        for name, value in route.headers.items():
            handler.send_header(name, value)
        if route.chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        elif route.content_length == -1:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        else:
            length = route.content_length if route.content_length is not None else len(route.body)
            handler.send_header("Content-Length", str(length))
        handler.end_headers()
        if handler.command == "HEAD":
            return
        try:
            if route.raw is not None:
                deadline = time.monotonic() + DRIP_STOP_SECONDS
                for piece in route.raw():
                    if self._stop.is_set() or time.monotonic() > deadline:
                        break
                    handler.wfile.write(piece)
                handler.close_connection = True
            elif route.drip is not None:
                deadline = time.monotonic() + DRIP_STOP_SECONDS
                for i in range(len(route.body)):
                    if self._stop.is_set() or time.monotonic() > deadline:
                        break
                    piece = route.body[i : i + 1]
                    handler.wfile.write(b"1\r\n" + piece + b"\r\n" if route.chunked else piece)
                    handler.wfile.flush()
                    time.sleep(route.drip)
            elif route.chunked:
                step = 4096
                for i in range(0, len(route.body), step):
                    piece = route.body[i : i + step]
                    handler.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                handler.wfile.write(b"0\r\n\r\n")
            else:
                handler.wfile.write(route.body)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            handler.close_connection = True

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class SilentServer:
    """Listens on 127.0.0.1 and never answers: connections complete (backlog), reads hang."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._sock.close()


@contextmanager
def scripted(tls: ssl.SSLContext | None = None) -> Iterator[ScriptedServer]:
    """A :class:`ScriptedServer` for the duration of a ``with`` block."""
    server = ScriptedServer(tls)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def silent() -> Iterator[SilentServer]:
    """A :class:`SilentServer` for the duration of a ``with`` block."""
    server = SilentServer()
    try:
        yield server
    finally:
        server.stop()


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
