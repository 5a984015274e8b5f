"""Tests for controller/policy/scope.py: namespace names and Kubernetes label selectors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.errors import PolicyError, Reason
from controller.policy.compiled import compile_policy
from controller.policy.scope import (
    MAX_MATCH_EXPRESSIONS,
    MAX_NAMESPACES,
    UNSCOPED,
    NamespaceScope,
    ScopeError,
    parse_scope,
)
from tests.policy._builders import policy_doc

PAYMENTS = {"team": "payments", "env": "prod"}


def _selects(selector: object, labels: dict[str, str], namespace: str | None = "ns") -> bool:
    return parse_scope(None, selector).matches(namespace, labels)


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ({}, {}, True),  # the empty selector selects every namespace
        ({}, PAYMENTS, True),
        ({"matchLabels": {"team": "payments"}}, PAYMENTS, True),
        ({"matchLabels": {"team": "payments"}}, {"team": "web"}, False),
        ({"matchLabels": {"team": "payments"}}, {}, False),
        ({"matchLabels": {"team": "payments", "env": "dev"}}, PAYMENTS, False),  # all must hold
        ({"matchLabels": {"team": ""}}, {"team": ""}, True),  # an empty value is a value
        ({"matchLabels": {"team": ""}}, {}, False),
        (
            {"matchExpressions": [{"key": "team", "operator": "In", "values": ["payments", "web"]}]},
            PAYMENTS,
            True,
        ),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["web"]}]}, PAYMENTS, False),
        ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["web"]}]}, {}, False),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["web"]}]}, PAYMENTS, True),
        (
            {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["payments"]}]},
            PAYMENTS,
            False,
        ),
        ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["web"]}]}, {}, True),  # absent
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, PAYMENTS, True),
        ({"matchExpressions": [{"key": "team", "operator": "Exists", "values": []}]}, {}, False),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, PAYMENTS, False),
        (
            {
                "matchLabels": {"env": "prod"},
                "matchExpressions": [{"key": "team", "operator": "In", "values": ["payments"]}],
            },
            PAYMENTS,
            True,
        ),
        (
            {
                "matchLabels": {"env": "prod"},
                "matchExpressions": [{"key": "team", "operator": "In", "values": ["web"]}],
            },
            PAYMENTS,
            False,
        ),
        (
            {"matchLabels": {"kubernetes.io/metadata.name": "payments"}},
            {"kubernetes.io/metadata.name": "payments"},
            True,
        ),
    ],
)
def test_selector_has_kubernetes_semantics(selector: object, labels: dict[str, str], selected: bool) -> None:
    assert _selects(selector, labels) is selected


def test_names_and_selector_must_both_hold() -> None:
    scope = parse_scope(["payments", "billing"], {"matchLabels": {"env": "prod"}})
    assert scope.matches("payments", {"env": "prod"})
    assert not scope.matches("payments", {"env": "dev"})
    assert not scope.matches("web", {"env": "prod"})


def test_names_alone() -> None:
    scope = parse_scope(["payments"], None)
    assert scope.matches("payments", {})
    assert not scope.matches("payments-2", {})


@pytest.mark.parametrize(
    "scope",
    [parse_scope(["payments"], None), parse_scope(None, {}), parse_scope(None, {"matchLabels": {"a": "b"}})],
)
def test_outside_any_namespace_only_unscoped_policies_apply(scope: NamespaceScope) -> None:
    assert not scope.unscoped
    assert not scope.matches(None, {})
    assert UNSCOPED.matches(None, {})
    assert UNSCOPED.unscoped


INVALID: dict[str, tuple[object, object]] = {
    "namespaces not a list": ("payments", None),
    "namespaces empty": ([], None),
    "namespace not a string": ([3], None),
    "namespace empty": ([""], None),
    "namespace uppercase": (["Payments"], None),
    "namespace with a dot": (["a.b"], None),
    "namespace too long": (["a" * 64], None),
    "namespace twice": (["a", "a"], None),
    "too many namespaces": ([f"ns-{i}" for i in range(MAX_NAMESPACES + 1)], None),
    "selector not a mapping": (None, ["team"]),
    "selector unknown field": (None, {"matchLabel": {"a": "b"}}),
    "label key invalid": (None, {"matchLabels": {"-team": "a"}}),
    "label key prefix invalid": (None, {"matchLabels": {"Acme.io/team": "a"}}),
    "label key empty prefix": (None, {"matchLabels": {"/team": "a"}}),
    "label key two slashes": (None, {"matchLabels": {"a/b/c": "a"}}),
    "label key name too long": (None, {"matchLabels": {"a" * 64: "a"}}),
    "label value invalid": (None, {"matchLabels": {"team": "pay ments"}}),
    "label value too long": (None, {"matchLabels": {"team": "a" * 64}}),
    "label value not a string": (None, {"matchLabels": {"team": 1}}),
    "operator unknown": (None, {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
    "operator lowercase": (None, {"matchExpressions": [{"key": "a", "operator": "in", "values": ["1"]}]}),
    "In without values": (None, {"matchExpressions": [{"key": "a", "operator": "In"}]}),
    "NotIn with empty values": (
        None,
        {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]},
    ),
    "Exists with values": (None, {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
    "expression unknown field": (None, {"matchExpressions": [{"key": "a", "operator": "Exists", "x": 1}]}),
    "expression without key": (None, {"matchExpressions": [{"operator": "Exists"}]}),
    "too many expressions": (
        None,
        {"matchExpressions": [{"key": "a", "operator": "Exists"}] * (MAX_MATCH_EXPRESSIONS + 1)},
    ),
}


@pytest.mark.parametrize(("namespaces", "selector"), INVALID.values(), ids=INVALID.keys())
def test_invalid_scope_is_refused(namespaces: object, selector: object) -> None:
    with pytest.raises(ScopeError):
        parse_scope(namespaces, selector)


@pytest.mark.parametrize(("namespaces", "selector"), INVALID.values(), ids=INVALID.keys())
def test_invalid_scope_makes_the_cluster_policy_invalid(namespaces: object, selector: object) -> None:
    spec: dict[str, object] = {}
    if namespaces is not None:
        spec["namespaces"] = namespaces
    if selector is not None:
        spec["namespaceSelector"] = selector
    with pytest.raises(PolicyError) as e:
        compile_policy(policy_doc(**spec))
    assert e.value.reason == Reason.POLICY_INVALID
    assert e.value.detail.startswith("ClusterImagePolicy acme-releases: spec.namespace")


def test_cluster_policy_carries_its_scope() -> None:
    policy = compile_policy(
        policy_doc(namespaces=["payments"], namespaceSelector={"matchLabels": {"env": "prod"}})
    )
    assert policy.matches_namespace("payments", {"env": "prod"})
    assert not policy.matches_namespace("payments", {})
    assert not policy.matches_namespace("web", {"env": "prod"})
    assert not policy.matches_namespace(None)
    assert compile_policy(policy_doc()).matches_namespace(None)


@pytest.mark.parametrize("field", ["namespaces", "namespaceSelector"])
@pytest.mark.parametrize("value", [["team-a"], {}, {"matchLabels": {"a": "b"}}])
def test_image_policy_cannot_carry_a_scope(field: str, value: object) -> None:
    doc = policy_doc(**{field: value})
    doc["kind"] = "ImagePolicy"
    doc["metadata"] = {"name": "extra", "namespace": "team-a"}
    with pytest.raises(PolicyError) as e:
        compile_policy(doc)
    assert e.value.reason == Reason.POLICY_INVALID
    assert f"spec.{field}" in e.value.detail


def test_image_policy_applies_only_in_its_namespace() -> None:
    doc = policy_doc()
    doc["kind"] = "ImagePolicy"
    doc["metadata"] = {"name": "extra", "namespace": "team-a"}
    policy = compile_policy(doc)
    assert policy.matches_namespace("team-a")
    assert not policy.matches_namespace("team-b")
    assert not policy.matches_namespace(None)


_LABEL_VALUE = st.from_regex(r"\A([a-z0-9]([-a-z0-9_.]{0,20}[a-z0-9])?)?\Z")
_LABELS = st.dictionaries(st.sampled_from(["team", "env", "acme.io/tier"]), _LABEL_VALUE, max_size=3)


@given(_LABELS, _LABELS)
def test_match_labels_selects_exactly_the_superset_namespaces(
    wanted: dict[str, str], labels: dict[str, str]
) -> None:
    expected = all(labels.get(k) == v for k, v in wanted.items())
    assert _selects({"matchLabels": wanted}, labels) is expected


@given(st.sampled_from(["In", "NotIn"]), st.lists(_LABEL_VALUE, min_size=1, max_size=4), _LABELS)
def test_in_and_not_in_are_complements_when_the_key_is_present(
    operator: str, values: list[str], labels: dict[str, str]
) -> None:
    labels = {**labels, "team": labels.get("team", "x")}
    selected = _selects(
        {"matchExpressions": [{"key": "team", "operator": operator, "values": values}]}, labels
    )
    assert selected is ((labels["team"] in values) == (operator == "In"))


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=20,
    ),
    st.recursive(
        st.none() | st.text(max_size=8),
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(
                st.sampled_from(["matchLabels", "matchExpressions", "key", "operator", "values", "team"]),
                c,
                max_size=4,
            )
        ),
        max_leaves=20,
    ),
)
def test_parser_raises_only_scope_error(namespaces: object, selector: object) -> None:
    try:
        scope = parse_scope(namespaces, selector)
    except ScopeError:
        return
    assert scope.matches("ns", {}) in (True, False)
