"""The translation of the chart's Deployment into ``podman run`` flags: every setting the chart gives is
carried over, and one it cannot carry over fails instead of being dropped. No container runs here."""

from __future__ import annotations

import copy
import stat
from pathlib import Path

import pytest

from tests.apiserver.webhooks import helm_binary
from tests.deploy.helmrun import NAMESPACE, Helm, Obj, find
from tests.image.conftest import render
from tests.image.podman import ImageError, PodContext, cpus, memory_bytes, pod_arguments, probe_url


@pytest.fixture(scope="module")
def deployment() -> Obj:
    objects = render(
        Helm(helm_binary()), "--set", "tls.source=external", "--set", "registryConfig=configs: {}"
    )
    return find(objects, "Deployment")


def _context(tmp_path: Path) -> PodContext:
    return PodContext(
        namespace=NAMESPACE,
        pod_name="p-0",
        secrets={"imprimatur-tls": {"tls.crt": b"crt", "tls.key": b"key", "ca.crt": b"ca"}},
        config_maps={"imprimatur-registries": {"registries.yaml": "configs: {}\n"}},
        volumes_dir=tmp_path,
    )


def test_the_chart_deployment_becomes_these_flags(deployment: Obj, tmp_path: Path) -> None:
    flags = pod_arguments(deployment, _context(tmp_path))
    security = [f for f in flags if not f.startswith(("--env=", "--volume=", "--tmpfs="))]
    assert security == [
        "--user=65532:65532",
        "--group-add=65532",
        "--read-only",
        "--read-only-tmpfs=false",
        "--security-opt=no-new-privileges",
        "--cap-drop=ALL",
        f"--memory={512 * 1024**2}",
        "--cpus=1.0",
    ]
    assert f"--tmpfs=/tmp:rw,mode=1777,size={64 * 1024**2}" in flags
    assert f"--volume={tmp_path / 'tls'}:/etc/imprimatur/tls:ro" in flags
    assert f"--volume={tmp_path / 'registries'}:/etc/imprimatur/registries:ro" in flags
    env = dict(f.removeprefix("--env=").split("=", 1) for f in flags if f.startswith("--env="))
    assert env["IMPRIMATUR_NAMESPACE"] == NAMESPACE  # the downward API, resolved
    assert env["IMPRIMATUR_POD_NAME"] == "p-0"
    assert env["IMPRIMATUR_TLS_DIR"] == "/etc/imprimatur/tls"
    assert env["IMPRIMATUR_REGISTRY_CONFIG"] == "/etc/imprimatur/registries/registries.yaml"


def test_volumes_get_the_chart_modes(deployment: Obj, tmp_path: Path) -> None:
    pod_arguments(deployment, _context(tmp_path))
    assert stat.S_IMODE((tmp_path / "tls" / "tls.key").stat().st_mode) == 0o440
    assert (tmp_path / "tls" / "tls.key").read_bytes() == b"key"
    assert stat.S_IMODE((tmp_path / "registries" / "registries.yaml").stat().st_mode) == 0o444


@pytest.mark.parametrize(
    ("where", "field", "value"),
    [
        ("container", "procMount", "Unmasked"),
        ("container", "privileged", True),
        ("pod", "sysctls", [{"name": "net.core.somaxconn", "value": "1024"}]),
        ("pod", "seccompProfile", {"type": "Unconfined"}),
    ],
)
def test_a_security_setting_it_cannot_carry_over_fails(
    deployment: Obj, tmp_path: Path, where: str, field: str, value: object
) -> None:
    changed = copy.deepcopy(deployment)
    spec = changed["spec"]["template"]["spec"]
    target = spec["containers"][0] if where == "container" else spec
    target.setdefault("securityContext", {})[field] = value
    with pytest.raises(ImageError):
        pod_arguments(changed, _context(tmp_path))


def test_a_volume_kind_it_cannot_carry_over_fails(deployment: Obj, tmp_path: Path) -> None:
    changed = copy.deepcopy(deployment)
    spec = changed["spec"]["template"]["spec"]
    spec["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    spec["containers"][0]["volumeMounts"].append({"name": "host", "mountPath": "/host"})
    with pytest.raises(ImageError, match="hostPath"):
        pod_arguments(changed, _context(tmp_path))


def test_a_missing_secret_fails(deployment: Obj, tmp_path: Path) -> None:
    context = _context(tmp_path)
    with pytest.raises(ImageError, match="imprimatur-tls"):
        pod_arguments(deployment, PodContext(**{**context.__dict__, "secrets": {}}))


def test_the_startup_probe_url_names_the_health_port(deployment: Obj) -> None:
    assert probe_url(deployment, "startupProbe") == "http://127.0.0.1:8080/healthz"


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("512Mi", 512 * 1024**2), ("1G", 10**9), ("64Mi", 64 * 1024**2), ("1000", 1000)],
)
def test_memory_quantities(quantity: str, expected: int) -> None:
    assert memory_bytes(quantity) == expected


@pytest.mark.parametrize(("quantity", "expected"), [("1", 1.0), ("500m", 0.5), ("2.5", 2.5)])
def test_cpu_quantities(quantity: str, expected: float) -> None:
    assert cpus(quantity) == expected


@pytest.mark.parametrize("quantity", ["", "1Ti", "-1", "lots", "100m"])
def test_memory_quantities_it_does_not_know_fail(quantity: str) -> None:
    with pytest.raises(ImageError):
        memory_bytes(quantity)
