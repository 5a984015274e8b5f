"""Tests for controller/policy/policyset.py: loading YAML and choosing the policies for an image."""

from __future__ import annotations

import pytest

from controller.errors import PolicyError, Reason
from controller.policy.compiled import compile_policy
from controller.policy.policyset import (
    MAX_POLICY_DOCUMENTS,
    MAX_POLICY_YAML_BYTES,
    PolicySet,
    load_policies,
)
from tests.policy._builders import GITHUB_OAUTH, PHBELITZ, signature

CLUSTER = """\
apiVersion: imprimatur.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: %(name)s}
spec:
  images: [{glob: "%(glob)s"}]
  identities:
    - {issuer: "https://github.com/login/oauth", subject: "philipp.belitz@securesystems.de"}
"""

NAMESPACED = """\
apiVersion: imprimatur.dev/v1alpha1
kind: ImagePolicy
metadata: {name: %(name)s, namespace: %(namespace)s}
spec:
  images: [{glob: "%(glob)s"}]
  identities:
    - {issuer: "https://accounts.google.com", subject: "release@acme.com"}
"""


def _cluster(name: str, glob: str) -> str:
    return CLUSTER % {"name": name, "glob": glob}


def _namespaced(name: str, namespace: str, glob: str) -> str:
    return NAMESPACED % {"name": name, "namespace": namespace, "glob": glob}


def test_load_multi_document_yaml_skipping_empty_documents() -> None:
    text = "---\n" + _cluster("acme", "ghcr.io/acme/**") + "---\n---\n" + _namespaced("extra", "team-a", "**")
    policies = load_policies(text)
    assert [(p.kind, p.namespace, p.name) for p in policies] == [
        ("ClusterImagePolicy", None, "acme"),
        ("ImagePolicy", "team-a", "extra"),
    ]
    assert policies[0].identities[0].matches(signature(PHBELITZ, GITHUB_OAUTH))


BRIEF_EXAMPLE = """\
apiVersion: imprimatur.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: acme-releases}
spec:
  images: [{glob: "ghcr.io/acme/**"}]
  identities:
    - {issuer: "https://accounts.google.com", subject: "release@acme.com"}
    - {issuer: "https://token.actions.githubusercontent.com",
       subjectRegExp: "https://github.com/acme/.+/.github/workflows/release.yml@refs/tags/v.+"}
    - issuerRegExp: "https://token.actions.githubusercontent.com"
      subject: "..."
      claims: {githubWorkflowRepository: "acme/app", githubWorkflowTrigger: {regExp: "push|release"}}
  annotations: {env: prod}
  tlog: required
  mode: enforce
  trustRoot: public-good
  signatureRepository: registry.example/sigs/app
"""


def test_load_the_documented_example() -> None:
    (policy,) = load_policies(BRIEF_EXAMPLE)
    assert len(policy.identities) == 3
    assert dict(policy.annotations) == {"env": "prod"}
    assert policy.matches_image("ghcr.io/acme/app")
    assert policy.identities[0].matches(signature("release@acme.com", "https://accounts.google.com"))
    assert not policy.identities[0].matches(signature(PHBELITZ, GITHUB_OAUTH))


def test_empty_text_loads_nothing() -> None:
    assert load_policies("") == []
    assert load_policies("---\n# only a comment\n") == []


