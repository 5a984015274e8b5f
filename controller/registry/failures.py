"""Short, stable words for network failures, instead of urllib3's nested exception text.

A denial reads ``RegistryUnavailable: <image>: GET host/v2/app/manifests/v1: connection refused``. The
phrase comes from the cause of the failure (found by walking the exception chain), never from the
exception's text, so that it stays the same across urllib3 versions and never carries an object repr.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from urllib.parse import urlsplit

import requests
import urllib3.exceptions

MAX_CHAIN = 16
"""Exceptions looked at while walking ``reason`` / ``__cause__`` / ``__context__`` / ``args``."""

MAX_REASON_CHARS = 120


def short_url(url: str) -> str:
    """``host[:port]/path`` of ``url``: no scheme, no query (a mirror's ``?ns=``), bounded."""
    parts = urlsplit(url)
    return f"{parts.netloc.lower()}{parts.path}"[:300]


def _chain(error: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    stack: list[BaseException] = [error]
    while stack and len(out) < MAX_CHAIN:
        current = stack.pop()
        if any(current is seen for seen in out):
            continue
        out.append(current)
        nexts: list[object] = [getattr(current, "reason", None), current.__cause__, current.__context__]
        nexts.extend(current.args)
        stack.extend(n for n in reversed(nexts) if isinstance(n, BaseException))
    return out


def _first(chain: list[BaseException], *kinds: type[BaseException]) -> BaseException | None:
    return next((e for e in chain if isinstance(e, kinds)), None)


def describe(error: BaseException, *, connect_timeout: float, read_timeout: float) -> str:
    """A short phrase for a failed exchange: "connection refused", "connect timed out after 5.0s"..."""
    chain = _chain(error)
    verify = _first(chain, ssl.SSLCertVerificationError)
    if isinstance(verify, ssl.SSLCertVerificationError):
        reason = verify.verify_message or verify.reason or "unknown reason"
        return f"TLS certificate verification failed: {str(reason)[:MAX_REASON_CHARS]}"
    if _first(chain, urllib3.exceptions.NameResolutionError, socket.gaierror) is not None:
        return "name resolution failed"
    if _first(chain, ConnectionRefusedError) is not None:
        return "connection refused"
    if isinstance(error, requests.exceptions.ConnectTimeout) or (
        _first(chain, urllib3.exceptions.ConnectTimeoutError) is not None
        and _first(chain, urllib3.exceptions.NewConnectionError) is None
    ):
        return f"connect timed out after {connect_timeout:.1f}s"
    if _first(chain, requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError):
        return f"read timed out after {read_timeout:.1f}s"
    tls = _first(chain, ssl.SSLError)
    if isinstance(tls, ssl.SSLError):
        return f"TLS handshake failed: {str(tls.reason or 'unknown reason')[:MAX_REASON_CHARS]}"
    if _first(chain, requests.exceptions.ProxyError, urllib3.exceptions.ProxyError) is not None:
        return "proxy connection failed"
    if (
        _first(
            chain,
            ConnectionResetError,
            BrokenPipeError,
            ConnectionAbortedError,
            http.client.RemoteDisconnected,
            http.client.IncompleteRead,
            urllib3.exceptions.ProtocolError,
        )
        is not None
    ):
        return "connection reset"
    if _first(chain, requests.exceptions.InvalidURL, urllib3.exceptions.LocationParseError) is not None:
        return "invalid URL"
    if _first(chain, http.client.HTTPException, urllib3.exceptions.DecodeError) is not None:
        return "malformed HTTP answer"
    if _first(chain, FileNotFoundError, PermissionError) is not None:
        return "a TLS file (CA, certificate or key) could not be read"
    return f"connection failed ({type(error).__name__})"
