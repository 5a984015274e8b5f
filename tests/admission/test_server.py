"""``imprimatur serve`` as a process: configuration errors, policy files, serving, and a clean stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from controller.admission.server import load_files
from controller.errors import PolicyError, Reason
from tests.admission.harness import Images, cluster_policy, pod, response_of, review, write_policies
from tests.fixtures.registry import RegistryServer, TestPKI, free_port

REPO = Path(__file__).resolve().parents[2]


def _serve(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "serve", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


async def test_policy_files_must_all_compile(tmp_path: Path) -> None:
    path = write_policies(
        tmp_path / "p.yaml",
        [
            cluster_policy("good", ["ghcr.io/**"]),
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
            {**cluster_policy("bad", ["ghcr.io/**"]), "spec": {"images": []}},
        ],
    )
    with pytest.raises(PolicyError) as caught:
        await load_files([str(path)])
    assert caught.value.reason == Reason.POLICY_INVALID
    assert "[1]: not a ClusterImagePolicy, ImagePolicy or TrustRoot" in caught.value.detail
    assert "[2]: ClusterImagePolicy bad" in caught.value.detail
    (tmp_path / "broken.yaml").write_text("a: [")
    with pytest.raises(PolicyError):
        await load_files([str(tmp_path / "broken.yaml")])
    policies, roots = await load_files(
        [str(write_policies(tmp_path / "ok.yaml", [cluster_policy("good", ["x/**"])]))]
    )
    assert [p.key.name for p in policies] == ["good"] and roots == []


def test_configuration_errors_exit_2(tmp_path: Path) -> None:
    bad_policy = write_policies(tmp_path / "p.yaml", [{"kind": "Nonsense"}])
    process = _serve(
        ["--policy", str(bad_policy)],
        {
            "IMPRIMATUR_TLS_DIR": str(tmp_path),
            "IMPRIMATUR_METRICS_PORT": "0",
            "IMPRIMATUR_LIVENESS_ENDPOINT": f"http://127.0.0.1:{free_port()}/h",
            "IMPRIMATUR_WEBHOOK_PORT": str(free_port()),
        },
    )
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert b"PolicyInvalid" in err

    process = _serve(["--policy", str(bad_policy)], {"IMPRIMATUR_DECISION_TIMEOUT_SECONDS": "forever"})
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert b"ConfigInvalid" in err


def test_serve_policy_files_over_https_and_stop_on_sigterm(
    tmp_path: Path, policy_file: Path, images: Images, registry: RegistryServer, registry_pki: TestPKI
) -> None:
    tls = tmp_path / "tls"
    tls.mkdir()
    shutil.copy(registry_pki.server_cert, tls / "tls.crt")
    shutil.copy(registry_pki.server_key, tls / "tls.key")
    shutil.copy(registry_pki.ca_file, tls / "ca.crt")
    (tmp_path / "registries.yaml").write_text(registry.registries_yaml())
    port, health, metrics = free_port(), free_port(), free_port()
    process = _serve(
        ["--policy", str(policy_file)],
        {
            "IMPRIMATUR_WEBHOOK_ADDR": "127.0.0.1",
            "IMPRIMATUR_WEBHOOK_PORT": str(port),
            "IMPRIMATUR_TLS_DIR": str(tls),
            "IMPRIMATUR_LIVENESS_ENDPOINT": f"http://127.0.0.1:{health}/healthz",
            "IMPRIMATUR_METRICS_PORT": str(metrics),
            "IMPRIMATUR_REGISTRY_CONFIG": str(tmp_path / "registries.yaml"),
        },
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{health}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "not ready in time"
            time.sleep(0.1)
        url = f"https://127.0.0.1:{port}/validate-pods"
        allowed = response_of(
            requests.post(
                url, json=review(pod("a", [images.signed])), verify=registry_pki.ca_file, timeout=10
            ).json()
        )
        denied = response_of(
            requests.post(
                url, json=review(pod("b", [images.unsigned])), verify=registry_pki.ca_file, timeout=10
            ).json()
        )
        assert allowed["allowed"] is True
        assert denied["status"]["message"].startswith(f"SignatureNotFound: {images.unsigned}: ")
        text = requests.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
        assert 'imprimatur_admission_decisions_total{kind="Pod",allowed="true",reason="Verified"} 1' in text
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert b"admission uid=" in err  # the decision log lines
