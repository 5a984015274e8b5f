"""The controller from the built image decides admission on the real kube-apiserver, through kubectl.

The namespace is in the image lane only (tests/image/conftest.py): a shared in-process controller never
sees it, so every answer here comes from the container. Its decision log line proves it too.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.image.conftest import ImageController
from tests.image.podman import podman


def _decision(logs: str, namespace: str, name: str) -> str:
    """The container's decision log line for the pod ``namespace/name`` (not a dry run), or ``""``."""
    pattern = re.compile(
        rf"admission uid=\S+ kind=Pod object={re.escape(namespace)}/{re.escape(name)} .*dry_run=false .*"
    )
    found = pattern.findall(logs)
    return found[-1] if found else ""


def test_a_signed_pod_is_admitted_by_the_controller_in_the_image(image_controller: ImageController) -> None:
    c = image_controller
    outcome = c.kubectl("run", "signed", f"--image={c.signed}", "-n", c.namespace, "--restart=Never")
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout.strip() == "pod/signed created"
    line = _decision(c.logs(), c.namespace, "signed")
    assert "allowed=true" in line, c.logs()[-3000:]
    assert c.signed.split("@")[1] in line  # the digest it verified


def test_an_unsigned_pod_is_denied_with_its_reason(image_controller: ImageController) -> None:
    c = image_controller
    outcome = c.kubectl("run", "unsigned", f"--image={c.unsigned}", "-n", c.namespace, "--restart=Never")
    assert outcome.returncode == 1
    assert outcome.denials("pods") == [("SignatureNotFound", c.unsigned)], outcome.stderr
    assert "reason=SignatureNotFound" in _decision(c.logs(), c.namespace, "unsigned")
    gone = c.kubectl("get", "pod", "unsigned", "-n", c.namespace)
    assert 'pods "unsigned" not found' in gone.stderr


def test_the_container_runs_as_the_chart_says(image_controller: ImageController) -> None:
    """uid/gid 65532 with fsGroup, a read-only root, /tmp writable, no capabilities."""
    name = image_controller.container
    assert podman("exec", name, "id", "-u").stdout.strip() == "65532"
    assert podman("exec", name, "id", "-G").stdout.split() == ["65532"]
    root = podman("exec", name, "touch", "/opt/venv/x", check=False)
    assert root.returncode != 0
    assert "Read-only file system" in root.stderr
    assert podman("exec", name, "touch", "/tmp/x", check=False).returncode == 0
    status = podman("exec", name, "grep", "-E", "^(CapEff|NoNewPrivs):", "/proc/1/status").stdout
    assert dict(line.split(":\t") for line in status.splitlines()) == {
        "NoNewPrivs": "1",
        "CapEff": "0000000000000000",
    }
    config = json.loads(podman("inspect", name).stdout)[0]
    assert config["HostConfig"]["ReadonlyRootfs"] is True
    assert config["HostConfig"]["Memory"] == 512 * 1024**2  # the chart's limits.memory


@pytest.mark.parametrize(
    "path", ["/etc/imprimatur/tls/tls.key", "/etc/imprimatur/registries/registries.yaml"]
)
def test_mounted_files_keep_the_chart_modes(image_controller: ImageController, path: str) -> None:
    mode = podman("exec", image_controller.container, "stat", "-c", "%a %u:%g", path).stdout.split()
    expected = "440" if "/tls/" in path else "444"
    assert mode == [expected, "0:65532"]
