"""One bounded HTTP exchange: TLS per host, manual redirects, capped bodies, a deadline.

Every request goes through :meth:`Transport.exchange`:

* redirects are followed by hand (never by requests), at most ``max_redirects``; a redirect to another
  host is followed only for blob downloads (registries send blobs to object storage); https is never
  downgraded to http; the ``Authorization`` header only ever goes to the host it was made for;
* TLS settings (CA bundle, client certificate, no verification) come from the ``configs`` entry of the
  host being contacted, else the system defaults apply;
* a body is streamed against a byte cap (``Content-Length`` is checked first but not trusted);
* every socket read waits at most ``read_timeout``, and a hop must be done ``total_timeout`` after its
  request was sent (and, given a :class:`~controller.registry.budget.Budget`, by its deadline, with
  both timeouts clipped to what it has left): the body read checks the clock after every chunk, and
  one shared deadline thread (:mod:`controller.registry.deadlines`) cuts the socket of a wait for the
  headers or the body still running then;
* every body byte read (answers, error bodies, redirect bodies) is charged to the budget, if any;
* connections are kept alive and reused, as a bare :class:`requests.Session` does: a body read to its end
  (HEAD answers and small redirect bodies included) hands its connection back to the pool; a body that
  was cut (byte cap, deadline, error) closes its connection;
* proxies come from the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``),
  read once per (scheme, host) by each transport and then cached: the environment scan costs ~1 ms;
* network failures become :class:`FetchError` (RegistryUnavailable) with a short stable phrase
  (:mod:`controller.registry.failures`); bounds become :class:`LimitError`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urljoin, urlsplit

import requests
import requests.utils
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict

from controller.errors import FetchError, LimitError, Reason
from controller.registry.budget import Budget
from controller.registry.config import RegistryConfig
from controller.registry.deadlines import DEADLINES, hop_deadline, install
from controller.registry.failures import describe, short_url
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


_Late = Callable[[str], LimitError]
"""Makes the error for a deadline that passed while doing ``what``."""


def _late_hop(total_timeout: float) -> _Late:
    def late(what: str) -> LimitError:
        return LimitError(f"took longer than {total_timeout}s (the limit for one request) while {what}")

    return late


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
        install(session)
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
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        data: Mapping[str, str] | None,
        *,
        deadline: float,
        late: _Late,
        budget: Budget | None,
    ) -> requests.Response:
        """``session.request``, with its per-request environment scans replaced by cached values.

        What ``Session.merge_environment_settings`` would do is done here: the environment's proxies
        (always, whatever ``trust_env`` says) over the session's, and ``REQUESTS_CA_BUNDLE`` /
        ``CURL_CA_BUNDLE`` for a host without a CA of its own when the session trusts the environment.
        With a ``budget``, both timeouts are clipped to the time it has left; the wait for the headers
        is cut at ``deadline`` whatever the server drips.
        """
        session = self._session
        verify, cert = self._tls_arguments(url)
        if verify is True and session.trust_env:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        # The session's own proxies may map a scheme to None (no proxy): requests drops those keys.
        merged: dict[str, str | None] = {**session.proxies, **self._environment_proxies(url)}
        proxies = {key: value for key, value in merged.items() if value is not None}
        connect_timeout, read_timeout = self._limits.connect_timeout, self._limits.read_timeout
        if budget is not None:
            connect_timeout = budget.clip(connect_timeout, f"sending {method} {short_url(url)}")
            read_timeout = budget.clip(read_timeout, f"sending {method} {short_url(url)}")
        try:
            prepared = session.prepare_request(
                requests.Request(method, url, headers=dict(headers), data=data)
            )
            with hop_deadline(deadline):
                return session.send(
                    prepared,
                    allow_redirects=False,
                    stream=True,
                    timeout=(connect_timeout, read_timeout),
                    verify=verify,
                    cert=cert if cert is not None else session.cert,
                    proxies=proxies,
                )
        except (requests.RequestException, OSError) as e:  # OSError: a CA or key file gone missing
            if time.monotonic() >= deadline:
                raise late(f"waiting for {method} {short_url(url)}") from e
            phrase = describe(e, connect_timeout=connect_timeout, read_timeout=read_timeout)
            raise FetchError(Reason.REGISTRY_UNAVAILABLE, f"{method} {short_url(url)}: {phrase}") from e

    def _read(
        self,
        response: requests.Response,
        cap: int,
        *,
        truncate: bool,
        what: str,
        deadline: float,
        late: _Late,
        budget: Budget | None,
    ) -> tuple[bytes, bool]:
        """The body, at most ``cap`` bytes (past it a LimitError, or with ``truncate`` a cut), and
        whether it was read to its end (so its connection may be reused).

        Every chunk is charged to ``budget`` before it is kept. Past ``deadline`` a LimitError (made by
        ``late``): the clock is checked after every chunk, and a read still blocked then has its socket
        cut by :data:`DEADLINES`, so a hop never outlives its deadline by more than that thread's
        wake-up. (Should the socket be out of reach, as with a custom adapter, only the check after each
        chunk remains: each read of up to ``READ_CHUNK_BYTES`` is then bounded by the read timeout.)
        """
        declared = response.headers.get("Content-Length")
        if declared is not None and not truncate:
            try:
                declared_bytes = int(declared)
            except ValueError:
                declared_bytes = -1
            if declared_bytes > cap:
                raise LimitError(f"{what}: Content-Length {declared_bytes} exceeds the {cap}-byte limit")
            if budget is not None and declared_bytes > budget.max_bytes - budget.spent:
                budget.charge(declared_bytes, what)  # raises: more than the decision has left
        raw = response.raw
        chunks: list[bytes] = []
        total = 0
        complete = False
        cut = DEADLINES.watch(_socket_of(response), deadline)
        try:
            while True:
                # At most one byte past the cap is ever read: enough to tell "exactly cap" from "more".
                chunk = raw.read(min(READ_CHUNK_BYTES, cap - total + 1), decode_content=False)
                if not chunk:
                    complete = True
                    break
                if budget is not None:
                    budget.charge(len(chunk), what)
                total += len(chunk)
                if total > cap:
                    if truncate:
                        chunks.append(chunk[: len(chunk) - (total - cap)])
                        break
                    raise LimitError(f"{what}: body exceeds the {cap}-byte limit")
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise late(f"reading {what}")
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as e:
            if DEADLINES.release(cut) or time.monotonic() > deadline:
                raise late(f"reading {what}") from e
            phrase = describe(
                e, connect_timeout=self._limits.connect_timeout, read_timeout=self._limits.read_timeout
            )
            raise FetchError(Reason.REGISTRY_UNAVAILABLE, f"{what}: reading the body failed: {phrase}") from e
        finally:
            fired = DEADLINES.release(cut)
        if fired:
            if not truncate:
                raise late(f"reading {what}")
            complete = False
        return b"".join(chunks), complete

    def _discard(self, response: requests.Response, cap: int, deadline: float, budget: Budget | None) -> bool:
        """Read and drop a body nobody needs (a HEAD's, a redirect's), within ``cap`` bytes and the
        deadline, so its connection can be reused. True when it ended in time; never raises."""
        try:
            return self._read(
                response,
                cap,
                truncate=True,
                what="discarded body",
                deadline=deadline,
                late=_late_hop(self._limits.total_timeout),
                budget=budget,
            )[1]
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
        budget: Budget | None = None,
    ) -> Answer:
        """Send one request and follow its redirects. ``authorization`` only goes to ``url``'s host.

        Each hop must end within ``total_timeout``, and with a ``budget`` within its deadline too (then
        the error says how long the decision took); every body byte is charged to the budget.
        """
        auth_host = host_of(url)
        base_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(headers or {})}
        current = url
        started = time.monotonic()
        total_timeout = self._limits.total_timeout
        for hop in range(self._limits.max_redirects + 1):
            now = time.monotonic()
            late = _late_hop(total_timeout)
            deadline = now + total_timeout
            if budget is not None:
                left = budget.remaining()
                if left <= total_timeout:
                    deadline, late = now + left, budget.expired
            send_headers = dict(base_headers)
            if authorization is not None and host_of(current) == auth_host:
                send_headers["Authorization"] = authorization
            response = self._send(
                method, current, send_headers, data, deadline=deadline, late=late, budget=budget
            )
            complete = False
            try:
                status = response.status_code
                what = f"{method} {short_url(current)}"
                if status in REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        raise FetchError(Reason.REGISTRY_UNAVAILABLE, f"{what}: redirect without Location")
                    target = urljoin(current, location)
                    self._check_redirect(current, target, kind)
                    log.debug("registry redirect %s -> %s", current, target)
                    discard_cap = 0 if method == "HEAD" else self._limits.max_error_body_bytes
                    complete = self._discard(response, discard_cap, deadline, budget)
                    if status == 303 and method == "POST":
                        method, data = "GET", None
                    current = target
                    continue
                if method == "HEAD":
                    body = b""
                    complete = self._discard(response, 0, deadline, budget)
                else:
                    ok = 200 <= status < 300
                    body, complete = self._read(
                        response,
                        max_bytes if ok else self._limits.max_error_body_bytes,
                        truncate=not ok,
                        what=what,
                        deadline=deadline,
                        late=late,
                        budget=budget,
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
        raise LimitError(f"{method} {short_url(url)}: more than {self._limits.max_redirects} redirects")
