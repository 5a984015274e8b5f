"""The one decision engine: images -> digests -> signatures -> verify -> policy -> Decision.

The webhook, the CLI and the demo all call :class:`Engine`; nothing else orchestrates the layers.
The engine is synchronous and thread-safe: the admission layer runs it in a worker thread so the
event loop never blocks, and the engine itself verifies the images of one object in parallel.

Per image, the steps are:

1. parse the reference (``ReferenceInvalid``); refuse tag-only references if digests are required;
2. find the policies whose globs match (cluster policies plus the namespace's own); none -> the
   configured default (deny: ``NoMatchingPolicy``);
3. resolve the tag to a digest (a digest-pinned reference costs no round trip);
4. fetch the candidate signatures from every signature repository the policies name (the legacy
   ``sha256-<hex>.sig`` tag, and Sigstore bundles through OCI 1.1 referrers);
5. verify each candidate under each distinct (trust root, tlog requirement) the policies ask for;
6. evaluate every matching policy; the image is allowed only if every enforcing policy passes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

from controller.config import Settings
from controller.errors import EvidenceError, FetchError, ImprimaturError, InputError, PolicyError, Reason
from controller.model import Decision, Digest, Failure, ImageRef, ImageVerdict, Signature, VerifiedSignature
from controller.policy import CompiledPolicy, PolicyResult, PolicySet, evaluate_policy
from controller.registry import Keychain, RegistryClient, parse_reference
from controller.verify import TrustRoot, VerifyOptions, verify_bundle, verify_simplesigning
from controller.workload import images_of

log = logging.getLogger(__name__)

BUILTIN_TRUST_ROOTS = {"public-good": "trusted_root.public-good.json", "staging": "trusted_root.staging.json"}

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, in UTC. The engine reads time only through its injected clock."""
    return datetime.now(UTC)


def builtin_trust_roots() -> dict[str, TrustRoot]:
    """The embedded Sigstore roots shipped as package data: ``public-good`` and ``staging``."""
    roots: dict[str, TrustRoot] = {}
    data = resources.files("controller").joinpath("data")
    for name, filename in BUILTIN_TRUST_ROOTS.items():
        roots[name] = TrustRoot.from_json(data.joinpath(filename).read_bytes(), name)
    return roots


@dataclass(frozen=True, slots=True)
class _Evidence:
    """What verification under one (trust root, tlog) setting made of an image's candidates."""

    verified: tuple[VerifiedSignature, ...]
    failures: tuple[Failure, ...]


