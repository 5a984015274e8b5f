"""The tenancy model: how the results of cluster and namespaced policies make one decision per image.

ClusterImagePolicies and the controller's default decide **which images may run at all**. An
ImagePolicy (written by a namespace's users) can only **add** requirements in its namespace:

1. No ClusterImagePolicy governs the image:
   - default ``deny``: denied, ``NoMatchingPolicy``, whatever the namespaced results;
   - default ``allow``: allowed with a warning, yet every enforcing ImagePolicy must still pass.
2. Otherwise every enforcing policy, cluster or namespaced, must pass. A warn-mode policy that does
   not pass has already become ``passed=True`` with a warning (:func:`evaluate_policy`), so a warn-mode
   ImagePolicy only ever warns about its own requirements, and never admits anything.
3. An invalid policy (:class:`InvalidPolicy`) never passes, whatever its mode: ``PolicyInvalid``.

A denial carries the first failing result, cluster ones before namespaced ones; when several fail the
detail says so and names the policy. It is transient exactly when that failure is. An allowed image
is ``Verified`` when some policy verified a signature; ``NoMatchingPolicy`` when the default allowed
it; and, when every governing policy is in warn mode and none verified, the reason of the first
warn-mode failure (allowed, but not verified, and it says why).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from controller.errors import Reason
from controller.model import VerifiedSignature
from controller.policy.evaluate import MAX_DETAIL_LENGTH, PolicyResult
from controller.policy.invalid import InvalidPolicy

DefaultDecision = Literal["deny", "allow"]

NO_POLICY_DETAIL: Final = "no policy matches"
NO_CLUSTER_POLICY_DETAIL: Final = "no ClusterImagePolicy matches"
DEFAULT_ALLOW_WARNING: Final = "no ClusterImagePolicy matches; allowed by the configured default"


@dataclass(frozen=True, slots=True)
class Combined:
    """The decision for one image from every governing policy's result.

    ``policies`` are the results' policy labels, cluster ones first, in order. ``matched`` are the
    signatures that satisfied a passing policy, unique by (subject, issuer, source, log index).
    """

    allowed: bool
    reason: Reason
    detail: str
    transient: bool = False
    policies: tuple[str, ...] = ()
    matched: tuple[VerifiedSignature, ...] = ()
    warnings: tuple[str, ...] = ()


def evaluate_invalid(policy: InvalidPolicy, image: str) -> PolicyResult:
    """The result of an invalid policy: it never passes, whatever its mode (``PolicyInvalid``)."""
    detail = policy.detail
    prefix = f"{policy.label}: "
    if detail.startswith(prefix):
        detail = detail[len(prefix) :]
    return PolicyResult(
        policy=policy.label,
        passed=False,
        reason=Reason.POLICY_INVALID,
        detail=_bound(f"{policy.label} is invalid and denies the images it covers: {detail}"),
        mode="enforce",
    )


def combine(
    image: str,
    cluster: Sequence[PolicyResult],
    namespaced: Sequence[PolicyResult],
    *,
    default_decision: DefaultDecision,
) -> Combined:
    """Decide ``image`` from its cluster and namespaced policy results (see the module docstring)."""
    results = (*cluster, *namespaced)
    policies = tuple(r.policy for r in results)
    warnings = _unique(w for r in results for w in r.warnings)

    if not cluster and default_decision == "deny":
        detail = NO_POLICY_DETAIL
        if namespaced:
            detail = (
                f"{NO_CLUSTER_POLICY_DETAIL}; an ImagePolicy can only add requirements, "
                f"not admit an image ({namespaced[0].policy})"
            )
        return Combined(False, Reason.NO_MATCHING_POLICY, _bound(detail), False, policies, (), warnings)

    if not cluster:
        warnings = _unique((*warnings, f"{image}: {DEFAULT_ALLOW_WARNING}"))

    failed = [r for r in results if not r.passed]
    if failed:
        first = failed[0]
        detail = first.detail
        if len(failed) > 1:
            detail += (
                f" (policy {first.policy}; {len(failed) - 1} other polic{_ies(len(failed) - 1)} also failed)"
            )
        return Combined(False, first.reason, _bound(detail), first.transient, policies, (), warnings)

    matched = _unique_signatures(sig for r in results for sig in r.matched)
    if any(r.reason == Reason.VERIFIED for r in results):
        return Combined(True, Reason.VERIFIED, _describe_signers(matched), False, policies, matched, warnings)
    if not cluster:
        return Combined(True, Reason.NO_MATCHING_POLICY, NO_POLICY_DETAIL, False, policies, matched, warnings)
    # every governing policy is in warn mode and none verified: allowed, and the reason says why not
    first = results[0]
    detail = f"allowed in warn mode: {first.detail} (policy {first.policy})"
    return Combined(True, first.reason, _bound(detail), False, policies, matched, warnings)


def _describe_signers(signers: Sequence[VerifiedSignature]) -> str:
    """As the engine has always described an allowed image: who signed, and where it is logged."""
    if not signers:
        return "allowed"
    parts = []
    for s in signers:
        where = f"rekor log index {s.log_index}" if s.log_index is not None else "no tlog entry"
        parts.append(f"signed by {s.subject} ({s.issuer}), {where}")
    return _bound("; ".join(parts))


def _unique_signatures(signatures: Iterable[VerifiedSignature]) -> tuple[VerifiedSignature, ...]:
    unique: dict[tuple[str, str, str, int | None], VerifiedSignature] = {}
    for s in signatures:
        unique.setdefault((s.subject, s.issuer, s.source, s.log_index), s)
    return tuple(unique.values())


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _ies(n: int) -> str:
    return "y" if n == 1 else "ies"


def _bound(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_LENGTH else text[: MAX_DETAIL_LENGTH - 1] + "…"
