"""TLS contexts are built once per (CA, client certificate) and shared, and still verify everything.

urllib3 would build a context and load the CA certificates into it for every new connection: 30-50 ms
of CPU each with a system bundle, which a registry that accepts and never answers turns into a CPU
drain (measured with benchmarks.tarpit: 25 ms of controller CPU per tarpit review, 2 ms after).
"""

from __future__ import annotations

import datetime
import os
import resource
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from controller.errors import FetchError, LimitError, Reason
from controller.registry import Budget, RegistryClient, RegistryConfig, parse_reference
from controller.registry.deadlines import _CONTEXTS
from tests.fixtures.certs import certificate, common_name, new_key
from tests.fixtures.hostile import Tarpit
from tests.fixtures.registry import RegistryServer


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@pytest.fixture
def silent_host() -> Iterator[str]:
    """Accepts TCP connections and never says a word (not even the TLS handshake)."""
    with Tarpit().running() as tarpit:
        yield f"127.0.0.1:{tarpit.port}"


def test_a_context_is_built_once_per_ca_and_rebuilt_when_the_file_changes(
    tmp_path: Path, registry: RegistryServer
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(Path(registry.ca_file).read_bytes())
    first = _CONTEXTS.get(str(ca), None, None, None)
    assert _CONTEXTS.get(str(ca), None, None, None) is first
    later = time.time() + 5
    os.utime(ca, (later, later))  # a rotated CA: the next connection loads it
    assert _CONTEXTS.get(str(ca), None, None, None) is not first
    assert _CONTEXTS.get(None, None, None, None) is _CONTEXTS.get(None, None, None, None)


def test_a_silent_host_costs_little_cpu_per_attempt(silent_host: str) -> None:
    client = RegistryClient()
    ref = parse_reference(f"{silent_host}/app@sha256:" + "1" * 64)
    assert ref.digest is not None

    def attempt() -> float:
        before = _cpu()
        with pytest.raises(LimitError):
            client.fetch_signatures(
                ref, ref.digest, budget=Budget(deadline=time.monotonic() + 0.3, max_bytes=1 << 20)
            )  # type: ignore[arg-type]
        return _cpu() - before

    attempt()  # the first builds the shared context
    costs = sorted(attempt() for _ in range(3))
    assert costs[1] < 0.015, f"CPU per attempt {costs}"  # it was 30-50 ms: a context per connection


def test_the_shared_context_still_checks_the_ca_and_the_host_name(
    registry: RegistryServer, tmp_path: Path
) -> None:
    digest = registry.push_random_image("tlsctx/app", "v1")
    trusted = RegistryClient(RegistryConfig.from_yaml(registry.registries_yaml()))
    assert trusted.resolve(parse_reference(registry.ref("tlsctx/app", "v1"))) == digest
    context = _CONTEXTS.get(registry.ca_file, None, None, None)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname  # names are checked by the context itself, as urllib3 does by default

    # another CA's certificate file: the registry's chain does not verify under it
    stranger = tmp_path / "stranger.crt"
    stranger.write_bytes(_other_ca_pem())
    config = RegistryConfig.from_yaml(
        registry.registries_yaml(extra_configs={registry.host: {"tls": {"ca_file": str(stranger)}}})
    )
    with pytest.raises(FetchError) as caught:
        RegistryClient(config).resolve(parse_reference(registry.ref("tlsctx/app", "v1")))
    assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
    assert "TLS certificate verification failed" in caught.value.detail


def _other_ca_pem() -> bytes:
    stranger = certificate(
        common_name("not the registry's CA"), new_key(), None, lifetime=datetime.timedelta(days=1), ca=True
    )
    return stranger.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def dripping_proxy(registry: RegistryServer) -> Iterator[str]:
    """A TCP proxy to the real registry that passes the server's bytes on one every 50 ms: every read
    of the TLS handshake is answered in time, and the handshake would take minutes."""
    upstream_host, upstream_port = registry.host.rsplit(":", 1)
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def pump(source: socket.socket, sink: socket.socket, drip: bool) -> None:
        source.settimeout(0.2)
        while not stop.is_set():
            try:
                data = source.recv(1 if drip else 65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            try:
                sink.sendall(data)
            except OSError:
                return
            if drip:
                stop.wait(0.05)

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection((upstream_host, int(upstream_port)))
            sockets.extend((client, upstream))
            threading.Thread(target=pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client, True), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=2)
    for sock in sockets:
        sock.close()
    server.close()


def test_a_dripped_tls_handshake_is_cut_at_the_deadline(
    registry: RegistryServer, dripping_proxy: str
) -> None:
    config = RegistryConfig.from_yaml(
        registry.registries_yaml(extra_configs={dripping_proxy: {"tls": {"ca_file": registry.ca_file}}})
    )
    ref = parse_reference(f"{dripping_proxy}/tlsctx/app@sha256:" + "1" * 64)
    assert ref.digest is not None
    started = time.monotonic()
    with pytest.raises(LimitError) as caught:
        RegistryClient(config).fetch_signatures(
            ref, ref.digest, budget=Budget(deadline=time.monotonic() + 1.0, max_bytes=1 << 20)
        )
    assert time.monotonic() - started < 1.6  # the deadline, not the 5 s connect timeout nor minutes
    assert caught.value.reason is Reason.LIMIT_EXCEEDED
    assert "gave up after 1." in caught.value.detail