@pytest.mark.parametrize(
    "text",
    [
        _cluster("acme", "**") + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        _cluster("acme", "**") + "---\n- just\n- a list\n",
        _cluster("acme", "**") + "---\nplain scalar\n",
        "apiVersion: imprimatur.dev/v1alpha1\nkind: [unclosed\n",
        _cluster("acme", "Upper/Case"),
        # a duplicate key must not silently mean "the last one"
        _cluster("acme", "**").replace("metadata: {name: acme}", "metadata: {name: acme, name: other}"),
        "a: &x [*x]\n",
        "[" * 5000 + "]" * 5000,
    ],
    ids=[
        "non-policy kind",
        "list document",
        "scalar document",
        "yaml syntax error",
        "invalid glob",
        "duplicate key",
        "recursive alias",
        "deep nesting",
    ],
)
def test_bad_policy_yaml_is_policy_invalid(text: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policies(text)
    assert info.value.reason == Reason.POLICY_INVALID


def test_policy_yaml_size_is_bounded() -> None:
    text = _cluster("acme", "**") + "#" * MAX_POLICY_YAML_BYTES
    with pytest.raises(PolicyError) as info:
        load_policies(text)
    assert info.value.reason == Reason.POLICY_INVALID


def test_policy_document_count_is_bounded() -> None:
    text = "--- null\n" * (MAX_POLICY_DOCUMENTS + 1)
    with pytest.raises(PolicyError) as info:
        load_policies(text)
    assert info.value.reason == Reason.POLICY_INVALID


def _set(*texts: str) -> PolicySet:
    return PolicySet(load_policies("---\n".join(texts)))


def test_matching_combines_cluster_and_same_namespace_policies() -> None:
    policies = _set(
        _cluster("acme", "ghcr.io/acme/**"),
        _cluster("everything", "**"),
        _cluster("nginx", "nginx"),
        _namespaced("team-a-extra", "team-a", "ghcr.io/acme/*"),
        _namespaced("team-b-extra", "team-b", "ghcr.io/acme/**"),
    )
    names = [p.label for p in _governing(policies, "ghcr.io/acme/app", "team-a")]
    assert names == [
        "ClusterImagePolicy acme",
        "ClusterImagePolicy everything",
        "ImagePolicy team-a/team-a-extra",
    ]
    assert [p.name for p in _governing(policies, "ghcr.io/acme/app", None)] == ["acme", "everything"]
    assert [p.name for p in _governing(policies, "nginx:1.27", "team-b")] == ["everything", "nginx"]
    assert [p.name for p in _governing(policies, "ghcr.io/acme/x/y", "team-b")] == [
        "acme",
        "everything",
        "team-b-extra",
    ]


def _governing(policies: PolicySet, image: str, namespace: str | None) -> tuple[object, ...]:
    scope = policies.scope_for(image, namespace)
    return (*scope.cluster, *scope.namespaced)


def test_no_policy_matches() -> None:
    policies = _set(_cluster("acme", "ghcr.io/acme/**"), _namespaced("x", "team-a", "**"))
    assert _governing(policies, "quay.io/other/app", "team-b") == ()


def test_duplicate_policies_are_policy_invalid() -> None:
    with pytest.raises(PolicyError) as info:
        _set(_cluster("acme", "**"), _cluster("acme", "ghcr.io/**"))
    assert info.value.reason == Reason.POLICY_INVALID


def test_same_name_in_different_scopes_is_fine() -> None:
    policies = _set(
        _cluster("acme", "**"), _namespaced("acme", "team-a", "**"), _namespaced("acme", "team-b", "**")
    )
    assert len(policies) == 3
    assert [p.label for p in policies] == [
        "ClusterImagePolicy acme",
        "ImagePolicy team-a/acme",
        "ImagePolicy team-b/acme",
    ]


def test_yaml_and_kubernetes_object_compile_alike() -> None:
    (from_yaml,) = load_policies(_cluster("acme", "ghcr.io/acme/**"))
    from_object = compile_policy(
        {
            "apiVersion": "imprimatur.dev/v1alpha1",
            "kind": "ClusterImagePolicy",
            "metadata": {"name": "acme", "uid": "4a1c", "resourceVersion": "7"},
            "spec": {
                "images": [{"glob": "ghcr.io/acme/**"}],
                "identities": [{"issuer": GITHUB_OAUTH, "subject": PHBELITZ}],
            },
            "status": {},
        }
    )
    assert from_yaml == from_object
