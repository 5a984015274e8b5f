"""The webhook's certificate is rotated in place, as Kubernetes rotates a mounted Secret."""

from __future__ import annotations

import shutil
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509

from controller.admission.server import serve_files
from controller.admission.tls import ReloadingTLS, SelfSignedTLS
from controller.errors import PolicyError, Reason
from tests.admission.harness import RunningController, options_for_test, pod, review, running
from tests.fixtures.registry import TestPKI


def _mount(secret_dir: Path, pki: TestPKI, generation: int) -> None:
    """Write the pair the way the kubelet does: a new timestamped dir, then swap the ``..data`` link."""
    data = secret_dir / f"..{generation}"
    data.mkdir()
    shutil.copy(pki.server_cert, data / "tls.crt")
    shutil.copy(pki.server_key, data / "tls.key")
    shutil.copy(pki.ca_file, data / "ca.crt")
    link = secret_dir / "..data_tmp"
    link.symlink_to(data.name)
    link.replace(secret_dir / "..data")
    for name in ("tls.crt", "tls.key", "ca.crt"):
        if not (secret_dir / name).is_symlink():
            (secret_dir / name).symlink_to(f"..data/{name}")


def _served_certificate(url: str) -> x509.Certificate:
    host, port = url.removeprefix("https://").split(":")
    pem = ssl.get_server_certificate((host, int(port)))
    return x509.load_pem_x509_certificate(pem.encode())


def _certificate(path: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


@pytest.fixture
def secret_dir(tmp_path: Path, registry_pki: TestPKI) -> Path:
    directory = tmp_path / "tls"
    directory.mkdir()
    _mount(directory, registry_pki, 1)
    return directory


@pytest.fixture
def server(secret_dir: Path, tmp_path: Path) -> Iterator[RunningController]:
    from controller.admission.server import build_controller
    from controller.config import Settings

    policy = tmp_path / "empty.yaml"
    policy.write_text("")
    options = options_for_test(tls_dir=secret_dir, tls_reload_seconds=0.1)
    controller = build_controller(options, Settings(), reader=None)

    async def main(c: Any) -> None:
        await serve_files(c, [str(policy)])

    with running(controller, main) as srv:
        yield srv


def test_rotated_certificate_is_served_without_a_restart(
    server: RunningController, secret_dir: Path, registry_pki: TestPKI, tmp_path: Path
) -> None:
    assert _served_certificate(server.url) == _certificate(registry_pki.server_cert)
    session = requests.Session()
    before = session.post(
        f"{server.url}/validate-pods",
        json=review(pod("p", ["a/b:c"])),
        verify=registry_pki.ca_file,
        timeout=10,
    )
    assert before.status_code == 200

    rotated = TestPKI.generate(tmp_path / "rotated")
    _mount(secret_dir, rotated, 2)
    deadline = time.monotonic() + 10
    while _served_certificate(server.url) != _certificate(rotated.server_cert):
        assert time.monotonic() < deadline, "the new certificate was not served"
        time.sleep(0.05)

    # new connections trust the new CA only; the listening socket never closed
    after = requests.post(
        f"{server.url}/validate-pods", json=review(pod("p", ["a/b:c"])), verify=rotated.ca_file, timeout=10
    )
    assert after.status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.post(f"{server.url}/validate-pods", json={}, verify=registry_pki.ca_file, timeout=10)
    assert server.controller.server.tls.cadata == Path(rotated.ca_file).read_bytes()


def test_mismatched_pair_keeps_the_current_certificate(
    secret_dir: Path, tmp_path: Path, registry_pki: TestPKI
) -> None:
    tls = ReloadingTLS(secret_dir / "tls.crt", secret_dir / "tls.key")
    tls.load()
    other = TestPKI.generate(tmp_path / "other")
    # a Secret caught half-written: the new certificate with the old key
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(other.server_cert, half / "tls.crt")
    shutil.copy(registry_pki.server_key, half / "tls.key")
    broken = ReloadingTLS(half / "tls.crt", half / "tls.key")
    with pytest.raises(PolicyError) as caught:
        broken.load()
    assert caught.value.reason == Reason.CONFIG_INVALID

    (secret_dir / "..data" / "tls.crt").write_bytes(Path(other.server_cert).read_bytes())
    assert tls.check() is False
    assert tls.reloads == 0
    (secret_dir / "..data" / "tls.key").write_bytes(Path(other.server_key).read_bytes())
    assert tls.check() is True
    assert tls.reloads == 1
    assert tls.check() is False


def test_missing_files_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        ReloadingTLS(tmp_path / "tls.crt", tmp_path / "tls.key").load()
    assert caught.value.reason == Reason.CONFIG_INVALID


def test_self_signed_certificate_names_its_hosts() -> None:
    tls = SelfSignedTLS(["imprimatur.imprimatur.svc", "127.0.0.1"])
    assert tls.cadata is not None
    cert = x509.load_pem_x509_certificate(tls.cadata)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["imprimatur.imprimatur.svc"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
