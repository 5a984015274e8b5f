"""Attestations of one image, looked up as ``cosign verify-attestation`` does: for the CLI.

An admission decision meets a policy's ``attestations:`` through :meth:`Engine.decide`. A person at a
terminal wants something else: every verified attestation of one predicate type by a trusted signer,
printed. :func:`lookup_attestations` resolves the image and asks :class:`~controller.engine.sources.Sources`
for its evidence with attestations wanted (the ``.att`` tag and referrers, under the decision's
deadline, lanes and budget, as admission would), then keeps what the predicate type and signers allow.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass

from controller.engine.core import CLUSTER_TENANT, Engine
from controller.engine.sources import DECISION_DEADLINE, Job, want_of
from controller.errors import PolicyError, Reason
from controller.model import Digest, Failure, VerifiedSignature
from controller.policy import CompiledPolicy
from controller.registry import parse_reference


@dataclass(frozen=True, slots=True)
class AttestationLookup:
    """What was found for one image: the attestations that match, and what did not and why."""

    image: str
    digest: Digest
    matched: tuple[VerifiedSignature, ...]  # the predicate type, by a trusted signer
    unmatched: tuple[VerifiedSignature, ...]  # verified attestations of that type by someone else
    failures: tuple[Failure, ...]  # candidates that failed verification or could not be fetched


async def lookup_attestations(
    engine: Engine, image: str, policy: CompiledPolicy, predicate_type: str, *, timeout: float
) -> AttestationLookup:
    """The verified attestations of ``image`` with ``predicate_type`` whose signer ``policy`` trusts."""
    DECISION_DEADLINE.set(time.monotonic() + timeout)
    root = engine.trust_root(policy.trust_root)
    if root is None:
        raise PolicyError(Reason.TRUST_ROOT_UNKNOWN, f"unknown trust root {policy.trust_root!r}")
    ref = parse_reference(image)
    digest, _ = await engine.sources.resolve(ref, CLUSTER_TENANT, None)
    job = Job(image, ref.with_digest(digest), digest, CLUSTER_TENANT, None)
    sig_repo = policy.signature_repository or engine.settings.signature_repository
    want = dataclasses.replace(want_of(policy, root), attestations=True)
    evidence, _ = await engine.sources.evidence_for(job, sig_repo, want)
    typed = [v for v in evidence.verified if v.kind == "attestation" and v.predicate_type == predicate_type]
    matched = tuple(v for v in typed if any(m.matches(v) for m in policy.identities))
    unmatched = tuple(v for v in typed if v not in matched)
    return AttestationLookup(image, digest, matched, unmatched, evidence.failures)


def lookup_attestations_sync(
    engine: Engine, image: str, policy: CompiledPolicy, predicate_type: str, *, timeout: float
) -> AttestationLookup:
    """:func:`lookup_attestations` for synchronous callers: runs its own event loop."""
    return asyncio.run(lookup_attestations(engine, image, policy, predicate_type, timeout=timeout))
