"""The blocking steps of a decision, each a plain function the lanes run in a worker thread.

* :func:`fetch_candidates`: the candidate signatures of a digest (the legacy ``.sig`` tag, and Sigstore
  bundles through OCI 1.1 referrers, attestation bundles among them), read within one
  :class:`~controller.registry.Budget`;
* :func:`fetch_attestation_candidates`: cosign's legacy ``.att`` layers, read only for a policy that
  requires attestations;
* :func:`verify_candidates`: what verification under one trust root, tlog setting and key set makes
  of them, each candidate by the verifier of its kind (:data:`VERIFIERS`).

Neither knows about policies, namespaces or caching; :mod:`controller.engine.core` does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from controller.errors import EvidenceError, FetchError, InputError, PolicyError
from controller.model import Digest, Failure, ImageRef, Signature, SignatureKind, VerifiedSignature
from controller.registry import Budget, RegistryClient
from controller.verify import (
    TrustRoot,
    VerifyOptions,
    verify_bundle,
    verify_simplesigning,
)
from controller.verify.attestation import verify_attestation_layer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Evidence:
    """What verification under one (trust root, tlog) setting made of an image's candidates."""

    verified: tuple[VerifiedSignature, ...]
    failures: tuple[Failure, ...]
    found: int  # how many candidates there were: "none" is never cached (one may be pushed any second)

    @property
    def cacheable(self) -> bool:
        """Worth keeping: something was found, and nothing failed for a reason that may pass (a fetch)."""
        return self.found > 0 and not any(f.transient for f in self.failures)


Verifier = Callable[[Signature, Digest, TrustRoot, VerifyOptions, datetime], VerifiedSignature]


def _simplesigning(
    sig: Signature, digest: Digest, root: TrustRoot, options: VerifyOptions, now: datetime
) -> VerifiedSignature:
    return verify_simplesigning(sig, digest=digest, trust_root=root, options=options, now=now)


def _bundle(
    sig: Signature, digest: Digest, root: TrustRoot, options: VerifyOptions, now: datetime
) -> VerifiedSignature:
    return verify_bundle(sig, digest=digest, trust_root=root, now=now, options=options)


def _attestation(
    sig: Signature, digest: Digest, root: TrustRoot, options: VerifyOptions, now: datetime
) -> VerifiedSignature:
    return verify_attestation_layer(sig, digest=digest, trust_root=root, options=options, now=now)


VERIFIERS: Final[Mapping[SignatureKind, Verifier]] = {
    "simplesigning": _simplesigning,
    "bundle": _bundle,
    "attestation": _attestation,
}
"""The verifier of each kind of candidate: the engine asks for evidence by kind, never by branch."""


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


def fetch_attestation_candidates(
    registry: RegistryClient,
    pinned: ImageRef,
    digest: Digest,
    signature_repository: str | None,
    *,
    budget: Budget,
) -> list[Signature]:
    """cosign's legacy attestations of ``digest`` (the ``.att`` tag); [] when there are none.

    Attestation bundles attached as referrers come with :func:`fetch_candidates`. Raises
    :class:`FetchError` when the tag could not be read.
    """
    return registry.fetch_attestations(
        pinned, digest, signature_repository=signature_repository, budget=budget
    )


def verify_candidates(
    candidates: Sequence[Signature],
    *,
    digest: Digest,
    root: TrustRoot,
    options: VerifyOptions,
    now: datetime,
    image: str,
) -> Evidence:
    """Verify each candidate by its kind; every failure is kept with its reason, none raises."""
    verified: list[VerifiedSignature] = []
    failures: list[Failure] = []
    for sig in candidates:
        try:
            verified.append(VERIFIERS[sig.kind](sig, digest, root, options, now))
        except (EvidenceError, PolicyError, InputError) as e:
            failures.append(Failure(e.reason, f"{sig.source}: {e.detail}", image))
    return Evidence(tuple(verified), tuple(failures), len(candidates))
