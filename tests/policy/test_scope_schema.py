"""The CRD schema (hack/gen-crds.py) and the scope parser (controller/policy/scope.py) agree.

The API server refuses at ``kubectl apply`` what the schema refuses; the controller refuses what the
parser refuses. For every case both must give the same verdict, so nothing the API server stores is
later found invalid by the controller for its scope, and nothing the controller would accept is
refused at the door. Checked offline with tests/deploy/crdcheck.py (OpenAPI plus the CEL rules).
"""

from __future__ import annotations

import copy

import pytest

from controller.errors import PolicyError
from controller.policy.compiled import compile_policy
from controller.policy.scope import MAX_MATCH_EXPRESSIONS, MAX_NAMESPACES
from tests.deploy import crdcheck
from tests.policy._builders import policy_doc

CRDS = crdcheck.load_crds()

SCOPES: dict[str, dict[str, object]] = {
    "names": {"namespaces": ["payments", "billing"]},
    "empty selector": {"namespaceSelector": {}},
    "match labels": {"namespaceSelector": {"matchLabels": {"acme.io/team": "payments", "env": ""}}},
    "all operators": {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "team", "operator": "In", "values": ["a", "b"]},
                {"key": "team", "operator": "NotIn", "values": ["c"]},
                {"key": "env", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist", "values": []},
            ]
        }
    },
    "both": {"namespaces": ["payments"], "namespaceSelector": {"matchLabels": {"env": "prod"}}},
    # refused by both
    "empty names": {"namespaces": []},
    "bad name": {"namespaces": ["Payments"]},
    "too many names": {"namespaces": [f"ns-{i}" for i in range(MAX_NAMESPACES + 1)]},
    "bad label value": {"namespaceSelector": {"matchLabels": {"team": "a b"}}},
    "bad operator": {
        "namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}
    },
    "In without values": {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
    "Exists with values": {
        "namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}
    },
    "bad key": {"namespaceSelector": {"matchExpressions": [{"key": "-a", "operator": "Exists"}]}},
    "unknown selector field": {"namespaceSelector": {"matchFields": {}}},
    "too many expressions": {
        "namespaceSelector": {
            "matchExpressions": [{"key": "a", "operator": "Exists"}] * (MAX_MATCH_EXPRESSIONS + 1)
        }
    },
}


def _controller_accepts(doc: dict[str, object]) -> bool:
    try:
        compile_policy(doc)
    except PolicyError:
        return False
    return True


@pytest.mark.parametrize("case", SCOPES)
def test_cluster_policy_scope_schema_and_parser_agree(case: str) -> None:
    doc = policy_doc(**copy.deepcopy(SCOPES[case]))
    api_accepts = not crdcheck.validate_object(CRDS["ClusterImagePolicy"], doc)
    assert api_accepts == _controller_accepts(doc), crdcheck.validate_object(CRDS["ClusterImagePolicy"], doc)


@pytest.mark.parametrize("case", ["names", "empty selector", "match labels"])
def test_image_policy_with_a_scope_is_refused_by_both(case: str) -> None:
    doc = policy_doc(**copy.deepcopy(SCOPES[case]))
    doc["kind"] = "ImagePolicy"
    doc["metadata"] = {"name": "extra", "namespace": "team-a"}
    problems = crdcheck.validate_object(CRDS["ImagePolicy"], doc)
    assert any("ClusterImagePolicy" in problem for problem in problems), problems
    assert not _controller_accepts(doc)


def test_duplicate_names_are_refused_by_both() -> None:
    # the API server refuses duplicates in a list-type set (crdcheck does not model that)
    spec = crdcheck.schema_of(CRDS["ClusterImagePolicy"])["properties"]["spec"]
    assert spec["properties"]["namespaces"]["x-kubernetes-list-type"] == "set"
    assert not _controller_accepts(policy_doc(namespaces=["a", "a"]))


def test_image_policy_without_a_scope_is_accepted_by_both() -> None:
    doc = policy_doc()
    doc["kind"] = "ImagePolicy"
    doc["metadata"] = {"name": "extra", "namespace": "team-a"}
    assert not crdcheck.validate_object(CRDS["ImagePolicy"], doc)
    assert _controller_accepts(doc)