class _TTLCache:
    """A small thread-safe LRU with a time-to-live, for verified evidence keyed by digest."""

    def __init__(self, entries: int, ttl: float) -> None:
        self._entries = entries
        self._ttl = ttl
        self._data: OrderedDict[tuple[str, ...], tuple[float, _Evidence]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> _Evidence | None:
        if self._entries <= 0 or self._ttl <= 0:
            return None
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            stamp, value = hit
            if time.monotonic() - stamp > self._ttl:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    def put(self, key: tuple[str, ...], value: _Evidence) -> None:
        if self._entries <= 0 or self._ttl <= 0:
            return
        with self._lock:
            self._data[key] = (time.monotonic(), value)
            self._data.move_to_end(key)
            while len(self._data) > self._entries:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class Engine:
    """Decides whether images may run. Policies and trust roots can be swapped atomically at runtime."""

    def __init__(
        self,
        *,
        registry: RegistryClient,
        policies: PolicySet,
        trust_roots: Mapping[str, TrustRoot],
        settings: Settings | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.registry = registry
        self.settings = settings or Settings()
        self._policies = policies
        self._trust_roots = dict(trust_roots)
        self._clock = clock
        self._cache = _TTLCache(self.settings.cache_entries, self.settings.cache_ttl_seconds)
        self._pool = ThreadPoolExecutor(max_workers=self.settings.max_workers, thread_name_prefix="verify")

    # --- runtime updates (the admission layer's indexes call these)

    def update(
        self, *, policies: PolicySet | None = None, trust_roots: Mapping[str, TrustRoot] | None = None
    ) -> None:
        """Swap the policy set and/or trust roots. Cached evidence depends on trust roots, so it is dropped."""
        if policies is not None:
            self._policies = policies
        if trust_roots is not None:
            self._trust_roots = dict(trust_roots)
            self._cache.clear()

    @property
    def policies(self) -> PolicySet:
        return self._policies

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- decisions

    def decide_object(
        self, obj: Mapping[str, object], *, namespace: str | None = None, keychain: Keychain | None = None
    ) -> Decision:
        """Decide for a Pod or any workload that carries a pod template (all container kinds)."""
        images = [c.image for c in images_of(obj)]
        return self.decide_images(images, namespace=namespace, keychain=keychain)

    def decide_images(
        self, images: Sequence[str], *, namespace: str | None = None, keychain: Keychain | None = None
    ) -> Decision:
        """Decide for a list of image references. Allowed only if every image is allowed."""
        unique = list(dict.fromkeys(images))
        registry = self.registry.with_keychain(keychain) if keychain is not None else self.registry
        policies = self._policies  # one consistent snapshot for the whole decision
        roots = self._trust_roots
        if len(unique) == 1:
            verdicts = [self._decide_one(unique[0], namespace, registry, policies, roots)]
        else:
            futures = [
                self._pool.submit(self._decide_one, image, namespace, registry, policies, roots)
                for image in unique
            ]
            verdicts = [f.result() for f in futures]
        warnings = tuple(dict.fromkeys(w for v in verdicts for w in v.warnings))
        return Decision(allowed=all(v.allowed for v in verdicts), verdicts=tuple(verdicts), warnings=warnings)

    def _decide_one(
        self,
        image: str,
        namespace: str | None,
        registry: RegistryClient,
        policies: PolicySet,
        roots: Mapping[str, TrustRoot],
    ) -> ImageVerdict:
        try:
            return self._verify_image(image, namespace, registry, policies, roots)
        except ImprimaturError as e:
            return ImageVerdict(image, False, e.reason, e.detail, transient=e.transient)
        except Exception as e:  # fail closed on anything we did not foresee, and say so
            log.exception("internal error while verifying %s", image)
            return ImageVerdict(image, False, Reason.INTERNAL_ERROR, f"{type(e).__name__}: {e}")

    def _verify_image(
        self,
        image: str,
        namespace: str | None,
        registry: RegistryClient,
        policies: PolicySet,
        roots: Mapping[str, TrustRoot],
    ) -> ImageVerdict:
        # step 1: the reference
        ref = parse_reference(image)
        warnings: list[str] = []
        if ref.digest is None:
            if self.settings.require_digest:
                return ImageVerdict(image, False, Reason.DIGEST_REQUIRED, "image must be pinned by digest")
            if self.settings.warn_on_tag:
                warnings.append(f"{image}: verified at the digest its tag points to now; the tag can move")

        # step 2: the policies
        matching = policies.matching(ref.name, namespace)
        if not matching:
            if self.settings.default_decision == "allow":
                warnings.append(f"{image}: no policy matches; allowed by the configured default")
                return ImageVerdict(
                    image, True, Reason.NO_MATCHING_POLICY, "no policy matches", warnings=tuple(warnings)
                )
            return ImageVerdict(image, False, Reason.NO_MATCHING_POLICY, f"no policy matches {ref.name}")

        # step 3: the digest
        digest = registry.resolve(ref)
        pinned = ref.with_digest(digest)

        # steps 4-6: per policy, with evidence shared between policies that ask the same
        results: list[PolicyResult] = []
        candidates: dict[str | None, list[Signature] | FetchError] = {}
        for policy in matching:
            evidence = self._evidence_for(
                policy, pinned=pinned, digest=digest, registry=registry, roots=roots, candidates=candidates
            )
            results.append(evaluate_policy(policy, evidence.verified, evidence.failures, image))

        names = tuple(r.policy for r in results)
        for r in results:
            warnings.extend(r.warnings)
        failed = [r for r in results if not r.passed]
        if failed:
            first = failed[0]
            detail = first.detail if len(failed) == 1 else f"{first.detail} (policy {first.policy})"
            return ImageVerdict(
                image,
                False,
                first.reason,
                detail,
                digest,
                names,
                (),
                tuple(warnings),
                transient=first.transient,
            )
        unique: dict[tuple[str, str, str, int | None], VerifiedSignature] = {}
        for r in results:
            for s in r.matched:
                unique.setdefault((s.subject, s.issuer, s.source, s.log_index), s)
        signers = tuple(unique.values())
        return ImageVerdict(
            image, True, Reason.VERIFIED, _describe_signers(signers), digest, names, signers, tuple(warnings)
        )

    def _evidence_for(
        self,
        policy: CompiledPolicy,
        *,
        pinned: ImageRef,
        digest: Digest,
        registry: RegistryClient,
        roots: Mapping[str, TrustRoot],
        candidates: dict[str | None, list[Signature] | FetchError],
    ) -> _Evidence:
        image = str(pinned)
        root = roots.get(policy.trust_root)
        if root is None:
            failure = Failure(
                Reason.TRUST_ROOT_UNKNOWN,
                f"policy {policy.name} names unknown trust root {policy.trust_root!r}",
                image,
            )
            return _Evidence((), (failure,))
        sig_repo = policy.signature_repository or self.settings.signature_repository
        key = (str(digest), pinned.name, sig_repo or "", root.name, str(id(root)), str(policy.tlog_required))
        cached = self._cache.get(key)
        if cached is not None:
            return cached

        found = candidates.get(sig_repo)
        if found is None:
            try:
                found = self._fetch_candidates(registry, pinned, digest, sig_repo)
            except FetchError as e:
                found = e
            candidates[sig_repo] = found
        if isinstance(found, FetchError):
            # could not fetch the evidence: deny, marked transient, and never cache
            return _Evidence((), (Failure(found.reason, found.detail, image, transient=True),))

        options = VerifyOptions(
            require_tlog=policy.tlog_required,
            require_sct=self.settings.require_sct,
            require_issuer_extension=self.settings.require_issuer_extension,
        )
        now = self._clock()
        verified: list[VerifiedSignature] = []
        failures: list[Failure] = []
        for sig in found:
            try:
                if sig.kind == "bundle":
                    verified.append(verify_bundle(sig, digest=digest, trust_root=root, now=now))
                else:
                    verified.append(
                        verify_simplesigning(sig, digest=digest, trust_root=root, options=options, now=now)
                    )
            except (EvidenceError, PolicyError, InputError) as e:
                failures.append(Failure(e.reason, f"{sig.source}: {e.detail}", image))
        evidence = _Evidence(tuple(verified), tuple(failures))
        if found:  # "not found" is not cached: a signature may be pushed any second
            self._cache.put(key, evidence)
        return evidence

    def _fetch_candidates(
        self, registry: RegistryClient, pinned: ImageRef, digest: Digest, sig_repo: str | None
    ) -> list[Signature]:
        found = registry.fetch_signatures(pinned, digest, signature_repository=sig_repo)
        if self.settings.fetch_bundles:
            try:
                found = found + registry.fetch_referrer_bundles(pinned, digest, signature_repository=sig_repo)
            except FetchError:
                # A registry without the referrers API must not hide valid legacy signatures; with none
                # found at all, the fetch failure is what the user needs to see.
                if not found:
                    raise
                log.warning("referrers lookup failed for %s; using the legacy .sig signatures", pinned)
        return found


def _describe_signers(signers: Sequence[VerifiedSignature]) -> str:
    if not signers:
        return "allowed"
    parts = []
    for s in signers:
        where = f"rekor log index {s.log_index}" if s.log_index is not None else "no tlog entry"
        parts.append(f"signed by {s.subject} ({s.issuer}), {where}")
    return "; ".join(parts)
