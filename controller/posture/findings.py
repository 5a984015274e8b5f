"""One finding per workload and image: the verdict admission would give it now, as a report result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from controller.errors import Reason
from controller.model import ImageVerdict

Outcome = Literal["pass", "fail", "warn", "error"]
"""``pass``: verified; ``warn``: admitted only in warn mode (or by an allowing default); ``fail``:
admission would deny it; ``error``: it could not be decided now (a transient failure: registry down,
the cycle's budget spent), which is neither a pass nor a new failure."""

MAX_DETAIL: Final = 1024  # characters of a finding's message


@dataclass(frozen=True, slots=True, order=True)
class WorkloadRef:
    """The object whose images were checked: a Pod or a workload with a pod template."""

    namespace: str
    kind: str
    name: str
    api_version: str = "v1"
    uid: str = ""

    def reference(self) -> dict[str, str]:
        """As a Kubernetes ObjectReference (``resources[]`` of a report result)."""
        ref = {"apiVersion": self.api_version, "kind": self.kind}
        if self.namespace:  # "" for a cluster-scoped object (a ClusterImagePolicy, a TrustRoot)
            ref["namespace"] = self.namespace
        ref["name"] = self.name
        if self.uid:
            ref["uid"] = self.uid
        return ref

    def __str__(self) -> str:
        if not self.namespace:
            return f"{self.kind.lower()}/{self.name}"
        return f"{self.kind.lower()}/{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class WorkloadImages:
    """A workload and the distinct images of its pod (template), in order."""

    workload: WorkloadRef
    images: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Finding:
    """The outcome for one image of one workload."""

    workload: WorkloadRef
    image: str
    outcome: Outcome
    reason: str  # a Reason code, or the loop's own (LimitExceeded when the budget ran out)
    detail: str
    policies: tuple[str, ...] = ()
    digest: str = ""
    signer: str = ""  # "subject (issuer)" of the first matching signature, for passes


def outcome_of(verdict: ImageVerdict) -> Outcome:
    if verdict.transient:
        return "error"
    if not verdict.allowed:
        return "fail"
    return "pass" if verdict.reason == Reason.VERIFIED else "warn"


def finding_of(workload: WorkloadRef, verdict: ImageVerdict) -> Finding:
    outcome = outcome_of(verdict)
    signer = ""
    if outcome == "pass" and verdict.signers:
        first = verdict.signers[0]
        signer = f"{first.subject} ({first.issuer})" if first.issuer else first.subject
    return Finding(
        workload=workload,
        image=verdict.image,
        outcome=outcome,
        reason=str(verdict.reason),
        detail=verdict.detail[:MAX_DETAIL],
        policies=verdict.policies,
        digest=str(verdict.digest) if verdict.digest is not None else "",
        signer=signer,
    )


def unchecked(workload: WorkloadRef, image: str, why: str) -> Finding:
    """An image the cycle did not decide (its budget or its namespace's share ran out): ``error``."""
    return Finding(workload, image, "error", str(Reason.LIMIT_EXCEEDED), why[:MAX_DETAIL])
