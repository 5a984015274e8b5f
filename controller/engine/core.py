"""The one decision engine: images -> digests -> signatures -> verify -> policy -> Decision.

The webhook, the CLI, the demo and the background scan all call :class:`Engine`. Per image:

1. parse the reference (``ReferenceInvalid``); refuse tag-only references if digests are required;
2. find the policies that govern it in this namespace (:meth:`PolicySet.scope_for`): ClusterImagePolicies
   (and the controller's default) decide whether it may run at all; the namespace's ImagePolicies only
   add requirements. No cluster policy and a default of deny: ``NoMatchingPolicy``, with no fetch;
3. resolve the tag to a digest (free when pinned; a tag is re-resolved after ``tag_ttl_seconds``);
4. fetch the candidate signatures from each signature repository the policies name;
5. verify them under each (trust root, tlog) the policies ask for;
6. evaluate every policy and combine them (:func:`controller.policy.combine`).

**Where the time goes.** A verdict whose every input is cached (:meth:`Engine.cached_decision`) is a
dictionary lookup on the caller's thread: the webhook answers it on its event loop, with no worker.
Everything else runs in :class:`~controller.engine.lanes.Lanes`: registry reads in worker threads
behind per-namespace and per-host bulkheads, concurrent identical work done once, every wait clipped
to a deadline, and every read charged to a byte budget.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Final

from controller.config import Settings
from controller.engine.caches import EvaluationMemo, TTLCache
from controller.engine.exceptions import ExceptionGrants  # issue 8: now, use_clock, exceptions
from controller.engine.lanes import LaneLimits, Lanes
from controller.engine.roots import Clock, utc_now
from controller.engine.sources import DECISION_DEADLINE, Job, Sources, trim_detail, want_of
from controller.engine.verdicts import cluster_ids, decision_of, namespaced_ids, verdict_of
from controller.errors import ImprimaturError, InputError, Reason
from controller.model import Decision, Failure, ImageRef, ImageVerdict
from controller.policy import (
    EMPTY_LABELS,
    AnyPolicy,
    InvalidPolicy,
    PolicyResult,
    PolicySet,
    combine,
    evaluate_invalid,
    evaluate_policy,
)
from controller.policy.deadline import next_change, policy_at  # issue 8
from controller.registry import Keychain, RegistryClient, parse_reference
from controller.verify import TrustRoot

log = logging.getLogger(__name__)

CLUSTER_TENANT: Final = "-"  # the tenant of work outside any namespace (CLI, cluster-scoped objects)
MAX_PARSED_REFERENCES: Final = 16384
REFRESH_FRACTION: Final = 0.2
"""A cached verdict in this last fraction of its lifetime is refreshed in the background when used."""


_Outcome = tuple[ImageVerdict, float]  # the verdict, and until when (monotonic) it may be reused


class Engine(ExceptionGrants):
    """Decides whether images may run. Policies, trust roots and namespace labels swap atomically."""

    def __init__(
        self,
        *,
        registry: RegistryClient,
        policies: PolicySet,
        trust_roots: Mapping[str, TrustRoot],
        settings: Settings | None = None,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or Settings()
        self._clock = clock
        self._monotonic = monotonic
        s = self.settings
        self.lanes = Lanes(
            LaneLimits(per_host=s.max_per_registry_host, per_tenant=s.max_per_namespace, total=s.max_workers),
            clock=monotonic,
        )
        self.sources = Sources(
            registry=registry, settings=s, lanes=self.lanes, clock=clock, monotonic=monotonic
        )
        self._verdicts: TTLCache[tuple[object, ...], ImageVerdict] = TTLCache(
            s.verdict_cache_entries, monotonic
        )
        # one policy over the same cached evidence, e.g. an image in another namespace, is evaluated once
        self.evaluations: EvaluationMemo[PolicyResult] = EvaluationMemo(
            s.verdict_cache_entries or s.cache_entries
        )
        self._refs: dict[str, ImageRef | InputError] = {}
        self._refreshing: set[tuple[object, ...]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # where decide() runs: refreshes run there
        self._lock = threading.Lock()
        self._policies = policies
        self._roots: dict[str, TrustRoot] = dict(trust_roots)
        self._labels: Mapping[str, Mapping[str, str]] = {}
        self._cluster_gen = 0
        self._roots_gen = 0
        self._ns_gen: dict[str, int] = {}
        self._ns_policies = namespaced_ids(policies)
        self._cluster_ids = cluster_ids(policies)

    # --- runtime updates (the admission layer's indexes call these)

    def update(
        self, *, policies: PolicySet | None = None, trust_roots: Mapping[str, TrustRoot] | None = None
    ) -> None:
        """Swap the policy set and/or trust roots.

        Verified evidence does not depend on policies, so a policy edit keeps it: only the verdicts of
        what changed are recomputed (an ImagePolicy edit touches only its own namespace). A trust root
        that changed or went away drops exactly its own evidence.
        """
        with self._lock:
            if policies is not None:
                cluster, ns_ids = cluster_ids(policies), namespaced_ids(policies)
                if cluster != self._cluster_ids:
                    self._cluster_gen += 1
                for namespace in set(ns_ids) | set(self._ns_policies):
                    if ns_ids.get(namespace) != self._ns_policies.get(namespace):
                        self._ns_gen[namespace] = self._ns_gen.get(namespace, 0) + 1
                self._policies, self._cluster_ids, self._ns_policies = policies, cluster, ns_ids
            if trust_roots is not None:
                new = dict(trust_roots)
                changed = {n for n in set(new) | set(self._roots) if new.get(n) is not self._roots.get(n)}
                if changed:
                    dropped = self.sources.drop_roots(changed)
                    log.info("trust roots changed: %s; %d cached results dropped", sorted(changed), dropped)
                    self._roots_gen += 1
                self._roots = new

    def set_namespace_labels(self, labels: Mapping[str, Mapping[str, str]]) -> None:
        """Replace the labels of every namespace (from the Namespace objects, never from a review)."""
        fresh = {ns: MappingProxyType(dict(values)) for ns, values in labels.items()}
        with self._lock:
            for namespace in set(fresh) | set(self._labels):
                if dict(fresh.get(namespace, EMPTY_LABELS)) != dict(
                    self._labels.get(namespace, EMPTY_LABELS)
                ):
                    self._ns_gen[namespace] = self._ns_gen.get(namespace, 0) + 1
            self._labels = fresh

    def forget(self) -> None:
        """Drop every cached tag, evidence and verdict (benchmarks of the cold path; operators' tools)."""
        self.sources.forget()
        self._verdicts.clear()
        self.evaluations.clear()

    @property
    def registry(self) -> RegistryClient:
        return self.sources.registry

    @registry.setter
    def registry(self, registry: RegistryClient) -> None:
        self.sources.registry = registry

    @property
    def policies(self) -> PolicySet:
        return self._policies

    def trust_root(self, name: str) -> TrustRoot | None:
        return self._roots.get(name)

    def close(self) -> None:
        self.lanes.close()

    # --- decisions

    def _verdict_key(self, image: str, namespace: str | None) -> tuple[object, ...]:
        ns_gen = self._ns_gen.get(namespace, 0) if namespace is not None else 0
        return (image, namespace, self._cluster_gen, ns_gen, self._roots_gen)

    def cached_decision(self, images: Sequence[str], namespace: str | None = None) -> Decision | None:
        """The decision when every image's verdict is cached and fresh; None otherwise. Never waits.

        A verdict in the last part of its life (:data:`REFRESH_FRACTION`) is still answered, and a
        refresh of it starts in the background, so an image in steady use never meets its expiry on
        the slow path: a tag is re-resolved, evidence re-fetched, once per lifetime, by one flight.
        """
        verdicts = []
        now = self._monotonic()
        for image in dict.fromkeys(images):
            key = self._verdict_key(image, namespace)
            hit = self._verdicts.get_with_expiry(key)
            if hit is None:
                return None
            verdict, expires = hit
            if verdict.valid_until is not None and self._clock() >= verdict.valid_until:
                return None  # issue 8: a warn-mode policy's deadline has passed
            if expires - now < self._refresh_margin(image):
                self._refresh_soon(key, image, namespace)
            verdicts.append(verdict)
        return decision_of(verdicts)

    def _refresh_margin(self, image: str) -> float:
        pinned = "@" in image
        lifetime = self.settings.cache_ttl_seconds if pinned else self.settings.tag_ttl_seconds
        return lifetime * REFRESH_FRACTION

    def _refresh_soon(self, key: tuple[object, ...], image: str, namespace: str | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # no decision has run yet: nothing to refresh on
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)
        try:
            asyncio.run_coroutine_threadsafe(self._refresh(key, image, namespace), loop)
        except RuntimeError:  # the loop is shutting down
            with self._lock:
                self._refreshing.discard(key)

    async def _refresh(self, key: tuple[object, ...], image: str, namespace: str | None) -> None:
        try:
            verdict, expires = await self._verify_image(image, namespace, None, refresh=True)
            if expires > self._monotonic():
                self._verdicts.put(key, verdict, expires=expires)
        except Exception:  # a failed refresh leaves the verdict to expire as usual
            log.debug("background refresh of %s failed", image, exc_info=True)
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def decide_images(
        self,
        images: Sequence[str],
        *,
        namespace: str | None = None,
        keychain: Keychain | None = None,
        timeout: float | None = None,
    ) -> Decision:
        """:meth:`decide` for synchronous callers (the CLI, tests): runs its own event loop."""
        return asyncio.run(self.decide(images, namespace=namespace, keychain=keychain, timeout=timeout))

    async def decide(
        self,
        images: Sequence[str],
        *,
        namespace: str | None = None,
        keychain: Keychain | None = None,
        timeout: float | None = None,
        started: float | None = None,
    ) -> Decision:
        """Decide for a list of image references: allowed only if every image is.

        Within ``timeout`` seconds of ``started`` (a monotonic time; default now, and
        ``Settings.decision_timeout_seconds``): an image still undecided then is denied
        ``LimitExceeded`` (transient), saying how long the decision actually took.
        """
        self._loop = asyncio.get_running_loop()
        began = self._monotonic() if started is None else started
        limit = timeout if timeout is not None else self.settings.decision_timeout_seconds
        deadline = began + limit
        unique = list(dict.fromkeys(images))
        token = DECISION_DEADLINE.set(deadline)  # the image tasks below inherit it
        try:
            tasks = [asyncio.ensure_future(self._decide_one(image, namespace, keychain)) for image in unique]
        finally:
            DECISION_DEADLINE.reset(token)
        done, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - self._monotonic()))
        for task in pending:
            task.cancel()
        elapsed = self._monotonic() - began
        verdicts = []
        for image, task in zip(unique, tasks, strict=True):
            if task in done:
                verdicts.append(task.result())
            else:
                detail = f"no decision after {elapsed:.1f}s (the deadline is {limit:g}s)"
                verdicts.append(ImageVerdict(image, False, Reason.LIMIT_EXCEEDED, detail, transient=True))
        return decision_of(verdicts)

    async def _decide_one(self, image: str, namespace: str | None, keychain: Keychain | None) -> ImageVerdict:
        key = self._verdict_key(image, namespace)
        cached = self._verdicts.get(key)
        if cached is not None and (cached.valid_until is None or self._clock() < cached.valid_until):
            return cached
        try:
            verdict, expires = await self._verify_image(image, namespace, keychain)
        except ImprimaturError as e:
            return ImageVerdict(image, False, e.reason, trim_detail(image, e.detail), transient=e.transient)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # fail closed on anything we did not foresee, and say so
            log.exception("internal error while verifying %s", image)
            return ImageVerdict(image, False, Reason.INTERNAL_ERROR, f"{type(e).__name__}: {e}")
        if expires > self._monotonic():
            self._verdicts.put(key, verdict, expires=expires)
        return verdict

    def _parse(self, image: str) -> ImageRef:
        parsed = self._refs.get(image)
        if parsed is None:
            try:
                parsed = parse_reference(image)
            except InputError as e:
                parsed = e
            if len(self._refs) >= MAX_PARSED_REFERENCES:
                self._refs.clear()
            self._refs[image] = parsed
        if isinstance(parsed, InputError):
            raise parsed
        return parsed

    async def _verify_image(
        self, image: str, namespace: str | None, keychain: Keychain | None, *, refresh: bool = False
    ) -> _Outcome:
        """The verdict and until when it holds (0: do not reuse it)."""
        settings = self.settings
        forever = self._monotonic() + settings.cache_ttl_seconds
        ref = self._parse(image)  # step 1
        if ref.digest is None and settings.require_digest:
            return ImageVerdict(
                image, False, Reason.DIGEST_REQUIRED, "image must be pinned by digest"
            ), forever

        # step 2: which policies govern this image here; the cluster level decides whether it may run
        labels = self._labels.get(namespace, EMPTY_LABELS) if namespace is not None else EMPTY_LABELS
        scope = self._policies.scope_for(ref.name, namespace, labels)
        if not scope.cluster and settings.default_decision == "deny":
            return ImageVerdict(
                image, False, Reason.NO_MATCHING_POLICY, f"no policy matches {ref.name}"
            ), forever
        if not scope.cluster and not scope.namespaced:
            combined = combine(image, (), (), default_decision=settings.default_decision)
            return verdict_of(image, combined, None, ()), forever

        # step 3: the digest
        tenant = namespace or CLUSTER_TENANT
        digest, until = await self.sources.resolve(
            ref,
            tenant,
            keychain,
            refresh=refresh,
            prefetch=self.sources.prefetch_test(ref, scope, self._roots, refresh=refresh),
        )
        job = Job(image, ref.with_digest(digest), digest, tenant, keychain, refresh)

        # steps 4-6, per policy: evidence is shared between policies that ask for the same
        policies: list[AnyPolicy] = [*scope.cluster, *scope.namespaced]
        decided_at = self._clock()  # issue 8: before evaluating, so a deadline between is not missed
        if len(policies) == 1:  # the common case, without a task per policy
            evaluated = [await self._evaluate(policies[0], job)]
        else:
            evaluated = list(await asyncio.gather(*(self._evaluate(policy, job) for policy in policies)))
        results = [result for result, _ in evaluated]
        until = min([until, *(expires for _, expires in evaluated)])
        n = len(scope.cluster)
        combined = combine(image, results[:n], results[n:], default_decision=settings.default_decision)
        warnings: tuple[str, ...] = ()
        if ref.digest is None and combined.allowed and settings.warn_on_tag:
            warnings = (
                f"{image}: verified at the digest its tag points to now ({digest}); the tag can move",
            )
        verdict = verdict_of(image, combined, digest, warnings)
        # issue 8: a warn-mode policy's enforceAfter ends the verdict (wall clock, and monotonic)
        change = next_change(policies, decided_at)
        if change is not None:
            verdict = replace(verdict, valid_until=change)
            until = min(until, self._monotonic() + max(0.0, (change - self._clock()).total_seconds()))
        return verdict, (0.0 if verdict.transient else until)

    async def _evaluate(self, policy: AnyPolicy, job: Job) -> tuple[PolicyResult, float]:
        forever = self._monotonic() + self.settings.cache_ttl_seconds
        if isinstance(policy, InvalidPolicy):
            return evaluate_invalid(policy, job.image), forever
        policy = policy_at(policy, self._clock())  # issue 8: warn, or past its enforceAfter, enforce
        root = self._roots.get(policy.trust_root)
        if root is None:
            failure = Failure(
                Reason.TRUST_ROOT_UNKNOWN,
                f"policy {policy.name} names unknown trust root {policy.trust_root!r}",
                job.image,
            )
            return evaluate_policy(policy, (), (failure,), job.image), forever
        sig_repo = policy.signature_repository or self.settings.signature_repository
        evidence, expires = await self.sources.evidence_for(job, sig_repo, want_of(policy, root))
        result = self.evaluations.get(policy, evidence, job.image)  # CEL conditions are the costly part
        if result is None:
            result = evaluate_policy(policy, evidence.verified, evidence.failures, job.image)
            if expires > 0:
                self.evaluations.put(policy, evidence, job.image, result)
        return result, expires
