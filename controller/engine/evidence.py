"""The blocking steps of a decision, each a plain function the lanes run in a worker thread.

* :func:`fetch_candidates`: the candidate signatures of a digest (the legacy ``.sig`` tag, and Sigstore
  bundles through OCI 1.1 referrers), read within one :class:`~controller.registry.Budget`;
* :func:`verify_candidates`: what verification under one trust root and tlog setting makes of them.

Neither knows about policies, namespaces or caching; :mod:`controller.engine.core` does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from controller.errors import EvidenceError, FetchError, InputError, PolicyError
from controller.model import Digest, Failure, ImageRef, Signature, VerifiedSignature
from controller.registry import Budget, RegistryClient
from controller.verify import TrustRoot, VerifyOptions, verify_bundle, verify_simplesigning

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Evidence:
    """What verification under one (trust root, tlog) setting made of an image's candidates."""

    verified: tuple[VerifiedSignature, ...]
    failures: tuple[Failure, ...]
    found: int  # how many candidates there were: "none" is never cached (one may be pushed any second)


def fetch_candidates(
    registry: RegistryClient,
    pinned: ImageRef,
    digest: Digest,
    signature_repository: str | None,
    *,
    fetch_bundles: bool,
    budget: Budget,
) -> list[Signature]:
    """Every candidate signature of ``digest``. Raises :class:`FetchError` when none could be read."""
    found = registry.fetch_signatures(
        pinned, digest, signature_repository=signature_repository, budget=budget
    )
    if fetch_bundles:
        try:
            found = found + registry.fetch_referrer_bundles(
                pinned, digest, signature_repository=signature_repository, budget=budget
            )
        except FetchError:
            # A broken referrers lookup must not hide valid legacy signatures; with none found at
            # all, the fetch failure is what the user needs to see.
            if not found:
                raise
            log.debug("referrers lookup failed for %s; using the legacy .sig signatures", pinned)
    return found


def verify_candidates(
    candidates: Sequence[Signature],
    *,
    digest: Digest,
    root: TrustRoot,
    options: VerifyOptions,
    now: datetime,
    image: str,
) -> Evidence:
    """Verify each candidate; every failure is kept with its reason, none raises."""
    verified: list[VerifiedSignature] = []
    failures: list[Failure] = []
    for sig in candidates:
        try:
            if sig.kind == "bundle":
                verified.append(verify_bundle(sig, digest=digest, trust_root=root, now=now))
            else:
                verified.append(
                    verify_simplesigning(sig, digest=digest, trust_root=root, options=options, now=now)
                )
        except (EvidenceError, PolicyError, InputError) as e:
            failures.append(Failure(e.reason, f"{sig.source}: {e.detail}", image))
    return Evidence(tuple(verified), tuple(failures), len(candidates))
