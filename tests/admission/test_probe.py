"""Readiness: the kopf probe fails at once (a permanent error, so no retry) until loaded and while the
controller sheds load, so that the Service sends new reviews to the other replicas."""

from __future__ import annotations

import kopf
import pytest

from controller.admission.metrics import AdmissionMetrics
from controller.admission.operator import Loader
from controller.admission.state import PolicyState
from controller.engine import Engine, builtin_trust_roots
from controller.policy import PolicySet
from controller.registry import RegistryClient


@pytest.fixture
def state() -> PolicyState:
    roots = builtin_trust_roots()
    engine = Engine(registry=RegistryClient(), policies=PolicySet([]), trust_roots=roots)
    return PolicyState(engine, roots, AdmissionMetrics())


def test_the_probe_fails_until_loaded_and_while_overloaded(state: PolicyState) -> None:
    why: list[str | None] = [None]
    loader = Loader(state, None, namespace="imprimatur", overload=lambda: why[0])
    with pytest.raises(kopf.PermanentError, match="PoliciesNotLoaded"):
        loader.probe()
    state.apply([], [])
    state.mark_loaded()
    assert loader.probe()["loaded"] is True
    why[0] = "600 reviews already wait on registries"
    with pytest.raises(kopf.PermanentError, match="Overloaded: 600 reviews already wait"):
        loader.probe()
    why[0] = None
    assert loader.probe()["loaded"] is True
    state.engine.close()
