"""Where evidence comes from: tags resolved and signatures fetched and verified, behind the lanes.

:class:`Sources` owns the two caches that hold registry facts (which digest a tag named, what
verification made of a digest's signatures) and runs every registry read through
:class:`~controller.engine.lanes.Lanes`: once per key at a time, within the deadline of the decision
that asked (:data:`DECISION_DEADLINE`), charged to a byte budget. It knows nothing of policies,
namespaces' policies or verdicts: :mod:`controller.engine.core` does.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from controller.config import Settings
from controller.engine.caches import TTLCache
from controller.engine.evidence import Evidence, fetch_candidates, verify_candidates
from controller.engine.lanes import Lanes
from controller.errors import FetchError, LimitError
from controller.model import Digest, Failure, ImageRef, Signature
from controller.policy import CompiledPolicy, Matching
from controller.registry import Budget, BytePool, Keychain, RegistryClient, parse_repository
from controller.verify import TrustRoot, VerifyOptions

DECISION_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("imprimatur_decision_deadline")
"""The monotonic deadline of the decision whose task is running (each image's task copies it)."""

INLINE_VERIFICATIONS: Final = 4
"""Candidates verified on the engine's loop rather than in a worker (more go to the CPU lane)."""


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
        self._bytes = BytePool(settings.max_inflight_bytes)
        self.evidence: TTLCache[tuple[object, ...], Evidence] = TTLCache(settings.cache_entries, monotonic)
        self.tags: TTLCache[tuple[object, ...], Digest] = TTLCache(settings.cache_entries, monotonic)
        self._prefetched: TTLCache[tuple[object, ...], list[Signature] | FetchError] = TTLCache(
            MAX_PREFETCHED, monotonic
        )

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
                    refresh or not self.has_evidence(digest, pinned, root, tlog_required=policy.tlog_required)
                ):
                    return True
            return False

        return needed

    def has_evidence(self, digest: Digest, pinned: ImageRef, root: TrustRoot, *, tlog_required: bool) -> bool:
        """Whether verified evidence for ``digest`` in its own repository is cached (never waits)."""
        where = f"{pinned.registry}/{pinned.repository}"
        return self.evidence.get(_evidence_key(digest, where, root, tlog_required=tlog_required)) is not None

    def drop_roots(self, names: set[str]) -> int:
        """Forget the evidence verified under the trust roots ``names``; how many entries went."""
        return self.evidence.discard_where(lambda key: key[_ROOT_NAME] in names)

    def forget(self) -> None:
        self.tags.clear()
        self.evidence.clear()
        self._prefetched.clear()

    def flight_deadline(self) -> float:
        """When work started now must end: the fetch timeout, and never after the decision that
        started it has given up (work nobody waits for must not keep its namespace's slots)."""
        limit = self._monotonic() + self.settings.fetch_timeout_seconds
        return min(limit, DECISION_DEADLINE.get(limit))

    def _budget(self, deadline: float) -> Budget:
        return Budget(
            deadline=deadline,
            max_bytes=self.settings.max_decision_bytes,
            pool=self._bytes,
            clock=self._monotonic,
        )

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
                pinned = ref.with_digest(digest)
                self._prefetched.put(
                    _candidates_key(pinned, digest, None, keychain),
                    self._fetch(registry, pinned, digest, None, budget),
                    expires=self._monotonic() + PREFETCH_SECONDS,
                )
            return digest

        async def resolve() -> Digest:
            budget = self._budget(deadline)
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
            ("tag", *key, _keychain_id(keychain)), resolve, deadline=deadline, what=f"resolving {ref}"
        )
        return digest, self._monotonic() + self.settings.tag_ttl_seconds

    async def evidence_for(
        self, job: Job, sig_repo: str | None, root: TrustRoot, *, tlog_required: bool
    ) -> tuple[Evidence, float]:
        """Verified evidence, cached by (digest, repository, trust root, tlog); fetched once at a time."""
        pinned, digest, image = job.pinned, job.digest, job.image
        where = sig_repo or f"{pinned.registry}/{pinned.repository}"
        key = _evidence_key(digest, where, root, tlog_required=tlog_required)
        hit = None if job.refresh else self.evidence.get_with_expiry(key)
        if hit is not None:
            return hit
        deadline = self.flight_deadline()

        async def verify() -> Evidence:
            candidates = await self._candidates(job, sig_repo, deadline)
            if isinstance(candidates, FetchError):
                # could not fetch the evidence: deny, marked transient, and never cache
                failure = Failure(
                    candidates.reason, trim_detail(image, candidates.detail), image, transient=True
                )
                return Evidence((), (failure,), 0)
            options = VerifyOptions(
                require_tlog=tlog_required,
                require_sct=self.settings.require_sct,
                require_issuer_extension=self.settings.require_issuer_extension,
            )
            check = functools.partial(
                verify_candidates,
                candidates,
                digest=digest,
                root=root,
                options=options,
                now=self._clock(),
                image=image,
            )
            if len(candidates) <= INLINE_VERIFICATIONS:
                # A millisecond or two of CPU: cheaper here than a thread hop, and this loop answers
                # no cached review (the webhook's own loop does).
                evidence = check()
            else:
                evidence = await self.lanes.cpu(
                    check, deadline=deadline, what=f"verifying the signatures of {pinned}"
                )
            if evidence.found:  # "not found" is not cached: a signature may be pushed any second
                self.evidence.put(key, evidence, expires=self._monotonic() + self.settings.cache_ttl_seconds)
            return evidence

        try:
            evidence: Evidence = await self.lanes.once(
                ("evidence", *key), verify, deadline=deadline, what=f"verifying {pinned}"
            )
        except LimitError as e:
            failure = Failure(e.reason, trim_detail(image, e.detail), image, transient=True)
            return Evidence((), (failure,), 0), 0.0
        if not evidence.found:
            return evidence, 0.0
        return evidence, self._monotonic() + self.settings.cache_ttl_seconds

    async def _candidates(
        self, job: Job, sig_repo: str | None, deadline: float
    ) -> list[Signature] | FetchError:
        pinned, digest, tenant, keychain = job.pinned, job.digest, job.tenant, job.keychain
        registry = self._registry(keychain)
        host = parse_repository(sig_repo)[0] if sig_repo else pinned.registry

        async def fetch() -> list[Signature] | FetchError:
            budget = self._budget(deadline)
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

        key = _candidates_key(pinned, digest, sig_repo, keychain)
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

    def _registry(self, keychain: Keychain | None) -> RegistryClient:
        return self.registry.with_keychain(keychain) if keychain is not None else self.registry


_ROOT_NAME: Final = 3  # where an evidence key holds its trust root's name (drop_roots reads it)


def _evidence_key(digest: Digest, where: str, root: TrustRoot, *, tlog_required: bool) -> tuple[object, ...]:
    """What verified evidence depends on: the digest, where its signatures were read, the trust root
    (by name and identity: an edited root is a new object) and the tlog setting. Never the policies."""
    return (str(digest), where, tlog_required, root.name, id(root))


def _candidates_key(
    pinned: ImageRef, digest: Digest, sig_repo: str | None, keychain: Keychain | None
) -> tuple[object, ...]:
    return (
        "candidates",
        str(digest),
        f"{pinned.registry}/{pinned.repository}",
        sig_repo,
        _keychain_id(keychain),
    )


def _keychain_id(keychain: Keychain | None) -> tuple[tuple[str, str], ...]:
    if keychain is None:
        return ()
    return tuple((host, credential.fingerprint) for host, credential in keychain.entries)


def trim_detail(image: str, detail: str) -> str:
    """A detail without a leading repeat of the image the verdict already names."""
    for prefix in (f"{image}: ", f"{image} "):
        if detail.startswith(prefix):
            return detail[len(prefix) :]
    return detail
