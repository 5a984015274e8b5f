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
from tests.admission.harness import API_GROUP, TRUST_ROOT_NAME, cluster_policy
from tests.apiserver.conftest import Cluster
from tests.apiserver.harness import CONTROLLER_NAMESPACE, INVALID_POLICY, namespaced_policy, wait_observed

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


def _cluster_report(cluster: Cluster) -> dict[str, Any]:
    response = cluster.api.request("GET", "/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports/imprimatur")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def _cluster_results(report: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str, str]]:
    return {
        (r["resources"][0]["kind"], r["resources"][0]["name"]): (r["result"], r["rule"], r["message"])
        for r in report.get("results", [])
    }


def test_the_cluster_report_says_which_policies_and_trust_roots_are_in_force(cluster: Cluster) -> None:
    _install_crds(cluster)
    scan = _scan(cluster)
    first = _cycle(cluster, scan)
    assert first.complete, first
    report = _cluster_report(cluster)
    assert report["kind"] == "ClusterPolicyReport"
    assert report["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "imprimatur"}
    results = _cluster_results(report)
    assert results[("ClusterImagePolicy", "apps")][:2] == ("pass", "Ready")
    assert results[("TrustRoot", TRUST_ROOT_NAME)][:2] == ("pass", "Ready")
    strict = results[("ClusterImagePolicy", INVALID_POLICY)]
    assert strict[:2] == ("fail", "PolicyInvalid") and strict[2]  # with the compiler's detail
    assert all("namespace" not in r["resources"][0] for r in report["results"])

    # a policy naming a trust root that does not exist: it denies what it covers, and says so here
    orphan = cluster_policy("posture-orphan", ["nothing.invalid/**"], trustRoot="no-such-root")
    cluster.api.apply([orphan])
    try:
        wait_observed(cluster.api, "clusterimagepolicies", "posture-orphan")
        second = _cycle(cluster, scan)
        assert second.reports_written >= 1
        result, rule, message = _cluster_results(_cluster_report(cluster))[
            ("ClusterImagePolicy", "posture-orphan")
        ]
        assert (result, rule) == ("fail", "TrustRootUnknown") and "no-such-root" in message
        assert _cycle(cluster, scan).reports_written == 0  # nothing changed: nothing written
    finally:
        cluster.api.request("DELETE", f"/apis/{API_GROUP}/clusterimagepolicies/posture-orphan")

    # imprimatur report -A shows the cluster rows (no namespace) next to the workloads'
    out = io.StringIO()
    main(["report", "-A", "--kubeconfig", str(cluster.api.kubeconfig), "-o", "json"], out)
    rows = json.loads(out.getvalue())
    assert ("ClusterImagePolicy", INVALID_POLICY, "fail", "PolicyInvalid") in {
        (r["kind"], r["name"], r["result"], r["reason"]) for r in rows if r["namespace"] == ""
    }


def test_a_restarted_controller_still_raises_the_event_for_a_flip(cluster: Cluster) -> None:
    _install_crds(cluster)
    namespace = "posture-restart"
    assert cluster.api.create_namespace(namespace) == namespace
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "api", "image": cluster.images.signed}]},
            },
        },
    }
    cluster.api.apply([deployment])
    _cycle(cluster, _scan(cluster))  # the first process: pass, written to the report

    policy = namespaced_policy(
        "only-bob",
        namespace,
        identity={"issuer": "https://accounts.example.com", "subject": "bob@example.com"},
    )
    cluster.api.apply([policy])
    assert wait_observed(cluster.api, "imagepolicies", "only-bob", namespace) == "True"

    restarted = _scan(cluster)  # a new BackgroundScan: no memory but what the reports hold
    result = _cycle(cluster, restarted)
    assert result.seeded >= 1
    assert result.flips == 1
    response = cluster.api.request(
        "GET", f"/api/v1/namespaces/{namespace}/events?fieldSelector=involvedObject.name=api"
    )
    assert response.status_code == 200, response.text
    events = [e for e in response.json()["items"] if e.get("source", {}).get("component") == "imprimatur"]
    assert [(e["reason"], e["involvedObject"]["kind"]) for e in events] == [
        ("IdentityMismatch", "Deployment")
    ]
