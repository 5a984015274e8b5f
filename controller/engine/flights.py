"""The registry reads of an image's candidate material, each a flight of its own behind the lanes.

* the signatures: cosign's ``.sig`` tag and the Sigstore bundles attached as OCI 1.1 referrers
  (attestation bundles among them), read in one worker; a tag's resolution may read them ahead
  (:meth:`Flights.prefetch`);
* the attestations: cosign's legacy ``.att`` tag, read only when some policy needs attestations, in a
  flight of its own, so that the signatures' flight, which every decision shares, never waits for it.

Both run through the same :class:`~controller.engine.lanes.Lanes` (bulkheads by host and tenant, the
decision's deadline) and charge a byte :class:`~controller.registry.Budget` drawing on one pool.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from controller.config import Settings
from controller.engine.caches import TTLCache
from controller.engine.evidence import fetch_attestation_candidates, fetch_candidates
from controller.engine.lanes import Lanes
from controller.errors import FetchError
from controller.model import Digest, Failure, ImageRef, Signature
from controller.registry import Budget, BytePool, Keychain, RegistryClient, parse_repository

PREFETCH_SECONDS: Final = 5.0
"""How long candidates read ahead with a tag's resolution wait to be verified (moments, normally)."""
MAX_PREFETCHED: Final = 1024


@dataclass(frozen=True, slots=True)
class Job:
    """One image being decided, once its digest is known: what every later step needs."""

    image: str  # as written in the pod spec
    pinned: ImageRef
    digest: Digest
    tenant: str  # whose bulkhead its registry reads use: the namespace, or CLUSTER_TENANT
    keychain: Keychain | None
    refresh: bool = False  # a background refresh: read no cached tag or evidence, write fresh ones


