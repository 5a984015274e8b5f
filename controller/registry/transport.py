"""One bounded HTTP exchange: TLS per host, manual redirects, capped bodies, a deadline.

Every request goes through :meth:`Transport.exchange`:

* redirects are followed by hand (never by requests), at most ``max_redirects``; a redirect to another
  host is followed only for blob downloads (registries send blobs to object storage); https is never
  downgraded to http; the ``Authorization`` header only ever goes to the host it was made for;
* TLS settings (CA bundle, client certificate, no verification) come from the ``configs`` entry of the
  host being contacted, else the system defaults apply;
* a body is streamed against a byte cap (``Content-Length`` is checked first but not trusted);
* every socket read waits at most ``read_timeout``, and a hop must be done ``total_timeout`` after its
  request was sent: the body read checks the clock after every chunk, and one shared deadline thread
  (:class:`_Deadlines`, not a thread per request) cuts the socket of a body read still running then;
* connections are kept alive and reused, as a bare :class:`requests.Session` does: a body read to its end
  (HEAD answers and small redirect bodies included) hands its connection back to the pool; a body that
  was cut (byte cap, deadline, error) closes its connection;
* proxies come from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``),
  read once per (scheme, host) by each transport and then cached: the environment scan costs ~1 ms;
* network failures become :class:`FetchError` (RegistryUnavailable); bounds become :class:`LimitError`.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urljoin, urlsplit

import requests
import requests.utils
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict

from controller.errors import FetchError, LimitError, Reason
from controller.registry.config import RegistryConfig
from controller.registry.limits import Limits

log = logging.getLogger(__name__)

RequestKind = Literal["manifest", "blob", "token", "api"]
"""What a request fetches; only ``blob`` may follow a redirect to another host."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
READ_CHUNK_BYTES = 64 * 1024
MAX_PROXY_CACHE_HOSTS = 256
"""(scheme, host) pairs whose environment proxies a transport remembers; past it they are recomputed."""
USER_AGENT = "imprimatur (registry client)"


@dataclass(frozen=True, slots=True)
class Answer:
    """A finished HTTP exchange. ``body`` is complete for 2xx answers, possibly truncated otherwise."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str
    hops: int = 0
    elapsed: float = field(default=0.0, compare=False)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def host_of(url: str) -> str:
    """``host[:port]`` of ``url``, lower case."""
    return urlsplit(url).netloc.lower()


@dataclass(eq=False, slots=True)
class _Cut:
    """A socket to cut at ``deadline`` (monotonic seconds) unless released first."""

    sock: socket.socket
    deadline: float
    fired: bool = False


class _Deadlines:
    """One daemon thread that cuts the socket of every read still running when its deadline passes.

    Starting a thread per body read cost ~1 ms each; here a read costs two short lock holds. The thread
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


_DEADLINES = _Deadlines()


def _socket_of(response: requests.Response) -> socket.socket | None:
    connection = getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _finish(response: requests.Response, complete: bool) -> None:
    """Hand the connection back to the pool when its body was read to the end; else close it."""
    if complete:
        response.raw.release_conn()
    response.close()  # closes the connection only when it was not handed back


