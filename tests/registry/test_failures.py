"""Failure phrases: found from the cause, never from urllib3's text."""

from __future__ import annotations

import socket
import ssl

import pytest
import requests
import urllib3.exceptions

from controller.registry.failures import describe, short_url


def _wrapped(reason: BaseException, outer: type[requests.RequestException]) -> requests.RequestException:
    pool_error = urllib3.exceptions.MaxRetryError(None, "/v2/", reason)  # type: ignore[arg-type]
    return outer(pool_error)


def _verify_error() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "unable to get local issuer certificate"
    return error


@pytest.mark.parametrize(
    ("error", "phrase"),
    [
        (_wrapped(ConnectionRefusedError(111, "refused"), requests.ConnectionError), "connection refused"),
        (
            _wrapped(urllib3.exceptions.ConnectTimeoutError(None, "timed out"), requests.ConnectTimeout),
            "connect timed out after 5.0s",
        ),
        (
            _wrapped(
                urllib3.exceptions.NameResolutionError("x.invalid", None, socket.gaierror(-2, "unknown")),  # type: ignore[arg-type]
                requests.ConnectionError,
            ),
            "name resolution failed",
        ),
        (
            _wrapped(urllib3.exceptions.SSLError(_verify_error()), requests.exceptions.SSLError),
            "TLS certificate verification failed: unable to get local issuer certificate",
        ),
        (_wrapped(ConnectionResetError(104, "reset"), requests.ConnectionError), "connection reset"),
        (
            requests.ReadTimeout("HTTPSConnectionPool(host='x'): Read timed out."),
            "read timed out after 10.0s",
        ),
        (requests.RequestException("???"), "connection failed (RequestException)"),
    ],
)
def test_phrases(error: BaseException, phrase: str) -> None:
    assert describe(error, connect_timeout=5.0, read_timeout=10.0) == phrase


def test_short_url_drops_scheme_and_query() -> None:
    assert (
        short_url("https://Mirror:5000/v2/app/manifests/v1?ns=docker.io") == "mirror:5000/v2/app/manifests/v1"
    )
