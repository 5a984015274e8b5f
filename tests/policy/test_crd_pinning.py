"""``spec.pinning`` (issue 9): parsed strictly on both policy kinds, and carried to the compiled policy.

How the values of several policies combine is tested with the webhook (tests/admission/test_pinning*.py).
"""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controller.errors import PolicyError, Reason
from controller.policy.compiled import compile_policy
from controller.policy.crd import parse_policy
from tests.policy._builders import policy_doc

MODES = ("off", "pods", "workloads")


def _namespaced(doc: dict[str, object]) -> dict[str, object]:
    out = copy.deepcopy(doc)
    out["kind"] = "ImagePolicy"
    meta = out["metadata"]
    assert isinstance(meta, dict)
    meta["namespace"] = "team-a"
    return out


@pytest.mark.parametrize("kind", ["ClusterImagePolicy", "ImagePolicy"])
@pytest.mark.parametrize("mode", MODES)
def test_each_mode_parses_and_compiles_on_both_kinds(kind: str, mode: str) -> None:
    doc = policy_doc(pinning=mode)
    if kind == "ImagePolicy":
        doc = _namespaced(doc)
    assert parse_policy(doc).spec.pinning == mode
    assert compile_policy(doc).pinning == mode


def test_unset_leaves_it_to_the_setting() -> None:
    assert parse_policy(policy_doc()).spec.pinning is None
    assert compile_policy(policy_doc()).pinning is None
    assert parse_policy(policy_doc(pinning=None)).spec.pinning is None


@pytest.mark.parametrize("value", ["Off", "pod", "workload", "", "on", "true", 1, 0, [], {}, ["pods"]])
def test_anything_else_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy(policy_doc(pinning=value))
    assert raised.value.reason == Reason.POLICY_INVALID
    assert ": spec.pinning: " in raised.value.detail


def test_a_bare_yaml_off_is_refused_with_a_hint_to_quote_it() -> None:
    spec = yaml.safe_load("pinning: off")  # YAML 1.1: the boolean false
    assert spec == {"pinning": False}
    with pytest.raises(PolicyError) as raised:
        parse_policy(policy_doc(**spec))
    assert raised.value.reason == Reason.POLICY_INVALID
    assert "quote it" in raised.value.detail
    quoted = yaml.safe_load("pinning: 'off'")
    assert parse_policy(policy_doc(**quoted)).spec.pinning == "off"


@given(st.one_of(st.text(max_size=20), st.integers(), st.booleans(), st.floats(allow_nan=False)))
def test_only_the_three_modes_parse(value: object) -> None:
    if value in MODES and isinstance(value, str):
        assert parse_policy(policy_doc(pinning=value)).spec.pinning == value
        return
    with pytest.raises(PolicyError) as raised:
        parse_policy(policy_doc(pinning=value))
    assert raised.value.reason == Reason.POLICY_INVALID
