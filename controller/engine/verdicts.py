"""What the engine builds its answers from: verdicts and decisions, and the policy identities whose
change makes cached verdicts stale (the generations of :class:`~controller.engine.core.Engine`)."""

from __future__ import annotations

from collections.abc import Sequence

from controller.engine.flights import trim_detail
from controller.model import Decision, Digest, ImageVerdict
from controller.policy import Combined, PolicySet


def cluster_ids(policies: PolicySet) -> tuple[int, ...]:
    return tuple(id(p) for p in policies if p.kind == "ClusterImagePolicy")


def namespaced_ids(policies: PolicySet) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for p in policies:
        if p.kind == "ImagePolicy" and p.namespace is not None:
            out[p.namespace] = (*out.get(p.namespace, ()), id(p))
    return out


def verdict_of(
    image: str, combined: Combined, digest: Digest | None, warnings: tuple[str, ...]
) -> ImageVerdict:
    return ImageVerdict(
        image,
        combined.allowed,
        combined.reason,
        trim_detail(image, combined.detail),
        digest,
        combined.policies,
        combined.matched,
        (*combined.warnings, *warnings),
        transient=combined.transient,
    )


def decision_of(verdicts: Sequence[ImageVerdict]) -> Decision:
    warnings = tuple(dict.fromkeys(w for v in verdicts for w in v.warnings))
    return Decision(allowed=all(v.allowed for v in verdicts), verdicts=tuple(verdicts), warnings=warnings)
