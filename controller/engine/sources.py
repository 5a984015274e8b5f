"""Where evidence comes from: tags resolved and signatures fetched and verified, behind the lanes.

:class:`Sources` owns the two caches that hold registry facts (which digest a tag named, what
verification made of a digest's signatures) and runs every registry read through
:class:`~controller.engine.lanes.Lanes`: once per key at a time, within the deadline of the decision
that asked (:data:`DECISION_DEADLINE`), charged to a byte budget. It knows nothing of policies,
namespaces' policies or verdicts: :mod:`controller.engine.core` does.

What a policy asks of the evidence is a :class:`Want`: the trust root and tlog setting, the public
keys it trusts, and whether it needs attestations. The registry reads themselves are
:mod:`~controller.engine.flights`: cosign's legacy ``.att`` tag is read only for a want that needs
attestations, in a flight of its own beside the signatures' (same deadline, budget and lanes), so a
slow ``.att`` never delays a decision that does not need it.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from controller.config import Settings
from controller.engine.caches import TTLCache
from controller.engine.evidence import Evidence, verify_candidates
from controller.engine.flights import Flights, Job, keychain_id, trim_detail
from controller.engine.lanes import Lanes
from controller.errors import LimitError
from controller.model import Digest, Failure, ImageRef, TrustedKey
from controller.policy import CompiledPolicy, Matching
from controller.registry import Budget, Keychain, RegistryClient
from controller.verify import TrustRoot, VerifyOptions

__all__ = ["DECISION_DEADLINE", "Job", "Sources", "Want", "trim_detail", "want_of"]

DECISION_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("imprimatur_decision_deadline")
"""The monotonic deadline of the decision whose task is running (each image's task copies it)."""

INLINE_VERIFICATIONS: Final = 4
"""Candidates verified on the engine's loop rather than in a worker (more go to the CPU lane)."""


@dataclass(frozen=True, slots=True)
class Want:
    """What one policy asks of an image's evidence; everything the verified evidence depends on
    besides the digest and where the signatures live (the evidence cache key holds all of it)."""

    root: TrustRoot
    tlog_required: bool = True
    keys: tuple[TrustedKey, ...] = ()
    attestations: bool = False  # read cosign's legacy .att tag too

    @property
    def keys_id(self) -> tuple[str, ...]:
        """The key set, as sorted digests of the PEMs (order and duplicates do not matter)."""
        return tuple(sorted({hashlib.sha256(k.pem).hexdigest() for k in self.keys}))


class Sources:
    """Tags and verified evidence, cached, fetched once at a time within deadlines and budgets."""

    def __init__(
        self,
        *,
        registry: RegistryClient,
        settings: Settings,
        lanes: Lanes,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.lanes = lanes
        self._clock = clock
        self._monotonic = monotonic
        self.flights = Flights(settings=settings, lanes=lanes, monotonic=monotonic)
        self.evidence: TTLCache[tuple[object, ...], Evidence] = TTLCache(settings.cache_entries, monotonic)
        self.tags: TTLCache[tuple[object, ...], Digest] = TTLCache(settings.cache_entries, monotonic)

    def prefetch_test(
        self, ref: ImageRef, scope: Matching, roots: Mapping[str, TrustRoot], *, refresh: bool
    ) -> Callable[[Digest], bool] | None:
        """For a tag: whether, once resolved, its own repository's signatures must be read (some
        governing policy reads them there and its evidence is not cached). Runs in the worker."""
        own = [
            p
            for p in (*scope.cluster, *scope.namespaced)
            if isinstance(p, CompiledPolicy)
            and not (p.signature_repository or self.settings.signature_repository)
        ]
        if not own or ref.digest is not None:
            return None

        def needed(digest: Digest) -> bool:
            pinned = ref.with_digest(digest)
            for policy in own:
                root = roots.get(policy.trust_root)
                if root is not None and (
                    refresh or not self.has_evidence(digest, pinned, want_of(policy, root))
                ):
                    return True
            return False

        return needed

    def has_evidence(self, digest: Digest, pinned: ImageRef, want: Want) -> bool:
        """Whether verified evidence for ``digest`` in its own repository is cached (never waits)."""
        where = f"{pinned.registry}/{pinned.repository}"
        return self.evidence.get(_evidence_key(digest, where, want)) is not None

    def drop_roots(self, names: set[str]) -> int:
        """Forget the evidence verified under the trust roots ``names``; how many entries went."""
        return self.evidence.discard_where(lambda key: key[_ROOT_NAME] in names)

    def forget(self) -> None:
        self.tags.clear()
        self.evidence.clear()
        self.flights.forget()

    def flight_deadline(self) -> float:
        """When work started now must end: the fetch timeout, and never after the decision that
        started it has given up (work nobody waits for must not keep its namespace's slots)."""
        limit = self._monotonic() + self.settings.fetch_timeout_seconds
        return min(limit, DECISION_DEADLINE.get(limit))

    async def resolve(
        self,
        ref: ImageRef,
        tenant: str,
        keychain: Keychain | None,
        *,
        refresh: bool = False,
        prefetch: Callable[[Digest], bool] | None = None,
    ) -> tuple[Digest, float]:
        """The digest and until when it holds: forever when pinned, ``tag_ttl_seconds`` for a tag.

        When ``prefetch(digest)`` says the evidence is not at hand, the worker that resolved the tag
        goes on to read the candidate signatures in the image's own repository (where they live unless
        a policy names a signature repository), so a cold tag costs one hop to a worker, not two;
        :meth:`evidence_for` finds them waiting.
        """
        if ref.digest is not None:
            return ref.digest, self._monotonic() + self.settings.cache_ttl_seconds
        key = (ref.registry, ref.repository, ref.tag)
        hit = None if refresh else self.tags.get_with_expiry(key)
        if hit is not None:
            return hit
        deadline = self.flight_deadline()
        registry = self._registry(keychain)

        def work(budget: Budget) -> Digest:
            digest = registry.resolve(ref, budget=budget)
            if prefetch is not None and prefetch(digest):
                self.flights.prefetch(registry, ref.with_digest(digest), digest, keychain, budget)
            return digest

        async def resolve() -> Digest:
            budget = self.flights.budget(deadline)
            try:
                digest: Digest = await self.lanes.registry(
                    functools.partial(work, budget),
                    host=ref.registry,
                    tenant=tenant,
                    deadline=deadline,
                    what=f"resolving {ref}",
                )
            finally:
                budget.close()
            if self.settings.tag_ttl_seconds > 0:  # cached inside the flight: no gap for a second one
                self.tags.put(key, digest, expires=self._monotonic() + self.settings.tag_ttl_seconds)
            return digest

        digest: Digest = await self.lanes.once(
            ("tag", *key, keychain_id(keychain)), resolve, deadline=deadline, what=f"resolving {ref}"
        )
        return digest, self._monotonic() + self.settings.tag_ttl_seconds

    async def evidence_for(self, job: Job, sig_repo: str | None, want: Want) -> tuple[Evidence, float]:
        """Verified evidence, cached by (digest, repository, :class:`Want`); fetched once at a time."""
        pinned, digest, image = job.pinned, job.digest, job.image
        where = sig_repo or f"{pinned.registry}/{pinned.repository}"
        key = _evidence_key(digest, where, want)
        hit = None if job.refresh else self.evidence.get_with_expiry(key)
        if hit is not None:
            return hit
        deadline = self.flight_deadline()

        async def verify() -> Evidence:
            candidates = await self.flights.gather(
                self._registry(job.keychain), job, sig_repo, deadline, attestations=want.attestations
            )
            if isinstance(candidates, Failure):
                return Evidence((), (candidates,), 0)
            found, fetch_failures = candidates
            check = functools.partial(
                verify_candidates,
                found,
                digest=digest,
                root=want.root,
                options=self._options(want),
                now=self._clock(),
                image=image,
            )
            if len(found) <= INLINE_VERIFICATIONS:
                # A millisecond or two of CPU: cheaper here than a thread hop, and this loop answers
                # no cached review (the webhook's own loop does).
                evidence = check()
            else:
                evidence = await self.lanes.cpu(
                    check, deadline=deadline, what=f"verifying the signatures of {pinned}"
                )
            if fetch_failures:
                evidence = Evidence(evidence.verified, (*evidence.failures, *fetch_failures), evidence.found)
            # "not found" is not cached (a signature may be pushed any second), nor a failed fetch
            if evidence.cacheable:
                self.evidence.put(key, evidence, expires=self._monotonic() + self.settings.cache_ttl_seconds)
            return evidence

        try:
            evidence: Evidence = await self.lanes.once(
                ("evidence", *key), verify, deadline=deadline, what=f"verifying {pinned}"
            )
        except LimitError as e:
            failure = Failure(e.reason, trim_detail(image, e.detail), image, transient=True)
            return Evidence((), (failure,), 0), 0.0
        if not evidence.cacheable:
            return evidence, 0.0
        return evidence, self._monotonic() + self.settings.cache_ttl_seconds

    def _options(self, want: Want) -> VerifyOptions:
        return VerifyOptions(
            require_tlog=want.tlog_required,
            require_sct=self.settings.require_sct,
            require_issuer_extension=self.settings.require_issuer_extension,
            keys=want.keys,
        )

    def _registry(self, keychain: Keychain | None) -> RegistryClient:
        return self.registry.with_keychain(keychain) if keychain is not None else self.registry


_ROOT_NAME: Final = 3  # where an evidence key holds its trust root's name (drop_roots reads it)


def _evidence_key(digest: Digest, where: str, want: Want) -> tuple[object, ...]:
    """What verified evidence depends on: the digest, where its signatures were read, the trust root
    (by name and identity: an edited root is a new object), the tlog setting, the trusted keys and
    whether the ``.att`` tag was read. Never the policies themselves."""
    root = want.root
    return (str(digest), where, want.tlog_required, root.name, id(root), want.keys_id, want.attestations)


def want_of(policy: CompiledPolicy, root: TrustRoot) -> Want:
    """What ``policy`` asks of the evidence, verified under ``root``."""
    return Want(
        root=root,
        tlog_required=policy.tlog_required,
        keys=policy.trusted_keys,
        attestations=policy.needs_attestations,
    )
