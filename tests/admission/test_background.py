"""The background loop with fakes around it: what it lists and skips, the budget and fairness of
uncached work, reports written only when changed, one Event per flip, the gauges. (The real engine and
API server: tests/apiserver/test_reports.py.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.admission.background import BackgroundScan
from controller.admission.metrics import AdmissionMetrics
from controller.admission.posture_kube import WORKLOAD_KINDS, Page, WorkloadKind
from controller.config import BackgroundSettings
from controller.errors import FetchError, Reason
from controller.model import Decision, ImageVerdict
from controller.posture import WorkloadRef

NOW = datetime(2026, 1, 2, tzinfo=UTC)


def pod(ns: str, name: str, *images: str, phase: str = "Running") -> dict[str, object]:
    return {
        "metadata": {"namespace": ns, "name": name, "uid": f"uid-{name}"},
        "spec": {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]},
        "status": {"phase": phase},
        "apiVersion": "v1",
        "kind": "Pod",
    }


def deployment(ns: str, name: str, *images: str) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": i} for i in images]}}},
    }


@dataclass
class FakeEngine:
    """Verdicts by image: ``good*`` pass, ``bad*`` fail; ``cached`` ones answer without deciding."""

    cached: set[tuple[str, str]] = field(default_factory=set)
    bad: set[str] = field(default_factory=set)
    decided: list[tuple[str, str]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    delay: float = 0.0

    def verdict(self, image: str) -> ImageVerdict:
        if image in self.bad or image.startswith("bad"):
            return ImageVerdict(
                image, False, Reason.IDENTITY_MISMATCH, "wrong signer", policies=("ClusterImagePolicy p",)
            )
        return ImageVerdict(image, True, Reason.VERIFIED, "signed", policies=("ClusterImagePolicy p",))

    def cached_decision(self, images: Sequence[str], namespace: str | None = None) -> Decision | None:
        if (namespace or "", images[0]) in self.cached:
            return Decision(True, (self.verdict(images[0]),))
        return None

    async def decide(
        self, images: Sequence[str], *, namespace: str | None = None, timeout: float | None = None
    ) -> Decision:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            self.decided.append((namespace or "", images[0]))
            self.cached.add((namespace or "", images[0]))
            return Decision(True, (self.verdict(images[0]),))
        finally:
            self.in_flight -= 1


@dataclass
class FakeState:
    engine: FakeEngine
    loaded: bool = True
    policy_entries: tuple[Any, ...] = ()
    trust_root_entries: tuple[Any, ...] = ()

    def trust_root_readiness(self) -> dict[str, bool]:
        return {e.key.name: e.ready for e in self.trust_root_entries}


@dataclass
class FakeCluster:
    objects: dict[str, list[Mapping[str, object]]] = field(default_factory=dict)  # plural -> objects
    served_apis: set[str] = field(default_factory=lambda: {"wgpolicyk8s.io/v1alpha2"})
    reports: dict[tuple[str, str], Mapping[str, object]] = field(default_factory=dict)
    writes: int = 0
    events: list[tuple[WorkloadRef, str, str]] = field(default_factory=list)
    pages: int = 0
    reads: int = 0
    read_error: bool = False

    async def list_page(self, kind: WorkloadKind, *, limit: int, token: str | None) -> Page:
        self.pages += 1
        items = self.objects.get(kind.plural, [])
        start = int(token or 0)
        end = start + limit
        # as the API server lists them: items carry no apiVersion or kind
        page = [{k: v for k, v in i.items() if k not in ("apiVersion", "kind")} for i in items[start:end]]
        return Page(page, str(end) if end < len(items) else None)

    async def served(self, api_version: str) -> bool:
        return api_version in self.served_apis

    async def apply_report(self, plural: str, api_version: str, namespace: str | None, body: bytes) -> None:
        self.writes += 1
        self.reports[(plural, namespace or "")] = json.loads(body)

    async def read_reports(self, api_version: str, plural: str) -> list[Mapping[str, object]]:
        self.reads += 1
        if self.read_error:
            raise FetchError(Reason.INTERNAL_ERROR, "kubernetes API: GET: HTTP 503")
        return [d for (p, _), d in self.reports.items() if p == plural]

    async def post_event(self, workload: WorkloadRef, reason: str, message: str, now: datetime) -> None:
        self.events.append((workload, reason, message))


def scan(engine: FakeEngine, kube: FakeCluster, **settings: Any) -> BackgroundScan:
    base: dict[str, Any] = {"page_size": 2, "exclude_namespaces": ("kube-system",)}
    base.update(settings)
    return BackgroundScan(
        FakeState(engine),  # type: ignore[arg-type]
        kube,
        kube,
        BackgroundSettings(**base),
        AdmissionMetrics(),
        controller_namespace="imprimatur-system",
        namespace_labels=lambda: {"opted-out": {"imprimatur.dev/exclude": "true"}},
        clock=lambda: NOW,
    )


def run(s: BackgroundScan) -> Any:
    return asyncio.run(s.run_cycle())


def test_lists_pods_and_workloads_skipping_excluded_and_finished() -> None:
    kube = FakeCluster(
        objects={
            "pods": [
                pod("team-a", "web", "good1", "good2"),
                pod("team-a", "done", "bad9", phase="Succeeded"),
                pod("kube-system", "dns", "bad1"),
                pod("imprimatur-system", "me", "bad2"),
                pod("opted-out", "x", "bad3"),
                {"metadata": "hostile"},
                pod("team-b", "garbage", 42),  # type: ignore[arg-type]
            ],
            "deployments": [deployment("team-b", "api", "bad1")],
        }
    )
    engine = FakeEngine()
    result = run(scan(engine, kube))
    seen = {(f.workload.namespace, f.workload.name, f.image, f.outcome) for f in result.findings}
    assert seen == {
        ("team-a", "web", "good1", "pass"),
        ("team-a", "web", "good2", "pass"),
        ("team-b", "api", "bad1", "fail"),
    }
    assert kube.pages >= 4  # paginated (page_size 2)
    report = kube.reports[("policyreports", "team-b")]
    assert report["summary"] == {"pass": 0, "fail": 1, "warn": 0, "error": 0, "skip": 0}


def test_cached_verdicts_cost_no_decision_and_unchanged_reports_are_not_rewritten() -> None:
    kube = FakeCluster(objects={"pods": [pod("a", f"p{i}", "good1") for i in range(10)]})
    engine = FakeEngine()
    s = scan(engine, kube)
    first = run(s)
    assert (first.cached, first.decided) == (0, 1)  # ten pods, one (namespace, image): one decision
    writes = kube.writes
    second = run(s)
    assert (second.cached, second.decided) == (1, 0)
    assert kube.writes == writes  # nothing changed: no write


def test_one_event_per_pass_to_fail_flip() -> None:
    kube = FakeCluster(objects={"deployments": [deployment("a", "app", "img")]})
    engine = FakeEngine()
    s = scan(engine, kube)
    run(s)
    assert kube.events == []
    engine.bad.add("img")  # the policy changed: the verdict is recomputed as a failure
    engine.cached.clear()
    run(s)
    assert [(w.name, reason) for w, reason, _ in kube.events] == [("app", "IdentityMismatch")]
    assert kube.reports[("policyreports", "a")]["summary"]["fail"] == 1  # type: ignore[index]
    run(s)
    run(s)
    assert len(kube.events) == 1  # still failing: not again


def test_uncached_work_is_bounded_concurrent_and_fair_across_tenants() -> None:
    noisy = [pod("noisy", f"p{i}", f"n{i}") for i in range(300)]
    quiet = [pod("quiet", "q", "q1", "q2")]
    kube = FakeCluster(objects={"pods": noisy + quiet})
    engine = FakeEngine(delay=0.001)
    s = scan(engine, kube, page_size=50, max_concurrent=3, max_uncached=40, max_uncached_per_namespace=30)
    result = run(s)
    assert engine.most_in_flight <= 3
    assert len(engine.decided) == 32  # noisy's share (30) + quiet's 2, within the cycle's 40
    assert {("quiet", "q1"), ("quiet", "q2")} <= set(engine.decided)
    left = [f for f in result.findings if f.outcome == "error"]
    assert len(left) == 270 and {f.reason for f in left} == {"LimitExceeded"}
    assert all(f.workload.namespace == "noisy" for f in left)


def test_time_budget_ends_the_cycle_and_reports_the_rest_undecided() -> None:
    kube = FakeCluster(objects={"pods": [pod("a", f"p{i}", f"i{i}") for i in range(20)]})
    engine = FakeEngine(delay=0.2)
    s = scan(engine, kube, max_concurrent=1, cycle_seconds=1.0)
    result = run(s)
    assert result.decided < 20
    assert sum(1 for f in result.findings if f.reason == "LimitExceeded") == 20 - result.decided


def test_huge_image_lists_are_capped_per_namespace() -> None:
    kube = FakeCluster(
        objects={"pods": [pod("a", f"p{i}", *(f"x{i}-{j}" for j in range(200))) for i in range(10)]}
    )
    engine = FakeEngine()
    result = run(
        scan(
            engine, kube, max_images_per_namespace=100, max_uncached=10_000, max_uncached_per_namespace=10_000
        )
    )
    assert len(engine.decided) == 100
    assert sum(1 for f in result.findings if "more than 100 distinct images" in f.detail) == 1900


def test_max_objects_bounds_a_listing_and_keeps_flip_memory() -> None:
    kube = FakeCluster(objects={"pods": [pod("a", f"p{i}", "good") for i in range(100)]})
    result = run(scan(FakeEngine(), kube, max_objects=10, page_size=3))
    assert not result.complete
    assert len(result.findings) == 10


def test_gauges_and_openreports_when_served() -> None:
    kube = FakeCluster(
        objects={"pods": [pod("a", "p", "good1", "bad1")]},
        served_apis={"wgpolicyk8s.io/v1alpha2", "openreports.io/v1alpha1"},
    )
    s = scan(FakeEngine(), kube)
    run(s)
    assert set(kube.reports) == {
        ("policyreports", "a"),
        ("reports", "a"),
        ("clusterpolicyreports", ""),  # the ClusterImagePolicies' and TrustRoots' (none here)
        ("clusterreports", ""),
    }
    assert kube.reports[("reports", "a")]["source"] == "imprimatur"
    metrics = s.metrics
    assert metrics is not None
    assert metrics.running_images.value(verdict="pass", reason="Verified") == 1
    assert metrics.running_images.value(verdict="fail", reason="IdentityMismatch") == 1
    assert metrics.background_images_checked.value() == 2
    assert "imprimatur_running_images{" in metrics.render()


def test_a_namespace_whose_workloads_are_gone_gets_an_empty_report() -> None:
    kube = FakeCluster(objects={"pods": [pod("a", "p", "bad1")]})
    s = scan(FakeEngine(), kube)
    run(s)
    kube.objects["pods"] = []
    run(s)
    assert kube.reports[("policyreports", "a")]["results"] == []


def test_nothing_before_policies_are_loaded() -> None:
    kube = FakeCluster(objects={"pods": [pod("a", "p", "bad1")]})
    s = scan(FakeEngine(), kube)
    s.state.loaded = False  # type: ignore[misc]
    result = run(s)
    assert result.skipped and kube.pages == 0 and kube.writes == 0


def test_all_kinds_listed() -> None:
    assert {k.kind for k in WORKLOAD_KINDS} >= {
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "CronJob",
    }
