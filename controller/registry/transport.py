"""One bounded HTTP exchange: TLS per host, manual redirects, capped bodies, a deadline.

Every request goes through :meth:`Transport.exchange`:

* redirects are followed by hand (never by requests), at most ``max_redirects``; a redirect to another
  host is followed only for blob downloads (registries send blobs to object storage); https is never
  downgraded to http; the ``Authorization`` header only ever goes to the host it was made for;
* TLS settings (CA bundle, client certificate, no verification) come from the ``configs`` entry of the
  host being contacted, else the system defaults apply;
* a body is streamed against a byte cap (``Content-Length`` is checked first but not trusted), and a
  watchdog cuts the connection when one hop takes longer than ``total_timeout``;
* network failures become :class:`FetchError` (RegistryUnavailable); bounds become :class:`LimitError`.
"""

from __future__ import annotations

import logging
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


class _Watchdog:
    """Cuts a response's socket when a deadline passes, so no read can outlive it."""

    def __init__(self, response: requests.Response, seconds: float) -> None:
        self.fired = False
        self._sock = _socket_of(response)
        self._timer: threading.Timer | None = None
        if self._sock is not None:
            self._timer = threading.Timer(max(seconds, 0.0), self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        if self._sock is not None:
            try:
                # The plain socket's shutdown, bypassing ssl.SSLSocket's: wakes a blocked recv at once.
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
            except OSError:
                log.debug("watchdog: socket already closed")

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _socket_of(response: requests.Response) -> socket.socket | None:
    connection = getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


class Transport:
    """Sends bounded HTTP exchanges over one shared :class:`requests.Session`."""

    def __init__(self, session: requests.Session, config: RegistryConfig, limits: Limits) -> None:
        self._session = session
        self._config = config
        self._limits = limits

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

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], data: Mapping[str, str] | None
    ) -> requests.Response:
        verify, cert = self._tls_arguments(url)
        try:
            return self._session.request(
                method,
                url,
                headers=dict(headers),
                data=data,
                allow_redirects=False,
                stream=True,
                timeout=(self._limits.connect_timeout, self._limits.read_timeout),
                verify=verify,
                cert=cert,
                proxies=requests.utils.get_environ_proxies(url),
            )
        except requests.RequestException as e:
            raise FetchError(Reason.REGISTRY_UNAVAILABLE, f"{method} {url}: {type(e).__name__}: {e}") from e
        except OSError as e:  # a CA or key file that went missing after start-up
            raise FetchError(Reason.REGISTRY_UNAVAILABLE, f"{method} {url}: {e}") from e

    def _read(
        self, response: requests.Response, cap: int, *, truncate: bool, what: str, hop_started: float
    ) -> bytes:
        """The body, at most ``cap`` bytes: past it a LimitError, or (``truncate``) a cut.

        The hop's deadline (``total_timeout`` from when its request was sent) is enforced by a watchdog.
        """
        declared = response.headers.get("Content-Length")
        if declared is not None and not truncate:
            try:
                declared_bytes = int(declared)
            except ValueError:
                declared_bytes = -1
            if declared_bytes > cap:
                raise LimitError(f"{what}: Content-Length {declared_bytes} exceeds the {cap}-byte limit")
        remaining = self._limits.total_timeout - (time.monotonic() - hop_started)
        watchdog = _Watchdog(response, remaining)
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in response.raw.stream(READ_CHUNK_BYTES, decode_content=False):
                total += len(chunk)
                if total > cap:
                    if truncate:
                        chunks.append(chunk[: len(chunk) - (total - cap)])
                        break
                    raise LimitError(f"{what}: body exceeds the {cap}-byte limit")
                chunks.append(chunk)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as e:
            if watchdog.fired:
                raise LimitError(f"{what}: took longer than {self._limits.total_timeout}s") from e
            raise FetchError(Reason.REGISTRY_UNAVAILABLE, f"{what}: reading the body failed: {e}") from e
        finally:
            watchdog.cancel()
        if watchdog.fired and not truncate:
            raise LimitError(f"{what}: took longer than {self._limits.total_timeout}s")
        return b"".join(chunks)

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
            hop_started = time.monotonic()
            send_headers = dict(base_headers)
            if authorization is not None and host_of(current) == auth_host:
                send_headers["Authorization"] = authorization
            response = self._send(method, current, send_headers, data)
            try:
                status = response.status_code
                if status in REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        raise FetchError(
                            Reason.REGISTRY_UNAVAILABLE, f"redirect without Location from {current}"
                        )
                    target = urljoin(current, location)
                    self._check_redirect(current, target, kind)
                    log.debug("registry redirect %s -> %s", current, target)
                    if status == 303 and method == "POST":
                        method, data = "GET", None
                    current = target
                    continue
                if method == "HEAD":
                    body = b""
                elif 200 <= status < 300:
                    body = self._read(
                        response,
                        max_bytes,
                        truncate=False,
                        what=f"{method} {current}",
                        hop_started=hop_started,
                    )
                else:
                    body = self._read(
                        response,
                        self._limits.max_error_body_bytes,
                        truncate=True,
                        what=f"{method} {current}",
                        hop_started=hop_started,
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
                response.close()
        raise LimitError(f"{method} {url}: more than {self._limits.max_redirects} redirects")
