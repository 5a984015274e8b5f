"""Tests for controller/policy/invalid.py: invalid policies are kept, and deny what they cover."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.errors import InputError, Reason
from controller.policy import (
    UNSCOPED,
    CompiledPolicy,
    InvalidPolicy,
    PolicySet,
    compile_policy_lenient,
    evaluate_invalid,
)
from tests.policy._builders import GITHUB_OAUTH, policy_doc

BAD_REGEX = [{"issuer": GITHUB_OAUTH, "subjectRegExp": r".*\Z"}]


def _invalid(doc: dict[str, object]) -> InvalidPolicy:
    policy = compile_policy_lenient(doc)
    assert isinstance(policy, InvalidPolicy)
    return policy


def test_valid_policy_compiles() -> None:
    assert isinstance(compile_policy_lenient(policy_doc()), CompiledPolicy)


def test_bad_regex_keeps_the_globs() -> None:
    policy = _invalid(policy_doc(identities=BAD_REGEX))
    assert (policy.kind, policy.name, policy.namespace) == ("ClusterImagePolicy", "acme-releases", None)
    assert policy.label == "ClusterImagePolicy acme-releases"
    assert policy.images is not None
    assert policy.matches_image("ghcr.io/acme/app:1")
    assert not policy.matches_image("docker.io/library/nginx")
    assert "subjectRegExp" in policy.detail


@pytest.mark.parametrize(
    "images",
    [
        [{"glob": "ghcr.io/acme/**"}, {"glob": ""}],  # one unusable glob: every image
        [{"glob": "ghcr.io/[a"}],
        [],
        "ghcr.io/acme/**",
        [{"pattern": "x"}],
        None,
    ],
)
def test_unusable_globs_cover_every_image(images: object) -> None:
    policy = _invalid(policy_doc(images=images, identities=BAD_REGEX))
    assert policy.images is None
    assert policy.matches_image("docker.io/library/nginx")
    with pytest.raises(InputError):
        policy.matches_image("NOT a reference")


def test_invalid_cluster_policy_keeps_a_valid_scope() -> None:
    policy = _invalid(policy_doc(identities=BAD_REGEX, namespaces=["payments"]))
    assert policy.matches_namespace("payments")
    assert not policy.matches_namespace("team-a")
    assert not policy.matches_namespace(None)


def test_invalid_scope_makes_it_apply_everywhere() -> None:
    policy = _invalid(policy_doc(namespaces=["Not Valid"]))
    assert policy.scope == UNSCOPED
    assert policy.matches_namespace("team-a") and policy.matches_namespace(None)


def test_invalid_image_policy_stays_in_its_namespace() -> None:
    doc = policy_doc(identities=BAD_REGEX)
    doc["kind"] = "ImagePolicy"
    doc["metadata"] = {"name": "extra", "namespace": "team-a"}
    policy = _invalid(doc)
    assert policy.label == "ImagePolicy team-a/extra"
    assert policy.matches_namespace("team-a") and not policy.matches_namespace("team-b")


def test_image_policy_without_namespace_counts_as_cluster_wide() -> None:
    doc = policy_doc()
    doc["kind"] = "ImagePolicy"
    policy = _invalid(doc)
    assert policy.kind == "ClusterImagePolicy"
    assert policy.matches_namespace(None)


def test_evaluate_invalid_never_passes_even_in_warn_mode() -> None:
    policy = _invalid(policy_doc(identities=BAD_REGEX, mode="warn"))
    result = evaluate_invalid(policy, "ghcr.io/acme/app:1")
    assert (result.passed, result.reason, result.mode) == (False, Reason.POLICY_INVALID, "enforce")
    assert result.policy == "ClusterImagePolicy acme-releases"
    assert result.detail.startswith(
        "ClusterImagePolicy acme-releases is invalid and denies the images it covers: spec."
    )


def test_policy_set_holds_both_kinds_and_rejects_duplicates() -> None:
    good = compile_policy_lenient(policy_doc())
    bad = compile_policy_lenient({**policy_doc(identities=BAD_REGEX), "metadata": {"name": "broken"}})
    policies = PolicySet([good, bad])
    assert len(policies) == 2
    assert policies.invalid == (bad,)
    assert policies.scope_for("ghcr.io/acme/app", None).cluster == (good, bad)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=12,
)
_FIELDS = st.sampled_from(["images", "identities", "namespaces", "namespaceSelector", "mode", "glob"])


@given(
    st.sampled_from(["ClusterImagePolicy", "ImagePolicy", None, 3]),
    _JSON,
    st.dictionaries(_FIELDS, _JSON, max_size=4),
)
def test_lenient_compile_never_raises(kind: object, metadata: object, spec: dict[str, object]) -> None:
    doc = {"apiVersion": "imprimatur.dev/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}
    policy = compile_policy_lenient(doc)
    assert isinstance(policy, CompiledPolicy | InvalidPolicy)
    if isinstance(policy, InvalidPolicy):
        assert evaluate_invalid(policy, "ghcr.io/acme/app").passed is False
