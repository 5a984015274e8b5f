"""End to end on a real kind cluster (kind-config.yaml): helm install, a policy, admit and deny.

Deselected unless ``IMPRIMATUR_E2E=1`` (tests/conftest.py). Needs docker, kind, kubectl on PATH;
``hack/kind-up.sh --deploy`` creates the cluster and its local registry (``localhost:5001`` from here,
``kind-registry:5000`` from the nodes and the controller), builds the controller image and installs the
chart pinned by digest. Images are signed by the test Sigstore kit and pushed to that registry; the
policy trusts the kit's ``trusted_root.json`` through a TrustRoot.

``IMPRIMATUR_E2E_KEEP=1`` keeps the cluster afterwards; by default a cluster this module created is
deleted at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.admission.harness import (
    TRUSTED_SUBJECT,
    cluster_policy,
    pod,
    trust_root,
    workload,
)
from tests.kit.oci import DistributionClient, push_signed_image
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, Identity, SigstoreKit

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("KIND_CLUSTER_NAME", "imprimatur")
CONTEXT = f"kind-{CLUSTER}"
REGISTRY = "localhost:5001"
NAMESPACE = "imprimatur-e2e"
KUBECTL_TIMEOUT_SECONDS = 120
READY_TIMEOUT_SECONDS = 120


def kubectl(
    *args: str, input_text: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["kubectl", "--context", CONTEXT, *args],
        input=input_text,
        capture_output=True,
        text=True,
        timeout=KUBECTL_TIMEOUT_SECONDS,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
    return result


def apply(
    *documents: dict[str, Any], check: bool = True, dry_run: bool = False
) -> subprocess.CompletedProcess[str]:
    args = ["apply", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
    return kubectl(*args, input_text=yaml.safe_dump_all(list(documents)), check=check)


def wait_until(check: Any, what: str, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)


def ready_condition(kind: str, name: str) -> dict[str, Any] | None:
    result = kubectl("get", kind, name, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    obj = json.loads(result.stdout)
    return next((c for c in obj.get("status", {}).get("conditions", []) if c.get("type") == "Ready"), None)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    for tool in ("docker", "kind", "kubectl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not on PATH")
    existed = (
        CLUSTER
        in subprocess.run(
            ["kind", "get", "clusters"], capture_output=True, text=True, check=False
        ).stdout.split()
    )
    subprocess.run([str(ROOT / "hack" / "kind-up.sh"), "--deploy"], check=True, timeout=1200)
    kubectl("-n", "imprimatur-system", "rollout", "status", "deployment", "--timeout=180s")
    kubectl("create", "namespace", NAMESPACE, check=False)
    try:
        yield
    finally:
        kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
        kubectl("delete", "clusterimagepolicies", "--all", check=False)
        kubectl("delete", "trustroots", "--all", check=False)
        if not existed and os.environ.get("IMPRIMATUR_E2E_KEEP") != "1":
            subprocess.run(["kind", "delete", "cluster", "--name", CLUSTER], check=False, timeout=300)


@pytest.fixture(scope="module")
def signed(cluster: None) -> dict[str, str]:
    """Images in the cluster's registry: signed by alice, by mallory, and unsigned."""
    kit = SigstoreKit(now=datetime.now(UTC))
    client = DistributionClient(f"http://{REGISTRY}")

    def push(repo: str, who: Identity | None) -> str:
        if who is None:
            return f"{REGISTRY}/{repo}@{client.push_random_image(repo, 'v1')}"
        digest = push_signed_image(
            client, repo, "v1", lambda d: [kit.sign_image(str(d), f"{REGISTRY}/{repo}", identity=who)]
        )
        return f"{REGISTRY}/{repo}@{digest}"

    images = {
        "good": push("e2e/good", Identity.email(TRUSTED_SUBJECT, GITHUB_OAUTH_ISSUER)),
        "wrong": push("e2e/wrong", Identity.email("mallory@example.com", GITHUB_OAUTH_ISSUER)),
        "unsigned": push("e2e/unsigned", None),
    }
    apply(trust_root(kit.trusted_root_json()), cluster_policy("e2e", [f"{REGISTRY}/e2e/**"]))
    wait_until(
        lambda: (ready_condition("clusterimagepolicy", "e2e") or {}).get("status") == "True",
        "the policy to be Ready",
    )
    wait_until(
        lambda: (ready_condition("trustroot", "test-kit") or {}).get("status") == "True",
        "the trust root to be Ready",
    )
    return images


def test_signed_pod_is_admitted(signed: dict[str, str]) -> None:
    result = apply(pod("signed", [signed["good"]], namespace=NAMESPACE))
    assert result.returncode == 0, result.stderr


def test_unsigned_and_wrongly_signed_pods_are_denied_with_every_reason(signed: dict[str, str]) -> None:
    result = apply(pod("bad", [signed["unsigned"], signed["wrong"]], namespace=NAMESPACE), check=False)
    assert result.returncode != 0
    assert "denied the request" in result.stderr
    assert f"SignatureNotFound: {signed['unsigned']}:" in result.stderr
    assert f"IdentityMismatch: {signed['wrong']}:" in result.stderr


def test_workload_template_is_checked(signed: dict[str, str]) -> None:
    denied = apply(workload("Deployment", "bad", [signed["unsigned"]], namespace=NAMESPACE), check=False)
    assert denied.returncode != 0
    assert "SignatureNotFound" in denied.stderr
    allowed = apply(workload("Deployment", "good", [signed["good"]], namespace=NAMESPACE))
    assert allowed.returncode == 0


def test_server_side_dry_run_is_reviewed(signed: dict[str, str]) -> None:
    result = apply(pod("dry", [signed["unsigned"]], namespace=NAMESPACE), check=False, dry_run=True)
    assert result.returncode != 0
    assert "SignatureNotFound" in result.stderr


def test_invalid_policy_reports_ready_false(cluster: None) -> None:
    bad = cluster_policy("e2e-broken", [f"{REGISTRY}/broken/**"])
    bad["spec"]["identities"] = [{"issuer": GITHUB_OAUTH_ISSUER, "subjectRegExp": "(unclosed"}]  # type: ignore[index]
    apply(bad)
    wait_until(
        lambda: (ready_condition("clusterimagepolicy", "e2e-broken") or {}).get("status") == "False",
        "Ready=False on the broken policy",
    )
    condition = ready_condition("clusterimagepolicy", "e2e-broken")
    assert condition is not None
    assert condition["reason"] == "PolicyInvalid"
    kubectl("delete", "clusterimagepolicy", "e2e-broken")
