"""The ``Enforcing`` condition of warn-mode policies with ``enforceAfter``, flipped on time (issue 8).

The engine enforces such a policy from its deadline with no event at all (the decision clock picks
its enforcing form), so nothing would rewrite its status then. A kopf timer on each warn-mode policy
with a deadline (every :data:`DEADLINE_CHECK_SECONDS`) recomputes its status on the engine's clock
(:meth:`Engine.now`, the same one admission uses) and patches ``/status`` only when it differs:
``Warning until <time>`` becomes ``Enforcing since <time>`` (:mod:`controller.admission.status`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import kopf

from controller.admission.objects import GROUP, VERSION, PolicyEntry, TrustRootEntry, object_key
from controller.admission.state import PolicyState
from controller.admission.status import status_differs

DEADLINE_CHECK_SECONDS: Final = 5.0
POLICY_PLURALS: Final = ("clusterimagepolicies", "imagepolicies")

DesiredStatus = Callable[[Mapping[str, object], PolicyEntry | TrustRootEntry], dict[str, object]]


def has_deadline(spec: Mapping[str, object] | None = None, **_: Any) -> bool:
    """kopf ``when``: only warn-mode policies with an ``enforceAfter`` get a timer."""
    return isinstance(spec, Mapping) and spec.get("mode") == "warn" and spec.get("enforceAfter") is not None


class Deadlines:
    """Rewrites a policy's status when its phase changes with time."""

    def __init__(self, state: PolicyState, desired: DesiredStatus) -> None:
        self.state = state
        self.desired = desired

    async def on_timer(self, *, body: Mapping[str, object], patch: Any, **_: Any) -> None:
        key = object_key(body)
        entry = next((e for e in self.state.policy_entries if e.key == key), None)
        if entry is None:
            return  # not indexed yet: its event handler writes its status
        desired = self.desired(body, entry)
        if status_differs(body, desired):
            patch["status"] = desired


def register(registry: kopf.OperatorRegistry, deadlines: Deadlines) -> None:
    """A timer per warn-mode policy with a deadline, for both policy kinds."""
    for plural in POLICY_PLURALS:
        kopf.timer(
            GROUP,
            VERSION,
            plural,
            id=f"{plural}-deadline",
            interval=DEADLINE_CHECK_SECONDS,
            when=has_deadline,
            registry=registry,
        )(deadlines.on_timer)
