"""Redirect rules, where Authorization goes, keep-alive, deadlines, proxies, and token-endpoint misbehaviour."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from controller.errors import FetchError, LimitError, Reason
from controller.model import Digest
from controller.registry import Keychain, Limits, RegistryClient, RegistryConfig, parse_reference
from controller.registry.deadlines import DEADLINES as _DEADLINES
from controller.registry.transport import RequestKind, Transport
from tests.fixtures.registry import RegistryServer, TestPKI
from tests.registry.fakes import Route, closed_port, scripted

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _transport(limits: Limits | None = None, config: RegistryConfig | None = None) -> Transport:
    session = requests.Session()
    session.trust_env = False
    return Transport(session, config or RegistryConfig(), limits or Limits())


def test_redirect_loop_is_bounded() -> None:
    with scripted() as loop:
        loop.routes["/v2/r/manifests/t"] = Route(307, headers={"Location": "/v2/r/manifests/t"})
        with pytest.raises(LimitError) as caught:
            _transport(Limits(max_redirects=3)).exchange(
                "GET", f"{loop.url}/v2/r/manifests/t", kind="manifest", max_bytes=100
            )
        assert caught.value.reason is Reason.LIMIT_EXCEEDED
        assert len(loop.seen) == 4  # the request and three redirects


def test_same_host_redirect_keeps_authorization() -> None:
    with scripted() as fake:
        fake.routes["/a"] = Route(302, headers={"Location": "/b"})
        fake.routes["/b"] = Route(body=b"ok")
        answer = _transport().exchange(
            "GET", f"{fake.url}/a", kind="manifest", max_bytes=100, authorization="Bearer secret"
        )
        assert (answer.status, answer.body, answer.hops) == (200, b"ok", 1)
        assert [s.headers.get("Authorization") for s in fake.seen] == ["Bearer secret", "Bearer secret"]


def _trusting(pki: TestPKI, *hosts: str, limits: Limits | None = None) -> Transport:
    configs = ", ".join(f"'{host}': {{tls: {{ca_file: '{pki.ca_file}'}}}}" for host in hosts)
    return _transport(limits, RegistryConfig.from_yaml(f"configs: {{{configs}}}"))


@pytest.mark.parametrize("kind", ["manifest", "token", "api"])
def test_cross_host_redirect_refused_except_for_blobs(registry_pki: TestPKI, kind: RequestKind) -> None:
    context = registry_pki.server_context()
    with scripted(context) as first, scripted(context) as second:
        first.routes["/x"] = Route(307, headers={"Location": f"{second.url}/y"})
        second.routes["/y"] = Route(body=b"elsewhere")
        transport = _trusting(registry_pki, first.host, second.host)
        with pytest.raises(FetchError) as caught:
            transport.exchange("GET", f"{first.url}/x", kind=kind, max_bytes=100)
        assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
        assert second.seen == []
        # the same redirect is followed for a blob
        assert transport.exchange("GET", f"{first.url}/x", kind="blob", max_bytes=100).body == b"elsewhere"


def test_plain_http_cross_host_redirect_refused() -> None:
    with scripted() as first, scripted() as storage:
        first.routes["/x"] = Route(307, headers={"Location": f"{storage.url}/y"})
        with pytest.raises(FetchError) as caught:
            _transport().exchange("GET", f"{first.url}/x", kind="blob", max_bytes=100)
        assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
        assert storage.seen == []


def test_cross_host_blob_redirect_drops_authorization(registry_pki: TestPKI) -> None:
    context = registry_pki.server_context()
    with scripted(context) as first, scripted(context) as storage:
        transport = _trusting(registry_pki, first.host, storage.host)
        first.routes["/v2/r/blobs/d"] = Route(307, headers={"Location": f"{storage.url}/bucket/d?sig=1"})
        storage.routes["/bucket/d"] = Route(body=b"blob")
        answer = transport.exchange(
            "GET", f"{first.url}/v2/r/blobs/d", kind="blob", max_bytes=100, authorization="Bearer secret"
        )
        assert answer.body == b"blob"
        assert first.seen[0].headers.get("Authorization") == "Bearer secret"
        assert "Authorization" not in storage.seen[0].headers
        assert storage.seen[0].query == "sig=1"
        # back on the original host (storage -> first), the header is sent again: it was made for that host
        storage.routes["/bucket/d"] = Route(302, headers={"Location": f"{first.url}/v2/r/blobs/final"})
        first.routes["/v2/r/blobs/final"] = Route(body=b"final")
        answer = transport.exchange(
            "GET", f"{first.url}/v2/r/blobs/d", kind="blob", max_bytes=100, authorization="Bearer secret"
        )
        assert (answer.body, answer.hops) == (b"final", 2)
        assert first.seen[-1].headers.get("Authorization") == "Bearer secret"
        assert "Authorization" not in storage.seen[-1].headers


def test_https_to_http_downgrade_refused(registry_pki: TestPKI) -> None:
    with scripted(registry_pki.server_context()) as secure, scripted() as plain:
        secure.routes["/x"] = Route(302, headers={"Location": f"{plain.url}/y"})
        tls_config = RegistryConfig.from_yaml(
            f"configs: {{'{secure.host}': {{tls: {{ca_file: {registry_pki.ca_file}}}}}}}"
        )
        transport = Transport(requests.Session(), tls_config, Limits())
        kinds: tuple[RequestKind, ...] = ("blob", "manifest")
        for kind in kinds:
            with pytest.raises(FetchError) as caught:
                transport.exchange("GET", f"{secure.url}/x", kind=kind, max_bytes=100)
            assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
        assert plain.seen == []


def test_redirect_without_location() -> None:
    with scripted() as fake:
        fake.routes["/x"] = Route(302)
        with pytest.raises(FetchError) as caught:
            _transport().exchange("GET", f"{fake.url}/x", kind="blob", max_bytes=100)
        assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE


def test_blob_redirected_to_the_real_registry(registry: RegistryServer) -> None:
    data = b"stored elsewhere"
    digest = registry.push_blob("redirect/app", data)
    with scripted() as front:
        front.routes[f"/v2/redirect/app/blobs/{digest}"] = Route(
            307, headers={"Location": f"{registry.url}/v2/redirect/app/blobs/{digest}"}
        )
        client = RegistryClient(
            RegistryConfig.from_yaml(registry.registries_yaml({registry.host: [front.url]}))
        )
        ref = parse_reference(registry.ref("redirect/app", "v1"))
        assert client.get_blob(ref, digest, 100) == data
        assert front.paths() == [f"/v2/redirect/app/blobs/{digest}"]
        # a manifest redirected the same way is refused at the mirror, then found at the upstream
        registry.push_random_image("redirect/app", "v1")
        front.routes["/v2/redirect/app/manifests/v1"] = Route(
            307, headers={"Location": f"{registry.url}/v2/redirect/app/manifests/v1"}
        )
        assert client.resolve(ref).algorithm == "sha256"


# --- token endpoints that misbehave (the registry side is a scripted mirror written http://)


def _challenging(_registry_host: str, realm: str) -> Route:
    return Route(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="svc"'})


def _only_endpoint(fake_url: str, host: str) -> RegistryClient:
    # the mirror is the fake; the upstream of this (unused) registry name is a closed port
    return RegistryClient(RegistryConfig.from_yaml(f"mirrors: {{'{host}': {{endpoint: ['{fake_url}']}}}}"))


def test_token_too_large(registry: RegistryServer) -> None:
    with scripted() as fake:
        fake.routes["/v2/app/manifests/v1"] = _challenging(fake.host, f"{fake.url}/token")
        fake.routes["/token"] = Route(body=json.dumps({"token": "a" * 300_000}).encode())
        client = _only_endpoint(fake.url, fake.host)
        with pytest.raises(LimitError) as caught:
            client.resolve(parse_reference(f"{fake.host}/app:v1"))
        assert caught.value.reason is Reason.LIMIT_EXCEEDED


def test_token_request_redirected_cross_host() -> None:
    with scripted() as fake, scripted() as elsewhere:
        fake.routes["/v2/app/manifests/v1"] = _challenging(fake.host, f"{fake.url}/token")
        fake.routes["/token"] = Route(302, headers={"Location": f"{elsewhere.url}/token"})
        elsewhere.routes["/token"] = Route(body=b'{"token": "t"}')
        keychain = Keychain.from_docker_config(
            json.dumps({"auths": {fake.host: {"username": "u", "password": "p"}}})
        )
        config = RegistryConfig.from_yaml(f"mirrors: {{'{fake.host}': {{endpoint: ['{fake.url}']}}}}")
        with pytest.raises(FetchError) as caught:
            RegistryClient(config, keychain).resolve(parse_reference(f"{fake.host}/app:v1"))
        assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
        assert elsewhere.seen == []
        # the basic credentials went to the realm (same host as the challenge's realm), nowhere else
        token_requests = [s for s in fake.seen if s.path == "/token"]
        assert token_requests and token_requests[0].headers["Authorization"].startswith("Basic ")


def test_plain_http_realm_refused_for_an_https_registry(registry_pki: TestPKI) -> None:
    with scripted(registry_pki.server_context()) as secure, scripted() as plain:
        secure.routes["/v2/app/manifests/v1"] = _challenging(secure.host, f"{plain.url}/token")
        plain.routes["/token"] = Route(body=b'{"token": "t"}')
        config = RegistryConfig.from_yaml(
            f"configs: {{'{secure.host}': {{tls: {{ca_file: {registry_pki.ca_file}}}}}}}"
        )
        with pytest.raises(FetchError) as caught:
            RegistryClient(config).resolve(parse_reference(f"{secure.host}/app:v1"))
        assert caught.value.reason is Reason.REGISTRY_AUTH_FAILED
        assert plain.seen == []


def test_401_without_challenge_and_403() -> None:
    for route in (Route(401), Route(401, headers={"WWW-Authenticate": "Bearer"}), Route(403)):
        with scripted() as fake:
            fake.routes["/v2/app/manifests/v1"] = route
            with pytest.raises(FetchError) as caught:
                _only_endpoint(fake.url, fake.host).resolve(parse_reference(f"{fake.host}/app:v1"))
            assert caught.value.reason is Reason.REGISTRY_AUTH_FAILED


def test_token_endpoint_errors() -> None:
    for token_route, reason in (
        (Route(401), Reason.REGISTRY_AUTH_FAILED),
        (Route(400), Reason.REGISTRY_AUTH_FAILED),
        (Route(503), Reason.REGISTRY_UNAVAILABLE),
        (Route(body=b"<html>"), Reason.REGISTRY_AUTH_FAILED),
    ):
        with scripted() as fake:
            fake.routes["/v2/app/manifests/v1"] = _challenging(fake.host, f"{fake.url}/token")
            fake.routes["/token"] = token_route
            with pytest.raises(FetchError) as caught:
                _only_endpoint(fake.url, fake.host).resolve(parse_reference(f"{fake.host}/app:v1"))
            assert caught.value.reason is reason


def test_rejected_token_is_renewed_once() -> None:
    body = b'{"schemaVersion":2}'
    accepted = {"value": "Bearer first"}
    with scripted() as fake:
        tokens = iter(["first", "second", "third"])
        fake.routes["/token"] = lambda seen: Route(body=json.dumps({"token": next(tokens)}).encode())
        fake.routes["/v2/app/manifests/v1"] = lambda seen: (
            Route(headers={"Docker-Content-Digest": str(Digest.of(body))})
            if seen.headers.get("Authorization") == accepted["value"]
            else _challenging(fake.host, f"{fake.url}/token")
        )
        client = _only_endpoint(fake.url, fake.host)
        ref = parse_reference(f"{fake.host}/app:v1")
        assert client.resolve(ref) == Digest.of(body)  # 401, token "first", accepted
        assert client.resolve(ref) == Digest.of(body)  # "first" from the cache, up front
        assert [s.path for s in fake.seen].count("/token") == 1
        accepted["value"] = "Bearer second"  # the registry revokes "first"
        assert client.resolve(ref) == Digest.of(body)  # rejected, renewed once, accepted
        assert [s.path for s in fake.seen].count("/token") == 2
        accepted["value"] = "none"
        with pytest.raises(FetchError) as caught:  # "second" rejected, "third" rejected: give up
            client.resolve(ref)
        assert caught.value.reason is Reason.REGISTRY_AUTH_FAILED
        assert [s.path for s in fake.seen].count("/token") == 3


# --- keep-alive: one connection per host, as a bare requests.Session; a cut body closes its connection


def test_head_get_404_and_redirects_share_one_connection() -> None:
    with scripted() as fake:
        fake.routes["/m"] = Route(headers={"Docker-Content-Digest": "sha256:0"}, body=b"manifest")
        fake.routes["/moved"] = Route(307, headers={"Location": "/m"}, body=b"<a href='/m'>moved</a>")
        transport = _transport()
        head = transport.exchange("HEAD", f"{fake.url}/m", kind="manifest", max_bytes=0)
        assert (head.status, head.body, head.headers["Docker-Content-Digest"]) == (200, b"", "sha256:0")
        assert transport.exchange("GET", f"{fake.url}/m", kind="manifest", max_bytes=100).body == b"manifest"
        missing = transport.exchange("GET", f"{fake.url}/nothing", kind="manifest", max_bytes=100)
        assert (missing.status, missing.body) == (404, b'{"errors":[{"code":"NOT_FOUND"}]}')
        moved = transport.exchange("GET", f"{fake.url}/moved", kind="manifest", max_bytes=100)
        assert (moved.body, moved.hops) == (b"manifest", 1)
        assert transport.exchange("HEAD", f"{fake.url}/moved", kind="manifest", max_bytes=0).hops == 1
        assert len(fake.seen) == 7
        assert fake.connections() == 1


def test_a_body_cut_at_its_cap_closes_its_connection() -> None:
    limits = Limits(max_error_body_bytes=100)
    with scripted() as fake:
        fake.routes["/big"] = Route(body=b"z" * 5000, chunked=True)  # no Content-Length: cut while read
        fake.routes["/error-at-cap"] = Route(500, body=b"e" * 100)
        fake.routes["/error-over-cap"] = Route(500, body=b"e" * 1000)
        fake.routes["/ok"] = Route(body=b"ok")
        transport = _transport(limits)
        with pytest.raises(LimitError) as caught:
            transport.exchange("GET", f"{fake.url}/big", kind="blob", max_bytes=4999)
        assert caught.value.reason is Reason.LIMIT_EXCEEDED
        assert transport.exchange("GET", f"{fake.url}/ok", kind="blob", max_bytes=10).body == b"ok"
        assert fake.connections() == 2  # the cut body's connection was not reused
        at_cap = transport.exchange("GET", f"{fake.url}/error-at-cap", kind="api", max_bytes=10)
        assert at_cap.body == b"e" * 100  # read to its end: the connection goes back to the pool
        assert transport.exchange("GET", f"{fake.url}/ok", kind="blob", max_bytes=10).body == b"ok"
        assert fake.connections() == 2
        over_cap = transport.exchange("GET", f"{fake.url}/error-over-cap", kind="api", max_bytes=10)
        assert over_cap.body == b"e" * 100  # truncated: its connection is closed
        assert transport.exchange("GET", f"{fake.url}/ok", kind="blob", max_bytes=10).body == b"ok"
        assert fake.connections() == 3
        exact = transport.exchange("GET", f"{fake.url}/ok", kind="blob", max_bytes=2)
        assert exact.body == b"ok"  # exactly at the cap is within it
        assert fake.connections() == 3


# --- the hop deadline: one shared thread, not one per read


def test_reads_start_no_thread_each(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    start = threading.Thread.start

    def counting(self: threading.Thread) -> None:
        started.append(self.name)
        start(self)

    with scripted() as fake:
        fake.routes["/m"] = Route(body=b"manifest")
        transport = _transport()
        transport.exchange("GET", f"{fake.url}/m", kind="manifest", max_bytes=100)  # the server's thread
        monkeypatch.setattr(threading.Thread, "start", counting)
        for _ in range(20):
            transport.exchange("GET", f"{fake.url}/m", kind="manifest", max_bytes=100)
        assert [name for name in started if name != "imprimatur-registry-deadlines"] == []
        assert len(started) <= 1


def test_deadline_thread_cuts_a_blocked_read_and_spares_a_released_one() -> None:
    first, second = socket.socketpair()
    with first, second:
        started = time.monotonic()
        cut = _DEADLINES.watch(first, started + 0.3)
        assert first.recv(10) == b""  # blocked until the deadline thread shut the socket down
        assert 0.25 < time.monotonic() - started < 3.0
        assert _DEADLINES.release(cut) is True
    first, second = socket.socketpair()
    with first, second:
        kept = _DEADLINES.watch(first, time.monotonic() + 0.2)
        assert _DEADLINES.release(kept) is False
        time.sleep(0.4)
        second.sendall(b"still open")
        assert first.recv(10) == b"still open"
        assert _DEADLINES.release(kept) is False
    assert _DEADLINES.watch(None, time.monotonic()) is None


def _endless_trailer() -> Iterator[bytes]:
    yield b"5\r\nhello\r\n0\r\n"
    yield from itertools.repeat(b"X-Trailer: forever\r\n" * 64)


def test_endless_chunked_trailer_hits_the_deadline() -> None:
    """Framing that never ends, sent fast (so no read ever times out), is cut at the hop deadline."""
    limits = Limits(read_timeout=5.0, total_timeout=0.5)
    with scripted() as fake:
        fake.routes["/blob"] = Route(chunked=True, raw=_endless_trailer)
        started = time.monotonic()
        with pytest.raises(LimitError) as caught:
            _transport(limits).exchange("GET", f"{fake.url}/blob", kind="blob", max_bytes=100)
        assert caught.value.reason is Reason.LIMIT_EXCEEDED
        assert time.monotonic() - started < 3.0


# --- proxies: from the environment (whatever trust_env says), read once per host by each transport

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_environment_proxy_and_no_proxy(no_proxy_environment: pytest.MonkeyPatch) -> None:
    target_host = f"127.0.0.1:{closed_port()}"  # nothing listens there: only the proxy can answer
    target = f"http://{target_host}/v2/app/manifests/v1"
    with scripted() as proxy:
        proxy.routes["/v2/app/manifests/v1"] = Route(body=b"via the proxy")
        no_proxy_environment.setenv("HTTP_PROXY", proxy.url)
        transport = _transport()  # trust_env is False: the environment's proxies apply all the same
        assert transport.exchange("GET", target, kind="manifest", max_bytes=100).body == b"via the proxy"
        assert proxy.seen[0].headers["Host"] == target_host
        no_proxy_environment.setenv("NO_PROXY", "127.0.0.1")
        # this transport read the environment for this host once; a new one sees NO_PROXY and goes direct
        assert transport.exchange("GET", target, kind="manifest", max_bytes=100).body == b"via the proxy"
        with pytest.raises(FetchError) as caught:
            _transport().exchange("GET", target, kind="manifest", max_bytes=100)
        assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
        assert len(proxy.seen) == 2


def test_session_proxies_and_ca_bundle_of_a_trusting_session(
    registry_pki: TestPKI, no_proxy_environment: pytest.MonkeyPatch
) -> None:
    with scripted(registry_pki.server_context()) as secure, scripted() as proxy:
        secure.routes["/m"] = Route(body=b"trusted")
        proxy.routes["/p"] = Route(body=b"session proxy")
        no_proxy_environment.setenv("REQUESTS_CA_BUNDLE", registry_pki.ca_file)
        trusting = requests.Session()  # trust_env: REQUESTS_CA_BUNDLE applies to hosts without a CA
        transport = Transport(trusting, RegistryConfig(), Limits())
        assert transport.exchange("GET", f"{secure.url}/m", kind="manifest", max_bytes=10).body == b"trusted"
        with pytest.raises(FetchError) as caught:  # a session that does not trust the environment
            _transport().exchange("GET", f"{secure.url}/m", kind="manifest", max_bytes=10)
        assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
        trusting.proxies = {"http": proxy.url}
        elsewhere = f"http://127.0.0.1:{closed_port()}/p"
        assert transport.exchange("GET", elsewhere, kind="api", max_bytes=20).body == b"session proxy"
