"""The one decision engine, and the only place that orchestrates registry, verify and policy.

* :mod:`~controller.engine.core`: :class:`Engine`, images -> digests -> signatures -> verify -> policy;
* :mod:`~controller.engine.lanes`: where slow work runs (bulkheads, single flight, deadlines);
* :mod:`~controller.engine.caches`: evidence, tags and verdicts, each keyed by what it depends on;
* :mod:`~controller.engine.sources` and :mod:`~controller.engine.flights`: tags and evidence, and the
  registry reads behind them;
* :mod:`~controller.engine.evidence`: the blocking fetch and verify steps.
* :mod:`~controller.engine.exceptions`: the decision clock and ImagePolicyException grants.
"""

from controller.engine.core import CLUSTER_TENANT, Engine
from controller.engine.lanes import LaneLimits, Lanes
from controller.engine.roots import BUILTIN_TRUST_ROOTS, Clock, builtin_trust_roots, utc_now

__all__ = [
    "BUILTIN_TRUST_ROOTS",
    "CLUSTER_TENANT",
    "Clock",
    "Engine",
    "LaneLimits",
    "Lanes",
    "builtin_trust_roots",
    "utc_now",
]
