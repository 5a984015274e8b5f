"""The ``status`` each of our objects should carry: a Ready condition and ``observedGeneration``.

A policy is Ready only when it compiled *and* the trust root it names is known and loaded (built-in,
or a TrustRoot that is Ready). Otherwise it shows ``Ready=False`` with ``PolicyInvalid`` or
``TrustRootUnknown``, and the engine denies the images it covers with the same reason.

A warn-mode policy with ``enforceAfter`` also carries an ``Enforcing`` condition (issue 8):
``False``/``WarnUntilDeadline``, ``Warning until <time>``, then from that instant on the engine's clock
``True``/``DeadlinePassed``, ``Enforcing since <time>`` (its ``lastTransitionTime`` is the deadline
itself). A kopf timer (:mod:`controller.admission.deadlines`) writes the flip.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from controller.admission.objects import (
    MAX_CONDITION_MESSAGE,
    READY_REASON,
    TRUST_ROOT_READY_REASON,
    PolicyEntry,
    TrustRootEntry,
)
from controller.errors import Reason
from controller.policy.deadline import enforcing_at, format_timestamp

MAX_SOURCE: Final = 512
ENFORCING: Final = "Enforcing"  # issue 8: the condition of a warn-mode policy with enforceAfter
WARN_UNTIL_DEADLINE: Final = "WarnUntilDeadline"
DEADLINE_PASSED: Final = "DeadlinePassed"

TrustRootReadiness = Mapping[str, bool]
"""Trust root name -> whether it is loaded (built-in roots are always True; an absent name is unknown)."""


def _condition(
    ready: bool,
    *,
    reason: str,
    message: str,
    generation: int | None,
    previous: Mapping[str, object] | None,
    now: datetime,
) -> dict[str, object]:
    status = "True" if ready else "False"
    since = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    if (
        previous is not None
        and previous.get("status") == status
        and isinstance(previous.get("lastTransitionTime"), str)
    ):
        since = str(previous["lastTransitionTime"])
    condition: dict[str, object] = {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message[:MAX_CONDITION_MESSAGE],
        "lastTransitionTime": since,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def _previous_ready(body: Mapping[str, object], kind: str = "Ready") -> Mapping[str, object] | None:
    status = body.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    if not isinstance(conditions, list):
        return None
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") == kind:
            return condition
    return None


def enforcing_condition(
    body: Mapping[str, object], entry: PolicyEntry, now: datetime
) -> dict[str, object] | None:
    """The ``Enforcing`` condition of a compiled warn-mode policy with ``enforceAfter``; else None."""
    policy = entry.policy
    if policy is None or policy.mode != "warn" or policy.enforce_after is None:
        return None
    deadline = format_timestamp(policy.enforce_after)
    enforcing = enforcing_at(policy, now)
    condition = _condition(
        enforcing,
        reason=DEADLINE_PASSED if enforcing else WARN_UNTIL_DEADLINE,
        message=f"Enforcing since {deadline}" if enforcing else f"Warning until {deadline}",
        generation=entry.generation,
        previous=_previous_ready(body, ENFORCING),
        now=now,
    )
    condition["type"] = ENFORCING
    if enforcing:
        condition["lastTransitionTime"] = deadline  # it flipped at the deadline, whenever we saw it
    return condition


def trust_root_problem(entry: PolicyEntry, trust_roots: TrustRootReadiness | None) -> str | None:
    """Why a compiled policy's trust root makes it not ready, or None (also when ``trust_roots`` is None)."""
    if trust_roots is None or entry.policy is None:
        return None
    name = entry.policy.trust_root
    loaded = trust_roots.get(name)
    if loaded is None:
        return f"{entry.key}: spec.trustRoot: the TrustRoot {name!r} does not exist"
    if not loaded:
        return f"{entry.key}: spec.trustRoot: the TrustRoot {name!r} is not ready"
    return None


def readiness(
    entry: PolicyEntry | TrustRootEntry, trust_roots: TrustRootReadiness | None = None
) -> tuple[bool, str, str]:
    """(ready, reason, message) of an entry; a policy's trust root counts when ``trust_roots`` is given."""
    if isinstance(entry, PolicyEntry):
        problem = trust_root_problem(entry, trust_roots)
        if problem is not None:
            return False, str(Reason.TRUST_ROOT_UNKNOWN), f"{Reason.TRUST_ROOT_UNKNOWN}: {problem}"
    if entry.ready:
        ready_reason = TRUST_ROOT_READY_REASON if isinstance(entry, TrustRootEntry) else READY_REASON
        return True, ready_reason, f"{ready_reason}: {entry.key}"
    reason = str(entry.reason or Reason.INTERNAL_ERROR)
    return False, reason, f"{reason}: {entry.detail}"


def desired_status(
    body: Mapping[str, object],
    entry: PolicyEntry | TrustRootEntry,
    now: datetime | None = None,
    *,
    trust_roots: TrustRootReadiness | None = None,
) -> dict[str, object]:
    """The ``status`` an object should carry: ``conditions`` (Ready) and ``observedGeneration``.

    ``lastTransitionTime`` is kept from the current Ready condition unless its status flips.
    """
    ready, reason, message = readiness(entry, trust_roots)
    condition = _condition(
        ready,
        reason=reason,
        message=message,
        generation=entry.generation,
        previous=_previous_ready(body),
        now=now or datetime.now(UTC),
    )
    status: dict[str, object] = {"conditions": [condition]}
    if isinstance(entry, PolicyEntry):  # issue 8: warn until enforceAfter, then enforce
        phase = enforcing_condition(body, entry, now or datetime.now(UTC))
        if phase is not None:
            status["conditions"] = [condition, phase]
    if entry.generation is not None:
        status["observedGeneration"] = entry.generation
    if isinstance(entry, TrustRootEntry):
        status["source"] = entry.source[:MAX_SOURCE]
    return status


def status_differs(body: Mapping[str, object], desired: Mapping[str, object]) -> bool:
    """Whether ``body.status`` lacks or differs from any field of ``desired`` (so a patch is needed)."""
    current = body.get("status")
    if not isinstance(current, Mapping):
        return True
    return any(current.get(k) != v for k, v in desired.items())
