"""The ``Enforcing`` condition of a warn-mode policy with ``enforceAfter`` (controller/admission/status.py)
and the timer that flips it (controller/admission/deadlines.py), on the engine's injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.admission.deadlines import Deadlines, has_deadline
from controller.admission.metrics import AdmissionMetrics
from controller.admission.objects import PolicyEntry, compile_policy_entry
from controller.admission.state import PolicyState
from controller.admission.status import DEADLINE_PASSED, ENFORCING, WARN_UNTIL_DEADLINE, desired_status
from controller.engine import Engine, builtin_trust_roots
from controller.policy import PolicySet
from controller.policy.deadline import format_timestamp
from controller.registry import RegistryClient
from tests.admission.harness import cluster_policy

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(days=14)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def _body(**spec: object) -> dict[str, Any]:
    body = cluster_policy("rollout", ["registry.example/team/**"], trustRoot="public-good", **spec)
    body["metadata"] = {"name": "rollout", "generation": 3}
    return body


def _enforcing(status: dict[str, object]) -> dict[str, object] | None:
    conditions = status["conditions"]
    assert isinstance(conditions, list)
    found = [c for c in conditions if c["type"] == ENFORCING]
    return found[0] if found else None


def test_warning_until_the_deadline_then_enforcing_since_it() -> None:
    body = _body(mode="warn", enforceAfter=format_timestamp(DEADLINE))
    entry = compile_policy_entry(body)
    before = desired_status(body, entry, NOW)
    condition = _enforcing(before)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", WARN_UNTIL_DEADLINE)
    assert condition["message"] == f"Warning until {format_timestamp(DEADLINE)}"
    assert condition["observedGeneration"] == 3
    assert [c["type"] for c in before["conditions"]] == ["Ready", ENFORCING]  # type: ignore[union-attr]

    # a second before: unchanged, and the transition time kept from the status already written
    body["status"] = before
    assert desired_status(body, entry, DEADLINE - timedelta(seconds=1)) == before

    after = _enforcing(desired_status(body, entry, DEADLINE))
    assert after is not None
    assert (after["status"], after["reason"]) == ("True", DEADLINE_PASSED)
    assert after["message"] == f"Enforcing since {format_timestamp(DEADLINE)}"
    assert after["lastTransitionTime"] == format_timestamp(DEADLINE)  # when it flipped, not when seen
    late = _enforcing(desired_status(body, entry, DEADLINE + timedelta(days=3)))
    assert late == after


@pytest.mark.parametrize(
    "spec",
    [{}, {"mode": "warn"}, {"mode": "enforce"}],
)
def test_only_a_warn_policy_with_a_deadline_has_the_condition(spec: dict[str, object]) -> None:
    body = _body(**spec)
    assert _enforcing(desired_status(body, compile_policy_entry(body), NOW)) is None
    assert not has_deadline(spec=body["spec"])


def test_an_invalid_policy_has_no_phase() -> None:
    body = _body(mode="warn", enforceAfter="next tuesday")
    entry = compile_policy_entry(body)
    assert entry.policy is None
    assert _enforcing(desired_status(body, entry, NOW)) is None


async def test_the_timer_flips_the_status_on_the_engines_clock() -> None:
    clock = Clock()
    roots = builtin_trust_roots()
    engine = Engine(registry=RegistryClient(), policies=PolicySet([]), trust_roots=roots, clock=clock)
    state = PolicyState(engine, roots, AdmissionMetrics())
    body = _body(mode="warn", enforceAfter=format_timestamp(DEADLINE))
    entry = compile_policy_entry(body)
    state.apply([entry], [])
    assert has_deadline(spec=body["spec"])

    def desired(b: Any, e: Any) -> dict[str, object]:
        return desired_status(b, e, engine.now())

    deadlines = Deadlines(state, desired)
    body["status"] = desired_status(body, entry, NOW)
    patch: dict[str, Any] = {}
    clock.now = DEADLINE - timedelta(seconds=1)
    await deadlines.on_timer(body=body, patch=patch)
    assert patch == {}  # still warning: nothing written
    clock.now = DEADLINE
    await deadlines.on_timer(body=body, patch=patch)
    flipped = _enforcing(patch["status"])
    assert flipped is not None and flipped["message"] == f"Enforcing since {format_timestamp(DEADLINE)}"

    # a policy the state does not hold (not indexed yet) is left to its event handler
    other = _body(mode="warn", enforceAfter=format_timestamp(DEADLINE))
    other["metadata"]["name"] = "unknown"
    patch = {}
    await deadlines.on_timer(body=other, patch=patch)
    assert patch == {}
    assert isinstance(entry, PolicyEntry)
