"""The background loop's reports beyond one namespace: the cluster-scoped report of policies and trust
roots, and what a restart reads back (flips still raise their Event, emptied namespaces still empty)."""

from __future__ import annotations

from dataclasses import dataclass

from controller.admission.objects import ObjectKey
from controller.errors import Reason
from tests.admission.test_background import FakeCluster, FakeEngine, deployment, run, scan


@dataclass(frozen=True)
class _Compiled:
    trust_root: str


@dataclass(frozen=True)
class _Entry:
    """The fields of a PolicyEntry / TrustRootEntry the loop reads."""

    key: ObjectKey
    ready: bool
    reason: Reason | None = None
    detail: str = ""
    policy: _Compiled | None = None


def _entries() -> tuple[tuple[_Entry, ...], tuple[_Entry, ...]]:
    policies = (
        _Entry(ObjectKey("ClusterImagePolicy", None, "good"), True, policy=_Compiled("corp")),
        _Entry(ObjectKey("ClusterImagePolicy", None, "bad"), False, Reason.POLICY_INVALID, "no images"),
        _Entry(ObjectKey("ClusterImagePolicy", None, "orphan"), True, policy=_Compiled("gone")),
        _Entry(ObjectKey("ImagePolicy", "team", "local"), True, policy=_Compiled("corp")),  # namespaced
    )
    roots = (
        _Entry(ObjectKey("TrustRoot", None, "corp"), True),
        _Entry(ObjectKey("TrustRoot", None, "broken"), False, Reason.TRUST_ROOT_INVALID, "bad PEM"),
    )
    return policies, roots


def test_cluster_report_of_policies_and_trust_roots_written_only_when_changed() -> None:
    kube = FakeCluster(objects={"deployments": [deployment("a", "app", "good1")]})
    s = scan(FakeEngine(), kube)
    s.state.policy_entries, s.state.trust_root_entries = _entries()  # type: ignore[misc]
    result = run(s)
    report = kube.reports[("clusterpolicyreports", "")]
    assert report["kind"] == "ClusterPolicyReport"
    got = {
        (r["resources"][0]["kind"], r["resources"][0]["name"], r["result"], r["rule"])
        for r in report["results"]
    }
    assert got == {
        ("ClusterImagePolicy", "good", "pass", "Ready"),
        ("ClusterImagePolicy", "bad", "fail", "PolicyInvalid"),
        ("ClusterImagePolicy", "orphan", "fail", "TrustRootUnknown"),
        ("TrustRoot", "corp", "pass", "Ready"),
        ("TrustRoot", "broken", "fail", "TrustRootInvalid"),
    }
    assert report["summary"]["fail"] == 3
    assert len(result.cluster_findings) == 5
    writes = kube.writes
    run(s)
    assert kube.writes == writes  # nothing changed
    _policies, roots = _entries()
    s.state.trust_root_entries = roots[:1]  # type: ignore[misc]  # the broken one was deleted
    run(s)
    assert kube.writes == writes + 1
    assert kube.reports[("clusterpolicyreports", "")]["summary"]["fail"] == 2


def test_a_restart_between_pass_and_fail_still_raises_the_event() -> None:
    kube = FakeCluster(objects={"deployments": [deployment("a", "app", "img")]})
    engine = FakeEngine()
    run(scan(engine, kube))  # the first process: pass, reported
    assert kube.reports[("policyreports", "a")]["summary"]["pass"] == 1
    engine.bad.add("img")
    engine.cached.clear()
    restarted = scan(engine, kube)  # a new process: empty memory
    result = run(restarted)
    assert result.seeded == 1 and kube.reads == 2  # each process read back once, on its first cycle
    assert [(w.name, reason) for w, reason, _ in kube.events] == [("app", "IdentityMismatch")]
    run(restarted)
    assert kube.reads == 2 and len(kube.events) == 1  # not read again; still failing: no second Event


def test_without_reading_back_a_restart_would_miss_the_flip() -> None:
    """The control for the test above: the same sequence, the reports gone before the restart."""
    kube = FakeCluster(objects={"deployments": [deployment("a", "app", "img")]})
    engine = FakeEngine()
    run(scan(engine, kube))
    kube.reports.clear()
    engine.bad.add("img")
    engine.cached.clear()
    result = run(scan(engine, kube))
    assert result.seeded == 0 and kube.events == []


def test_a_restart_empties_the_report_of_a_namespace_emptied_while_down() -> None:
    kube = FakeCluster(
        objects={"deployments": [deployment("a", "app", "bad1"), deployment("b", "x", "good1")]}
    )
    run(scan(FakeEngine(), kube))
    kube.objects["deployments"] = [deployment("b", "x", "good1")]  # a's workloads went while we were down
    run(scan(FakeEngine(), kube))
    assert kube.reports[("policyreports", "a")]["results"] == []


def test_reading_back_fails_softly_and_is_retried() -> None:
    kube = FakeCluster(objects={"deployments": [deployment("a", "app", "img")]})
    s = scan(FakeEngine(), kube)
    kube.read_error = True
    assert run(s).seeded == 0 and kube.reports  # the cycle still ran and wrote
    kube.read_error = False
    run(s)
    assert kube.reads == 2
