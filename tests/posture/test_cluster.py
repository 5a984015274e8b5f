"""posture/cluster.py and the cluster-scoped report: one result per ClusterImagePolicy and TrustRoot."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from controller.errors import Reason
from controller.posture import (
    ClusterObjectStatus,
    Finding,
    cluster_findings,
    cluster_report_document,
    content_of,
    results_of_report,
)
from controller.posture.cluster import MAX_CLUSTER_OBJECTS, READY

NOW = datetime(2026, 1, 2, tzinfo=UTC)
READINESS = {"public-good": True, "corp": True, "broken": False}


def _policy(name: str, reason: str = "", detail: str = "", trust_root: str = "corp") -> ClusterObjectStatus:
    return ClusterObjectStatus("ClusterImagePolicy", name, reason, detail, trust_root)


def _root(name: str, reason: str = "", detail: str = "") -> ClusterObjectStatus:
    return ClusterObjectStatus("TrustRoot", name, reason, detail)


def _by_name(findings: list[Finding]) -> dict[tuple[str, str], Finding]:
    return {(f.workload.kind, f.workload.name): f for f in findings}


def test_ready_invalid_and_unknown_trust_roots() -> None:
    findings = cluster_findings(
        [
            _policy("good"),
            _policy("bad", str(Reason.POLICY_INVALID), "spec.images[0].glob: empty", trust_root=""),
            _policy("orphan", trust_root="nowhere"),
            _policy("on-broken", trust_root="broken"),
        ],
        [_root("corp"), _root("broken", str(Reason.TRUST_ROOT_INVALID), "not a trusted_root.json")],
        readiness=READINESS,
    )
    got = {k: (f.outcome, f.reason) for k, f in _by_name(findings).items()}
    assert got == {
        ("ClusterImagePolicy", "good"): ("pass", READY),
        ("ClusterImagePolicy", "bad"): ("fail", "PolicyInvalid"),
        ("ClusterImagePolicy", "orphan"): ("fail", "TrustRootUnknown"),
        ("ClusterImagePolicy", "on-broken"): ("fail", "TrustRootUnknown"),
        ("TrustRoot", "corp"): ("pass", READY),
        ("TrustRoot", "broken"): ("fail", "TrustRootInvalid"),
    }
    named = _by_name(findings)
    assert named[("ClusterImagePolicy", "bad")].detail == "spec.images[0].glob: empty"
    assert "does not exist" in named[("ClusterImagePolicy", "orphan")].detail
    assert named[("ClusterImagePolicy", "good")].policies == ("ClusterImagePolicy good",)
    assert all(f.workload.namespace == "" and f.image == "" for f in findings)


def test_the_cluster_report_in_both_formats_is_cluster_scoped_and_read_back() -> None:
    findings = cluster_findings(
        [_policy("bad", str(Reason.POLICY_INVALID), "x" * 5000, trust_root="")],
        [_root("corp")],
        readiness=READINESS,
    )
    wg = cluster_report_document(findings, now=NOW)
    assert (wg["apiVersion"], wg["kind"]) == ("wgpolicyk8s.io/v1alpha2", "ClusterPolicyReport")
    assert "namespace" not in wg["metadata"]  # type: ignore[operator]
    assert wg["summary"] == {"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0}
    results = wg["results"]
    assert isinstance(results, list)
    assert all("namespace" not in r["resources"][0] for r in results)
    assert all("image" not in r["properties"] for r in results)
    assert max(len(r["message"]) for r in results) <= 1024  # bounded detail
    rows = results_of_report(wg)
    assert {(r.kind, r.name, r.result, r.reason, r.namespace) for r in rows} == {
        ("ClusterImagePolicy", "bad", "fail", "PolicyInvalid", ""),
        ("TrustRoot", "corp", "pass", READY, ""),
    }
    orr = cluster_report_document(findings, now=NOW, report_format="openreports")
    assert (orr["apiVersion"], orr["kind"], orr["source"]) == (
        "openreports.io/v1alpha1",
        "ClusterReport",
        "imprimatur",
    )
    later = cluster_report_document(findings, now=datetime(2027, 1, 1, tzinfo=UTC))
    assert content_of(later) == content_of(wg)  # only the timestamps differ: not rewritten


@given(st.lists(st.text(min_size=1, max_size=20), max_size=MAX_CLUSTER_OBJECTS + 5, unique=True))
def test_bounded_and_one_result_per_object(names: list[str]) -> None:
    findings = cluster_findings([_policy(n) for n in names], [_root(n) for n in names], readiness=READINESS)
    assert len(findings) == 2 * min(len(names), MAX_CLUSTER_OBJECTS)
