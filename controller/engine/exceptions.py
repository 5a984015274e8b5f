"""The engine's decision clock and its ImagePolicyException grants (issue 8).

:class:`ExceptionGrants` is a mixin of :class:`~controller.engine.core.Engine`: it holds the decision
clock (exceptions' expiry, warn-mode ``enforceAfter`` deadlines) and the valid exceptions, and turns a
denied decision into an allowed one where an active exception of the namespace covers it. The rules
(namespace, selector, expiry, ``exceptions: forbidden``) are the policy layer's
(:mod:`controller.policy.exceptions`); this module only feeds them the engine's state and clock.

A grant is checked against the clock at every call and never cached: cached verdicts never include
one, so swapping the exceptions drops nothing and a grant ends exactly at its exception's expiry.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from controller.engine.roots import Clock
from controller.engine.verdicts import decision_of
from controller.model import Decision
from controller.policy import EMPTY_LABELS, PolicySet
from controller.policy.exceptions import EMPTY_EXCEPTIONS, ExceptionSet, apply_exceptions, forbidden_in


class ExceptionGrants:
    """``now``, ``use_clock``, ``set_exceptions`` and ``grant_exceptions`` of the Engine.

    The Engine sets ``_clock``, ``_policies`` and ``_labels`` (namespace -> labels) in its constructor.
    """

    _clock: Clock
    _policies: PolicySet
    _labels: Mapping[str, Mapping[str, str]]
    _exceptions: ExceptionSet = EMPTY_EXCEPTIONS

    def now(self) -> datetime:
        """The decision time: the injected clock (exceptions' expiry, warn-mode deadlines)."""
        return self._clock()

    def use_clock(self, clock: Clock) -> None:
        """Replace the decision clock (tests); registry reads and verification keep their own."""
        self._clock = clock

    @property
    def exceptions(self) -> ExceptionSet:
        """The valid exceptions in force (whatever their expiry: that is checked at each grant)."""
        return self._exceptions

    def set_exceptions(self, exceptions: ExceptionSet) -> None:
        """Swap the valid exceptions. Cached verdicts never include a grant, so nothing is dropped."""
        self._exceptions = exceptions

    def grant_exceptions(
        self, decision: Decision, namespace: str | None, labels: Mapping[str, str]
    ) -> Decision:
        """``decision`` with every denial that an active exception of ``namespace`` covers (for an
        object labelled ``labels``) allowed as ``ExceptionGranted``. Checked against the clock at every
        call and never cached, so a grant ends exactly at the exception's expiry."""
        exceptions = self._exceptions
        if decision.allowed or not exceptions.in_namespace(namespace):
            return decision
        ns_labels = self._labels.get(namespace, EMPTY_LABELS) if namespace is not None else EMPTY_LABELS
        verdicts = apply_exceptions(
            decision.verdicts,
            exceptions,
            namespace=namespace,
            labels=labels,
            now=self._clock(),
            forbidden=forbidden_in(self._policies, namespace, ns_labels),
        )
        return decision_of(verdicts)
