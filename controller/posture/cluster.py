"""Cluster-scoped findings: is each ClusterImagePolicy and TrustRoot in force, and if not, why.

A ClusterImagePolicy that did not compile denies the images its globs cover (``PolicyInvalid``); one
that names a trust root that is missing or invalid denies them too (``TrustRootUnknown``); a TrustRoot
that did not load (``TrustRootInvalid``, or ``TrustRootUnknown`` while its ConfigMap or Secret is
missing) verifies nothing. Operators see that in the same report tools as the workloads' results: a
``ClusterPolicyReport`` / ``ClusterReport`` with one result per object. ``pass`` means ready.

Pure: typed statuses in (the admission side builds them from its loaded entries), findings out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from controller.errors import Reason
from controller.posture.findings import MAX_DETAIL, Finding, WorkloadRef

API_VERSION: Final = "imprimatur.dev/v1alpha1"
POLICY_KIND: Final = "ClusterImagePolicy"
TRUST_ROOT_KIND: Final = "TrustRoot"
READY: Final = "Ready"  # the rule of a passing cluster result
MAX_CLUSTER_OBJECTS: Final = 2000  # per kind: more are counted in no result (the loader bounds them too)


@dataclass(frozen=True, slots=True)
class ClusterObjectStatus:
    """A cluster-scoped object as loaded: ``reason`` is empty when it is ready."""

    kind: str
    name: str
    reason: str = ""
    detail: str = ""
    trust_root: str = ""  # a policy's trust root ("" for a TrustRoot, or a policy that did not compile)


def _finding(status: ClusterObjectStatus, reason: str, detail: str) -> Finding:
    ref = WorkloadRef("", status.kind, status.name, API_VERSION)
    label = f"{status.kind} {status.name}"
    if not reason:
        return Finding(ref, "", "pass", READY, detail[:MAX_DETAIL], policies=(label,))
    return Finding(ref, "", "fail", reason, detail[:MAX_DETAIL], policies=(label,))


def cluster_findings(
    policies: Sequence[ClusterObjectStatus],
    trust_roots: Sequence[ClusterObjectStatus],
    *,
    readiness: Mapping[str, bool],
) -> list[Finding]:
    """One finding per ClusterImagePolicy and TrustRoot (at most :data:`MAX_CLUSTER_OBJECTS` each).

    ``readiness``: every trust root a policy may name -> whether it is loaded (built-ins included)."""
    roots = sorted(trust_roots, key=lambda s: s.name)[:MAX_CLUSTER_OBJECTS]
    out = [_finding(root, root.reason, root.detail or "loaded") for root in roots]
    for policy in sorted(policies, key=lambda s: s.name)[:MAX_CLUSTER_OBJECTS]:
        if policy.reason:
            out.append(_finding(policy, policy.reason, policy.detail))
        elif policy.trust_root and not readiness.get(policy.trust_root, False):
            why = (
                f"trust root {policy.trust_root!r} is invalid"
                if policy.trust_root in readiness
                else f"trust root {policy.trust_root!r} does not exist"
            )
            out.append(
                _finding(policy, str(Reason.TRUST_ROOT_UNKNOWN), f"{why}: the images it covers are denied")
            )
        else:
            trust = f" (trust root {policy.trust_root})" if policy.trust_root else ""
            out.append(_finding(policy, "", f"compiled and enforced{trust}"))
    return out