class Flights:
    """Candidate material read from registries, once per key at a time, within deadlines and budgets."""

    def __init__(
        self, *, settings: Settings, lanes: Lanes, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.lanes = lanes
        self._monotonic = monotonic
        self._bytes = BytePool(settings.max_inflight_bytes)
        self._prefetched: TTLCache[tuple[object, ...], list[Signature] | FetchError] = TTLCache(
            MAX_PREFETCHED, monotonic
        )

    def budget(self, deadline: float) -> Budget:
        """A fresh byte budget for one flight, until ``deadline``, drawing on the process-wide pool."""
        return Budget(
            deadline=deadline,
            max_bytes=self.settings.max_decision_bytes,
            pool=self._bytes,
            clock=self._monotonic,
        )

    def forget(self) -> None:
        self._prefetched.clear()

    def prefetch(
        self,
        registry: RegistryClient,
        pinned: ImageRef,
        digest: Digest,
        keychain: Keychain | None,
        budget: Budget,
    ) -> None:
        """Read the signatures of ``pinned`` in its own repository now (blocking: in the worker that
        resolved its tag), for :meth:`signatures` to find waiting."""
        self._prefetched.put(
            candidates_key(pinned, digest, None, keychain),
            self._fetch(registry, pinned, digest, None, budget),
            expires=self._monotonic() + PREFETCH_SECONDS,
        )

    async def gather(
        self, registry: RegistryClient, job: Job, sig_repo: str | None, deadline: float, *, attestations: bool
    ) -> tuple[list[Signature], tuple[Failure, ...]] | Failure:
        """The candidates to verify, and the failures of the lookups that could not be read.

        The signatures (``.sig`` and referrers) and, when ``attestations``, the ``.att`` tag are read
        in two flights at once. When neither could be read, that is the one failure; when one of them
        failed, its failure (transient) goes beside what the other found, so neither hides the other.
        """
        if not attestations:
            signatures = await self.signatures(registry, job, sig_repo, deadline)
            return (
                self._fetch_failure(job, signatures)
                if isinstance(signatures, FetchError)
                else (signatures, ())
            )
        signatures, legacy = await asyncio.gather(
            self.signatures(registry, job, sig_repo, deadline),
            self.attestations(registry, job, sig_repo, deadline),
        )
        found: list[Signature] = []
        failures: list[Failure] = []
        for part in (signatures, legacy):
            if isinstance(part, FetchError):
                failures.append(self._fetch_failure(job, part))
            else:
                found.extend(part)
        if not found and failures:
            return failures[0]
        return found, tuple(failures)

    @staticmethod
    def _fetch_failure(job: Job, error: FetchError) -> Failure:
        # could not fetch the evidence: deny, marked transient, and never cache
        return Failure(error.reason, trim_detail(job.image, error.detail), job.image, transient=True)

    async def attestations(
        self, registry: RegistryClient, job: Job, sig_repo: str | None, deadline: float
    ) -> list[Signature] | FetchError:
        """cosign's legacy ``.att`` layers, in a flight of their own (the signatures' flight never waits
        for it), on the same lanes, deadline and byte budget rules."""
        pinned, digest = job.pinned, job.digest
        host = parse_repository(sig_repo)[0] if sig_repo else pinned.registry

        def work(budget: Budget) -> list[Signature] | FetchError:
            try:
                return fetch_attestation_candidates(registry, pinned, digest, sig_repo, budget=budget)
            except FetchError as e:
                return e

        async def fetch() -> list[Signature] | FetchError:
            budget = self.budget(deadline)
            try:
                return await self.lanes.registry(
                    functools.partial(work, budget),
                    host=host,
                    tenant=job.tenant,
                    deadline=deadline,
                    what=f"fetching the attestations of {pinned}",
                )
            except FetchError as e:
                return e
            finally:
                budget.close()

        key = ("attestations", *candidates_key(pinned, digest, sig_repo, job.keychain)[1:])
        result: list[Signature] | FetchError = await self.lanes.once(
            key, fetch, deadline=deadline, what=f"fetching the attestations of {pinned}"
        )
        return result

    async def signatures(
        self, registry: RegistryClient, job: Job, sig_repo: str | None, deadline: float
    ) -> list[Signature] | FetchError:
        """The ``.sig`` layers and referrer bundles: one flight that every decision on ``job`` shares."""
        pinned, digest, tenant, keychain = job.pinned, job.digest, job.tenant, job.keychain
        host = parse_repository(sig_repo)[0] if sig_repo else pinned.registry

        async def fetch() -> list[Signature] | FetchError:
            budget = self.budget(deadline)
            try:
                return await self.lanes.registry(
                    functools.partial(self._fetch, registry, pinned, digest, sig_repo, budget),
                    host=host,
                    tenant=tenant,
                    deadline=deadline,
                    what=f"fetching the signatures of {pinned}",
                )
            except FetchError as e:
                return e
            finally:
                budget.close()

        key = candidates_key(pinned, digest, sig_repo, keychain)
        prefetched = self._prefetched.get(key)
        if prefetched is not None:
            return prefetched
        result: list[Signature] | FetchError = await self.lanes.once(
            key, fetch, deadline=deadline, what=f"fetching the signatures of {pinned}"
        )
        return result

    def _fetch(
        self, registry: RegistryClient, pinned: ImageRef, digest: Digest, sig_repo: str | None, budget: Budget
    ) -> list[Signature] | FetchError:
        """The candidate signatures, or why they could not be read (blocking: runs in a worker)."""
        try:
            return fetch_candidates(
                registry, pinned, digest, sig_repo, fetch_bundles=self.settings.fetch_bundles, budget=budget
            )
        except FetchError as e:
            return e


def candidates_key(
    pinned: ImageRef, digest: Digest, sig_repo: str | None, keychain: Keychain | None
) -> tuple[object, ...]:
    return (
        "candidates",
        str(digest),
        f"{pinned.registry}/{pinned.repository}",
        sig_repo,
        keychain_id(keychain),
    )


def keychain_id(keychain: Keychain | None) -> tuple[tuple[str, str], ...]:
    if keychain is None:
        return ()
    return tuple((host, credential.fingerprint) for host, credential in keychain.entries)


def trim_detail(image: str, detail: str) -> str:
    """A detail without a leading repeat of the image the verdict already names."""
    for prefix in (f"{image}: ", f"{image} "):
        if detail.startswith(prefix):
            return detail[len(prefix) :]
    return detail