class Transport:
    """Sends bounded HTTP exchanges over one shared :class:`requests.Session`."""

    def __init__(self, session: requests.Session, config: RegistryConfig, limits: Limits) -> None:
        self._session = session
        self._config = config
        self._limits = limits
        self._proxies: dict[tuple[str, str], dict[str, str]] = {}
        self._proxies_lock = threading.Lock()

    @property
    def limits(self) -> Limits:
        return self._limits

    def _tls_arguments(self, url: str) -> tuple[str | bool, str | tuple[str, str] | None]:
        host_config = self._config.host_config(host_of(url))
        if host_config is None:
            return True, None
        tls = host_config.tls
        verify: str | bool = False if tls.insecure_skip_verify else (tls.ca_file or True)
        cert: str | tuple[str, str] | None = None
        if tls.cert_file and tls.key_file:
            cert = (tls.cert_file, tls.key_file)
        elif tls.cert_file:
            cert = tls.cert_file
        return verify, cert

    def _environment_proxies(self, url: str) -> dict[str, str]:
        """``requests.utils.get_environ_proxies(url)``, computed once per (scheme, host)."""
        key = _origin(url)
        with self._proxies_lock:
            cached = self._proxies.get(key)
        if cached is None:
            cached = requests.utils.get_environ_proxies(url)
            with self._proxies_lock:
                if len(self._proxies) < MAX_PROXY_CACHE_HOSTS:
                    self._proxies[key] = cached
        return cached

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], data: Mapping[str, str] | None
    ) -> requests.Response:
        """``session.request``, with its per-request environment scans replaced by cached values.

        What ``Session.merge_environment_settings`` would do is done here: the environment's proxies
        (always, whatever ``trust_env`` says) over the session's, and ``REQUESTS_CA_BUNDLE`` /
        ``CURL_CA_BUNDLE`` for a host without a CA of its own when the session trusts the environment.
        """
        session = self._session
        verify, cert = self._tls_arguments(url)
        if verify is True and session.trust_env:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        # The session's own proxies may map a scheme to None (no proxy): requests drops those keys.
        merged: dict[str, str | None] = {**session.proxies, **self._environment_proxies(url)}
        proxies = {key: value for key, value in merged.items() if value is not None}
        try:
            prepared = session.prepare_request(
                requests.Request(method, url, headers=dict(headers), data=data)
            )
            return session.send(
                prepared,
                allow_redirects=False,
                stream=True,
                timeout=(self._limits.connect_timeout, self._limits.read_timeout),
                verify=verify,
                cert=cert if cert is not None else session.cert,
                proxies=proxies,
            )
        except requests.RequestException as e:
            raise FetchError(Reason.REGISTRY_UNAVAILABLE, f"{method} {url}: {type(e).__name__}: {e}") from e
        except OSError as e:  # a CA or key file that went missing after start-up
            raise FetchError(Reason.REGISTRY_UNAVAILABLE, f"{method} {url}: {e}") from e

    def _read(
        self, response: requests.Response, cap: int, *, truncate: bool, what: str, deadline: float
    ) -> tuple[bytes, bool]:
        """The body, at most ``cap`` bytes (past it a LimitError, or with ``truncate`` a cut), and
        whether it was read to its end (so its connection may be reused).

        Past ``deadline`` a LimitError: the clock is checked after every chunk, and a read still blocked
        then has its socket cut by :data:`_DEADLINES`, so a hop never outlives ``total_timeout`` by more
        than that thread's wake-up. (Should the socket be out of reach, as with a custom adapter, only
        the check after each chunk remains: a weaker bound, each read of up to ``READ_CHUNK_BYTES``
        being bounded only by ``read_timeout`` per socket read.)
        """
        declared = response.headers.get("Content-Length")
        if declared is not None and not truncate:
            try:
                declared_bytes = int(declared)
            except ValueError:
                declared_bytes = -1
            if declared_bytes > cap:
                raise LimitError(f"{what}: Content-Length {declared_bytes} exceeds the {cap}-byte limit")
        late = f"{what}: took longer than {self._limits.total_timeout}s"
        raw = response.raw
        chunks: list[bytes] = []
        total = 0
        complete = False
        cut = _DEADLINES.watch(_socket_of(response), deadline)
        try:
            while True:
                # At most one byte past the cap is ever read: enough to tell "exactly cap" from "more".
                chunk = raw.read(min(READ_CHUNK_BYTES, cap - total + 1), decode_content=False)
                if not chunk:
                    complete = True
                    break
                total += len(chunk)
                if total > cap:
                    if truncate:
                        chunks.append(chunk[: len(chunk) - (total - cap)])
                        break
                    raise LimitError(f"{what}: body exceeds the {cap}-byte limit")
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise LimitError(late)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as e:
            if _DEADLINES.release(cut) or time.monotonic() > deadline:
                raise LimitError(late) from e
            raise FetchError(Reason.REGISTRY_UNAVAILABLE, f"{what}: reading the body failed: {e}") from e
        finally:
            fired = _DEADLINES.release(cut)
        if fired:
            if not truncate:
                raise LimitError(late)
            complete = False
        return b"".join(chunks), complete

    def _discard(self, response: requests.Response, cap: int, deadline: float) -> bool:
        """Read and drop a body nobody needs (a HEAD's, a redirect's), within ``cap`` bytes and the
        deadline, so its connection can be reused. True when it ended in time; never raises."""
        try:
            return self._read(response, cap, truncate=True, what="discarded body", deadline=deadline)[1]
        except FetchError:
            return False

    def _check_redirect(self, current: str, target: str, kind: RequestKind) -> None:
        current_scheme, current_host = _origin(current)
        target_scheme, target_host = _origin(target)
        if target_scheme not in ("https", "http") or not target_host:
            raise FetchError(Reason.REGISTRY_UNAVAILABLE, f"redirect to an unusable URL {target[:200]!r}")
        if target_scheme == "http" and (current_scheme == "https" or target_host != current_host):
            raise FetchError(
                Reason.REGISTRY_UNAVAILABLE, f"refusing a redirect to plain http: {target[:200]}"
            )
        if target_host != current_host and kind != "blob":
            raise FetchError(
                Reason.REGISTRY_UNAVAILABLE,
                f"refusing a cross-host redirect for a {kind} request: {current_host} -> {target_host}",
            )

    def exchange(
        self,
        method: Literal["GET", "HEAD", "POST"],
        url: str,
        *,
        kind: RequestKind,
        max_bytes: int,
        headers: Mapping[str, str] | None = None,
        authorization: str | None = None,
        data: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send one request and follow its redirects. ``authorization`` only goes to ``url``'s host."""
        auth_host = host_of(url)
        base_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(headers or {})}
        current = url
        started = time.monotonic()
        for hop in range(self._limits.max_redirects + 1):
            deadline = time.monotonic() + self._limits.total_timeout
            send_headers = dict(base_headers)
            if authorization is not None and host_of(current) == auth_host:
                send_headers["Authorization"] = authorization
            response = self._send(method, current, send_headers, data)
            complete = False
            try:
                status = response.status_code
                what = f"{method} {current}"
                if status in REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        raise FetchError(
                            Reason.REGISTRY_UNAVAILABLE, f"redirect without Location from {current}"
                        )
                    target = urljoin(current, location)
                    self._check_redirect(current, target, kind)
                    log.debug("registry redirect %s -> %s", current, target)
                    discard_cap = 0 if method == "HEAD" else self._limits.max_error_body_bytes
                    complete = self._discard(response, discard_cap, deadline)
                    if status == 303 and method == "POST":
                        method, data = "GET", None
                    current = target
                    continue
                if method == "HEAD":
                    body = b""
                    complete = self._discard(response, 0, deadline)
                elif 200 <= status < 300:
                    body, complete = self._read(
                        response, max_bytes, truncate=False, what=what, deadline=deadline
                    )
                else:
                    body, complete = self._read(
                        response,
                        self._limits.max_error_body_bytes,
                        truncate=True,
                        what=what,
                        deadline=deadline,
                    )
                return Answer(
                    status=status,
                    headers=CaseInsensitiveDict(response.headers),
                    body=body,
                    url=current,
                    hops=hop,
                    elapsed=time.monotonic() - started,
                )
            finally:
                _finish(response, complete)
        raise LimitError(f"{method} {url}: more than {self._limits.max_redirects} redirects")
