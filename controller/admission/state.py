"""What the controller has loaded: policy and trust-root entries, and whether loading is complete.

Until :meth:`PolicyState.mark_loaded` is called every review is denied with ``PoliciesNotLoaded`` and
the readiness probe fails: the controller never decides with a partial view of its policies.

Every change rebuilds the engine's :class:`PolicySet` and trust roots from the entries (built-in
roots first; custom roots by name). Valid policies are used as compiled; an invalid one enters the
set as its :class:`~controller.policy.InvalidPolicy`, which denies the images it covers with
``PolicyInvalid``; invalid ones are also counted and reported, never silently dropped. A trust root
keeps its object identity while its entry is unchanged, so the engine drops cached evidence only for
roots that really changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.admission.metrics import AdmissionMetrics
from controller.admission.objects import PolicyEntry, TrustRootEntry
from controller.engine import Engine
from controller.errors import ImprimaturError
from controller.policy import PolicySet
from controller.verify import TrustRoot

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StateSummary:
    """Counts and problems, for the readiness probe and logs."""

    loaded: bool
    policies_ready: int
    policies_invalid: int
    trust_roots_ready: int
    trust_roots_invalid: int
    problems: tuple[str, ...]


class PolicyState:
    """The loaded entries, the loaded flag, and the engine they configure."""

    def __init__(
        self, engine: Engine, builtin_roots: Mapping[str, TrustRoot], metrics: AdmissionMetrics
    ) -> None:
        self.engine = engine
        self._builtin = dict(builtin_roots)
        self._metrics = metrics
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._policies: tuple[PolicyEntry, ...] = ()
        self._roots: tuple[TrustRootEntry, ...] = ()
        self.generation = 0  # bumped on every apply, for tests and logs

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    def mark_loaded(self) -> None:
        """Loading is complete: from now on reviews are decided. Idempotent."""
        if not self._loaded.is_set():
            self._loaded.set()
            self._metrics.policies_loaded.set(1)
            summary = self.summary()
            log.info(
                "policies loaded: %d ready, %d invalid; trust roots: %d ready, %d invalid",
                summary.policies_ready,
                summary.policies_invalid,
                summary.trust_roots_ready,
                summary.trust_roots_invalid,
            )

    def apply(self, policies: Iterable[PolicyEntry], trust_roots: Iterable[TrustRootEntry]) -> None:
        """Replace every entry and rebuild the engine's policies and trust roots."""
        policy_entries = tuple(
            sorted(policies, key=lambda e: (e.key.kind, e.key.namespace or "", e.key.name))
        )
        root_entries = tuple(sorted(trust_roots, key=lambda e: e.key.name))
        with self._lock:
            valid = [e.policy for e in policy_entries if e.policy is not None]
            # Invalid policies go in too, as InvalidPolicy: they deny what they cover (fail closed).
            enforced = [p for p in (e.enforced for e in policy_entries) if p is not None]
            try:
                policy_set = PolicySet(enforced)
            except ImprimaturError as e:  # duplicates cannot come from the API; from files they can
                rejected: ImprimaturError | None = e
            else:
                rejected = None
            if rejected is not None:
                log.error("policy set rejected, keeping the previous one: %s", rejected.message())
                return
            roots = dict(self._builtin)
            for root_entry in root_entries:
                if root_entry.root is not None:
                    roots[root_entry.key.name] = root_entry.root
            unknown = sorted({p.trust_root for p in valid if p.trust_root not in roots})
            for name in unknown:
                log.warning(
                    "policies name trust root %r, which is unknown or invalid: they deny (TrustRootUnknown)",
                    name,
                )
            self.engine.update(policies=policy_set, trust_roots=roots)
            changed = (policy_entries, root_entries) != (self._policies, self._roots)
            self._policies, self._roots = policy_entries, root_entries
            self.generation += 1
        self._metrics.policies.set(sum(1 for e in policy_entries if e.ready), state="ready")
        self._metrics.policies.set(sum(1 for e in policy_entries if not e.ready), state="invalid")
        self._metrics.trust_roots.set(sum(1 for e in root_entries if e.ready), state="ready")
        self._metrics.trust_roots.set(sum(1 for e in root_entries if not e.ready), state="invalid")
        if changed:
            everything: list[PolicyEntry | TrustRootEntry] = [*policy_entries, *root_entries]
            invalid = [e for e in everything if not e.ready]
            for bad in invalid:
                log.warning("%s is invalid: %s: %s", bad.key, bad.reason, bad.detail)

    @property
    def policy_entries(self) -> tuple[PolicyEntry, ...]:
        return self._policies

    @property
    def trust_root_entries(self) -> tuple[TrustRootEntry, ...]:
        return self._roots

    def trust_root_readiness(self) -> dict[str, bool]:
        """Every trust root a policy may name -> whether it is loaded (built-in roots always are)."""
        readiness = {entry.key.name: entry.ready for entry in self._roots}
        readiness.update(dict.fromkeys(self._builtin, True))
        return readiness

    def summary(self) -> StateSummary:
        policies, roots = self._policies, self._roots
        everything: list[PolicyEntry | TrustRootEntry] = [*policies, *roots]
        problems = tuple(f"{e.key}: {e.reason}: {e.detail}" for e in everything if not e.ready)
        return StateSummary(
            loaded=self.loaded,
            policies_ready=sum(1 for e in policies if e.ready),
            policies_invalid=sum(1 for e in policies if not e.ready),
            trust_roots_ready=sum(1 for e in roots if e.ready),
            trust_roots_invalid=sum(1 for e in roots if not e.ready),
            problems=problems,
        )
