"""posture/: findings, reports (both formats), flips, the cycle plan and gauge counts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.errors import Reason
from controller.model import Digest, ImageVerdict, VerifiedSignature
from controller.posture import (
    FlipTracker,
    PlanLimits,
    ReportLimits,
    WorkloadImages,
    WorkloadRef,
    content_of,
    finding_of,
    gauge_counts,
    plan_cycle,
    report_documents,
    results_of_report,
    summary_of,
    unchecked,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
DIGEST = Digest("sha256", "a" * 64)
APP = WorkloadRef("team-a", "Deployment", "app", "apps/v1", "uid-1")


def _signer() -> VerifiedSignature:
    return VerifiedSignature(
        subject="alice@example.com",
        issuer="https://issuer",
        claims={},
        digest=DIGEST,
        log_index=1,
        integrated_time=None,
    )


def passed(image: str = "reg/app@sha256:" + "a" * 64) -> ImageVerdict:
    return ImageVerdict(
        image, True, Reason.VERIFIED, "signed", DIGEST, ("ClusterImagePolicy apps",), (_signer(),)
    )


def failed(
    image: str = "reg/app@sha256:" + "a" * 64, reason: Reason = Reason.IDENTITY_MISMATCH
) -> ImageVerdict:
    return ImageVerdict(image, False, reason, "wrong signer", DIGEST, ("ClusterImagePolicy apps",))


def test_outcomes_of_verdicts() -> None:
    assert finding_of(APP, passed()).outcome == "pass"
    assert finding_of(APP, passed()).signer == "alice@example.com (https://issuer)"
    assert finding_of(APP, failed()).outcome == "fail"
    assert finding_of(APP, failed()).signer == ""
    warn = ImageVerdict("x", True, Reason.SIGNATURE_NOT_FOUND, "allowed in warn mode")
    assert finding_of(APP, warn).outcome == "warn"
    transient = ImageVerdict("x", False, Reason.REGISTRY_UNAVAILABLE, "down", transient=True)
    assert finding_of(APP, transient).outcome == "error"
    assert unchecked(APP, "x", "budget").reason == Reason.LIMIT_EXCEEDED


@pytest.mark.parametrize(
    ("fmt", "api_version", "kind"),
    [
        ("wgpolicyk8s", "wgpolicyk8s.io/v1alpha2", "PolicyReport"),
        ("openreports", "openreports.io/v1alpha1", "Report"),
    ],
)
def test_report_shape(fmt: str, api_version: str, kind: str) -> None:
    other = WorkloadRef("team-b", "Pod", "p")
    findings = [finding_of(APP, passed()), finding_of(APP, failed("reg/b:1")), finding_of(other, failed())]
    docs = report_documents(findings, now=NOW, report_format=fmt)  # type: ignore[arg-type]
    assert sorted(docs) == ["team-a", "team-b"]
    doc = docs["team-a"]
    assert (doc["apiVersion"], doc["kind"]) == (api_version, kind)
    assert doc["metadata"] == {
        "name": "imprimatur",
        "namespace": "team-a",
        "labels": {"app.kubernetes.io/managed-by": "imprimatur"},
    }
    assert ("source" in doc) == (fmt == "openreports")
    assert doc["summary"] == {"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0}
    results = doc["results"]
    assert isinstance(results, list)
    first = next(r for r in results if r["result"] == "pass")
    assert first == {
        "source": "imprimatur",
        "policy": "ClusterImagePolicy apps",
        "rule": "Verified",
        "result": "pass",
        "scored": True,
        "message": "signed",
        "resources": [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "namespace": "team-a",
                "name": "app",
                "uid": "uid-1",
            }
        ],
        "properties": {
            "image": passed().image,
            "digest": str(DIGEST),
            "signer": "alice@example.com (https://issuer)",
        },
        "timestamp": {"seconds": int(NOW.timestamp()), "nanos": 0},
    }
    rows = results_of_report(doc)
    assert {(r.result, r.reason, r.image) for r in rows} == {
        ("pass", "Verified", passed().image),
        ("fail", "IdentityMismatch", "reg/b:1"),
    }


def test_reports_are_bounded_failures_first_and_summary_counts_all() -> None:
    findings = [finding_of(WorkloadRef("ns", "Pod", f"p{i:03}"), passed()) for i in range(50)]
    findings.append(finding_of(WorkloadRef("ns", "Pod", "zzz"), failed()))
    doc = report_documents(findings, now=NOW, limits=ReportLimits(max_results=10))["ns"]
    results = doc["results"]
    assert isinstance(results, list) and len(results) == 10
    assert any(r["result"] == "fail" for r in results)  # the failure is never the one left out
    assert doc["summary"] == {"pass": 50, "fail": 1, "warn": 0, "error": 0, "skip": 0}
    assert doc["metadata"]["annotations"]["imprimatur.dev/truncated"].startswith("41 of 51 results left out")  # type: ignore[index]


def test_content_ignores_timestamps_only() -> None:
    findings = [finding_of(APP, passed())]
    a = report_documents(findings, now=NOW)["team-a"]
    b = report_documents(findings, now=datetime(2027, 1, 1, tzinfo=UTC))["team-a"]
    assert a != b and content_of(a) == content_of(b)
    c = report_documents([finding_of(APP, failed())], now=NOW)["team-a"]
    assert content_of(a) != content_of(c)


def test_empty_report_for_a_namespace_gone_quiet() -> None:
    doc = report_documents([], now=NOW, also=["team-z"])["team-z"]
    assert doc["results"] == [] and summary_of([]) == doc["summary"]


def test_flip_once_per_flip_and_error_is_no_flip() -> None:
    tracker = FlipTracker()
    assert tracker.observe([finding_of(APP, passed())]) == []
    flips = tracker.observe([finding_of(APP, failed())])
    assert [f.finding.reason for f in flips] == ["IdentityMismatch"]
    assert tracker.observe([finding_of(APP, failed())]) == []  # still failing: no second Event
    tracker.observe([finding_of(APP, passed())])
    tracker.observe([unchecked(APP, passed().image, "budget")])  # undecided keeps "pass"
    assert len(tracker.observe([finding_of(APP, failed())])) == 1


def test_flip_tracker_is_bounded_and_retains_only_what_runs() -> None:
    tracker = FlipTracker(max_entries=100)
    tracker.observe(finding_of(WorkloadRef("ns", "Pod", f"p{i}"), passed()) for i in range(1000))
    assert len(tracker) == 100
    assert tracker.retain([(WorkloadRef("ns", "Pod", "p999"), passed().image)]) == 99
    assert len(tracker) == 1


def _items(ns: str, n: int, prefix: str = "img") -> list[WorkloadImages]:
    return [WorkloadImages(WorkloadRef(ns, "Pod", f"p{i}"), (f"{prefix}{i}",)) for i in range(n)]


def test_plan_interleaves_namespaces_so_a_big_tenant_cannot_push_others_back() -> None:
    plan = plan_cycle(
        [*_items("noisy", 10_000), *_items("quiet", 3)], PlanLimits(max_images_per_namespace=20_000)
    )
    quiet = [i for i, (ns, _) in enumerate(plan.order) if ns == "quiet"]
    assert max(quiet) < 6  # its 3 images come within the first 6 visits
    assert len(plan.order) == 10_003


def test_plan_caps_images_per_namespace_and_says_so() -> None:
    plan = plan_cycle(_items("noisy", 100), PlanLimits(max_images_per_namespace=10))
    assert len(plan.order) == 10
    assert len(plan.over) == 90
    assert "more than 10 distinct images" in next(iter(plan.over.values()))


def test_budget_per_namespace_and_in_all() -> None:
    plan = plan_cycle([], PlanLimits(max_uncached=5, max_uncached_per_namespace=2))
    assert [plan.spend("a") for _ in range(3)][2] is not None  # a's share is 2
    assert plan.spend("b") is None and plan.spend("b") is None
    assert plan.spend("c") is None
    assert plan.spend("d") is not None and "budget of 5" in (plan.spend("d") or "")
    assert plan.spent == 5


def test_gauges_count_distinct_images_per_namespace() -> None:
    findings = [finding_of(WorkloadRef("a", "Pod", f"p{i}"), passed()) for i in range(10)]
    findings += [finding_of(WorkloadRef("b", "Pod", "q"), failed())]
    assert gauge_counts(findings) == {("pass", "Verified"): 1, ("fail", "IdentityMismatch"): 1}


@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.text(min_size=1, max_size=5)), max_size=60),
    st.integers(1, 10),
)
def test_plan_properties(pairs: list[tuple[str, str]], cap: int) -> None:
    items = [WorkloadImages(WorkloadRef(ns, "Pod", f"p{i}"), (img,)) for i, (ns, img) in enumerate(pairs)]
    plan = plan_cycle(items, PlanLimits(max_images_per_namespace=cap))
    distinct = set(pairs)
    assert set(plan.order) | set(plan.over) == distinct  # nothing dropped silently
    assert len(plan.order) == len(set(plan.order))
    for ns in "abc":
        assert sum(1 for n, _ in plan.order if n == ns) <= cap


@given(
    st.recursive(
        st.none() | st.text() | st.integers(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=30,
    )
)
def test_reading_a_hostile_report_never_crashes(document: object) -> None:
    results_of_report({"results": document, "metadata": document})
    results_of_report({"results": [{"source": "imprimatur", "resources": document, "properties": document}]})
