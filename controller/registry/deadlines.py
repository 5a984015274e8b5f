"""Socket deadlines: one watcher thread cuts the socket of any wait still running at its deadline.

A socket timeout bounds one ``recv``, not a whole exchange: a server that drips a byte every second
never trips it. So every wait of a hop -- the response headers and the body -- is registered with
:data:`DEADLINES`, which shuts the socket down when the hop's deadline passes, waking the blocked read.

* :class:`Deadlines` is one daemon thread for the process (not a thread per request).
* :func:`hop_deadline` tells the connections of the current thread the deadline of the hop being sent
  (a thread-local, since urllib3 offers no per-request hook); :class:`WatchedAdapter`'s connections
  register their socket while they wait for the response headers.
* :func:`install` mounts the watched adapter on a session whose adapters are requests' plain ones,
  keeping their pool sizes; connection reuse is untouched.

A TLS handshake is not watched (its socket is replaced mid-way); it is bounded per read by the connect
timeout, which the caller clips to the time left.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import requests.adapters
import requests.utils
import urllib3.connection
import urllib3.connectionpool
import urllib3.response
import urllib3.util.ssl_
from requests.adapters import DEFAULT_POOLBLOCK, DEFAULT_POOLSIZE

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class _Cut:
    """A socket to cut at ``deadline`` (monotonic seconds) unless released first."""

    sock: socket.socket
    deadline: float
    fired: bool = False


class Deadlines:
    """One daemon thread that cuts the socket of every wait still running when its deadline passes.

    Starting a thread per body read cost ~1 ms each; here a wait costs two short lock holds. The thread
    is started on first use (and again in a forked child), sleeps until the earliest deadline it
    holds (or an earlier planned wake-up), and is woken only when a new deadline is earlier than that.
    """

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._active: set[_Cut] = set()
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket | None, deadline: float) -> _Cut | None:
        """Cut ``sock`` at ``deadline`` unless :meth:`release` comes first; None without a socket."""
        if sock is None:
            return None
        cut = _Cut(sock, deadline)
        with self._lock:
            self._active.add(cut)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="imprimatur-registry-deadlines", daemon=True
                )
                self._thread.start()
            if deadline < self._wake_at:
                self._wake_at = deadline
                self._lock.notify()
        return cut

    def release(self, cut: _Cut | None) -> bool:
        """Stop watching ``cut``; True when its deadline had already passed and its socket was cut."""
        if cut is None:
            return False
        with self._lock:
            self._active.discard(cut)
            return cut.fired

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                for cut in [c for c in self._active if c.deadline <= now]:
                    self._active.discard(cut)
                    cut.fired = True
                    try:
                        # The plain socket's shutdown, bypassing ssl.SSLSocket's: wakes a blocked recv.
                        socket.socket.shutdown(cut.sock, socket.SHUT_RDWR)
                    except OSError:
                        log.debug("deadline: socket already closed")
                # Keep a planned wake-up that is still ahead even when nothing is left to watch, so
                # that a steady stream of reads (each released long before its deadline) does not
                # wake this thread once per read.
                planned = self._wake_at if self._wake_at > now else math.inf
                self._wake_at = min(min((c.deadline for c in self._active), default=math.inf), planned)
                self._lock.wait(None if self._wake_at == math.inf else self._wake_at - now)


DEADLINES = Deadlines()

_HOP = threading.local()


@contextmanager
def hop_deadline(deadline: float) -> Iterator[None]:
    """While the block runs, this thread's watched connections cut their header wait at ``deadline``."""
    previous = getattr(_HOP, "deadline", None)
    _HOP.deadline = deadline
    try:
        yield
    finally:
        _HOP.deadline = previous


def _watched_getresponse(conn: urllib3.connection.HTTPConnection) -> urllib3.response.HTTPResponse:
    deadline: float | None = getattr(_HOP, "deadline", None)
    cut = DEADLINES.watch(conn.sock, deadline) if deadline is not None else None
    try:
        return urllib3.connection.HTTPConnection.getresponse(conn)
    finally:
        DEADLINES.release(cut)


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]
        return _watched_getresponse(self)


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]
        return _watched_getresponse(self)


class _WatchedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _Contexts:
    """One TLS context per (CA file or directory, client certificate), built once and reused.

    urllib3 otherwise builds a context for every new connection and loads its CA certificates into
    it: the system bundle took 30-50 ms of CPU each time, so a registry that accepts and never
    answers (or simply a cold connection) cost that much per attempt. A file's modification time is
    part of the key, so a rotated CA or client certificate is picked up by the next connection.
    """

    def __init__(self) -> None:
        self._contexts: dict[tuple[object, ...], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def get(self, ca: str | None, ca_dir: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
        stamp = tuple(_mtime(path) for path in (ca, ca_dir, cert, key))
        index = (ca, ca_dir, cert, key, stamp)
        with self._lock:  # built under the lock: eight workers meeting a new registry build it once
            found = self._contexts.get(index)
            if found is not None:
                return found
            context = urllib3.util.ssl_.create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
            if ca or ca_dir:
                context.load_verify_locations(cafile=ca, capath=ca_dir)
            else:  # what requests verifies against by default: certifi's bundle
                context.load_verify_locations(cafile=requests.utils.DEFAULT_CA_BUNDLE_PATH)
            if cert:
                context.load_cert_chain(cert, key)
            if len(self._contexts) >= MAX_TLS_CONTEXTS:
                self._contexts.clear()
            self._contexts[index] = context
            return context


def _mtime(path: str | None) -> float | None:
    if path is None:
        return None
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return None


MAX_TLS_CONTEXTS = 64
_CONTEXTS = _Contexts()


class WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, whose connections register their socket while waiting for headers, and
    whose verifying TLS connections share a context per CA and client certificate (:class:`_Contexts`)."""

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[Any, Any]:
        host_params, kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") != "https" or verify is False:
            return host_params, kwargs
        pool_kwargs: dict[str, Any] = dict(kwargs)
        # Loaded into the shared context once, not into every connection's.
        ca, ca_dir = pool_kwargs.pop("ca_certs", None), pool_kwargs.pop("ca_cert_dir", None)
        cert_file, key_file = pool_kwargs.pop("cert_file", None), pool_kwargs.pop("key_file", None)
        pool_kwargs["ssl_context"] = _CONTEXTS.get(ca, ca_dir, cert_file, key_file)
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        if url.lower().startswith("https") and verify is not False:
            # requests points every connection at its CA bundle and client certificate again, which
            # makes urllib3 load them into the (shared) context per connection: they are in it already.
            conn.ca_certs = conn.ca_cert_dir = conn.cert_file = conn.key_file = None

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kw: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **kw)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if hasattr(manager, "pool_classes_by_scheme"):
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


def install(session: requests.Session) -> None:
    """Mount :class:`WatchedAdapter` for http and https where the session has requests' plain adapter.

    A custom adapter someone mounted is left alone (its header waits are then bounded by the read
    timeout only). The plain adapter's pool sizes and retries are kept.
    """
    for prefix in ("https://", "http://"):
        current = session.adapters.get(prefix)
        if type(current) is requests.adapters.HTTPAdapter:
            adapter = WatchedAdapter(
                pool_connections=getattr(current, "_pool_connections", DEFAULT_POOLSIZE),
                pool_maxsize=getattr(current, "_pool_maxsize", DEFAULT_POOLSIZE),
                max_retries=current.max_retries,
                pool_block=getattr(current, "_pool_block", DEFAULT_POOLBLOCK),
            )
            session.mount(prefix, adapter)
            current.close()
