"""Background re-verification on the real API server: a running workload's report flips from pass to
fail within one cycle of a policy change, with exactly one Event; ``imprimatur report`` reads it back.

The cycle is driven directly (:meth:`BackgroundScan.run_cycle` on the controller's own event loop, the
same engine and caches), never by waiting for the period. The PolicyReport CRD is the chart's
(``charts/imprimatur/files/wgpolicyk8s-crds.yaml``, what ``reports.installCRDs=true`` installs).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import yaml

from controller.admission.background import BackgroundScan, CycleResult
from controller.admission.posture_kube import KubernetesPosture
from controller.cli import main
from controller.config import BackgroundSettings
from tests.apiserver.conftest import Cluster
from tests.apiserver.harness import CONTROLLER_NAMESPACE, namespaced_policy, wait_observed

CRDS = Path(__file__).resolve().parents[2] / "charts" / "imprimatur" / "files" / "wgpolicyk8s-crds.yaml"
NAMESPACE = "posture"
CYCLE_TIMEOUT = 60.0


def _install_crds(cluster: Cluster) -> None:
    cluster.api.apply(list(yaml.safe_load_all(CRDS.read_text())))
    deadline = time.monotonic() + 20
    while cluster.api.request("GET", "/apis/wgpolicyk8s.io/v1alpha2").status_code != 200:
        assert time.monotonic() < deadline, "the PolicyReport API is not served"
        time.sleep(0.1)


def _scan(cluster: Cluster) -> BackgroundScan:
    controller = cluster.controller.controller
    kube = KubernetesPosture.from_environment(str(cluster.api.kubeconfig))
    return BackgroundScan(
        controller.state,
        kube,
        kube,
        BackgroundSettings(report_format="wgpolicyk8s"),
        controller.metrics,
        controller_namespace=CONTROLLER_NAMESPACE,
        namespace_labels=lambda: controller.loader.namespaces.current,
    )


def _cycle(cluster: Cluster, scan: BackgroundScan) -> CycleResult:
    future = asyncio.run_coroutine_threadsafe(scan.run_cycle(), cluster.controller.loop)
    return future.result(CYCLE_TIMEOUT)


def _report(cluster: Cluster) -> dict[str, Any]:
    response = cluster.api.request(
        "GET", f"/apis/wgpolicyk8s.io/v1alpha2/namespaces/{NAMESPACE}/policyreports/imprimatur"
    )
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def _ours(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in report.get("results", []) if r["resources"][0]["name"] == name]


def _events(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    response = cluster.api.request(
        "GET", f"/api/v1/namespaces/{NAMESPACE}/events?fieldSelector=involvedObject.name={name}"
    )
    assert response.status_code == 200, response.text
    return [e for e in response.json()["items"] if e.get("source", {}).get("component") == "imprimatur"]


def test_a_policy_change_flips_the_report_within_one_cycle_and_raises_one_event(cluster: Cluster) -> None:
    _install_crds(cluster)
    images = cluster.images
    assert cluster.api.create_namespace(NAMESPACE) == NAMESPACE
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": images.signed}]},
            },
        },
    }
    cluster.api.apply([deployment])  # admitted by the webhook (no controller-manager: no Pods appear)
    scan = _scan(cluster)

    first = _cycle(cluster, scan)
    assert first.complete, first
    [before] = _ours(_report(cluster), "web")
    assert (before["result"], before["rule"], before["source"]) == ("pass", "Verified", "imprimatur")
    assert before["resources"][0]["kind"] == "Deployment"
    assert before["properties"]["image"] == images.signed
    assert before["properties"]["signer"].startswith("alice@")
    assert "ClusterImagePolicy" in before["policy"]
    assert _events(cluster, "web") == []

    # the namespace now requires a signer alice is not: the running pod no longer passes
    policy = namespaced_policy(
        "only-bob",
        NAMESPACE,
        identity={"issuer": "https://accounts.example.com", "subject": "bob@example.com"},
    )
    cluster.api.apply([policy])
    assert wait_observed(cluster.api, "imagepolicies", "only-bob", NAMESPACE) == "True"

    second = _cycle(cluster, scan)
    assert second.flips >= 1
    report = _report(cluster)
    [after] = _ours(report, "web")
    assert after["result"] == "fail"
    assert after["rule"] == "IdentityMismatch", after
    assert "ImagePolicy" in after["policy"]
    assert report["summary"]["fail"] >= 1
    events = _events(cluster, "web")
    assert [(e["reason"], e["type"], e["involvedObject"]["kind"]) for e in events] == [
        ("IdentityMismatch", "Warning", "Deployment")
    ]

    _cycle(cluster, scan)  # still failing: no second Event
    assert len(_events(cluster, "web")) == 1

    # imprimatur report reads it back, filtered, as a table and as JSON; exit 1: a result fails
    out = io.StringIO()
    code = main(
        [
            "report",
            "-n",
            NAMESPACE,
            "--kubeconfig",
            str(cluster.api.kubeconfig),
            "--verdict",
            "fail",
            "-o",
            "json",
        ],
        out,
    )
    assert code == 1
    rows = json.loads(out.getvalue())
    assert [(r["name"], r["image"], r["result"], r["reason"]) for r in rows] == [
        ("web", images.signed, "fail", "IdentityMismatch")
    ]
    table = io.StringIO()
    assert main(
        ["report", "-A", "--kubeconfig", str(cluster.api.kubeconfig), "--reason", "Verified"], table
    ) in (0, 1)
    assert "IdentityMismatch" not in table.getvalue()
    none = io.StringIO()
    assert (
        main(
            ["report", "-n", NAMESPACE, "--kubeconfig", str(cluster.api.kubeconfig), "--verdict", "pass"],
            none,
        )
        == 0
    )
