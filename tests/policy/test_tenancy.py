"""Tests for controller/policy/tenancy.py: the tenancy model, as a matrix written out by hand.

Each cell builds real policy documents, puts them in a PolicySet, asks it which policies govern the
image in the namespace (scope_for), evaluates each (evaluate_policy / evaluate_invalid) against the
same verified signature, and combines the results. The expected (allowed, reason) of every cell is
in TRUTH below, written by hand from the rules in the README, not computed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import pytest

from controller.errors import Reason
from controller.model import VerifiedSignature
from controller.policy import (
    EMPTY_LABELS,
    Combined,
    CompiledPolicy,
    InvalidPolicy,
    PolicyResult,
    PolicySet,
    combine,
    compile_policy_lenient,
    evaluate_invalid,
    evaluate_policy,
)
from tests.policy._builders import GITHUB_OAUTH, GOOGLE, GOOGLE_SA, PHBELITZ, signature

IMAGE = "ghcr.io/acme/app:1.0"
NAMESPACE = "team-a"
SIGNED = signature(PHBELITZ, GITHUB_OAUTH)  # the image's one verified signature

Y, N = True, False
V = Reason.VERIFIED
NMP = Reason.NO_MATCHING_POLICY
IM = Reason.IDENTITY_MISMATCH
AM = Reason.ANNOTATION_MISMATCH
PI = Reason.POLICY_INVALID


def _doc(kind: str, name: str, spec: Mapping[str, object], namespace: str | None = None) -> dict[str, object]:
    metadata: dict[str, object] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "imprimatur.dev/v1alpha1",
        "kind": kind,
        "metadata": metadata,
        "spec": {"images": [{"glob": "ghcr.io/acme/**"}], **copy.deepcopy(dict(spec))},
    }


TRUSTS_SIGNER = [{"issuer": GITHUB_OAUTH, "subjectRegExp": r".*@securesystems\.de"}]
TRUSTS_OTHER = [{"issuer": GOOGLE, "subject": GOOGLE_SA}]
EXACT_SIGNER = [{"issuer": GITHUB_OAUTH, "subject": PHBELITZ}]
ANYONE = [{"issuerRegExp": ".*", "subjectRegExp": ".*"}]
PYTHON_ONLY = [{"issuer": GITHUB_OAUTH, "subjectRegExp": r"(?=x).*"}]  # look-ahead: not RE2

CLUSTER: dict[str, Mapping[str, object] | None] = {
    "no-cluster": None,
    "cluster-pass": {"identities": TRUSTS_SIGNER},
    "cluster-fail": {"identities": TRUSTS_OTHER},
    "cluster-warn-fail": {"identities": TRUSTS_OTHER, "mode": "warn"},
    "cluster-invalid": {"identities": PYTHON_ONLY},
}
NAMESPACED: dict[str, Mapping[str, object] | None] = {
    "no-ns": None,
    "ns-strict-pass": {"identities": EXACT_SIGNER},
    "ns-strict-fail": {"identities": EXACT_SIGNER, "annotations": {"env": "prod"}},
    "ns-loose": {"identities": ANYONE},
    "ns-warn-fail": {"identities": EXACT_SIGNER, "annotations": {"env": "prod"}, "mode": "warn"},
    "ns-invalid": {"identities": PYTHON_ONLY},
}

_NS = ("no-ns", "ns-strict-pass", "ns-strict-fail", "ns-loose", "ns-warn-fail", "ns-invalid")
# (allowed, reason) per namespaced case, in the order of _NS, per (cluster case, default).
TRUTH: dict[tuple[str, str], tuple[tuple[bool, Reason], ...]] = {
    ("no-cluster", "deny"): ((N, NMP), (N, NMP), (N, NMP), (N, NMP), (N, NMP), (N, NMP)),
    ("no-cluster", "allow"): ((Y, NMP), (Y, V), (N, AM), (Y, V), (Y, NMP), (N, PI)),
    ("cluster-pass", "deny"): ((Y, V), (Y, V), (N, AM), (Y, V), (Y, V), (N, PI)),
    ("cluster-pass", "allow"): ((Y, V), (Y, V), (N, AM), (Y, V), (Y, V), (N, PI)),
    ("cluster-fail", "deny"): ((N, IM), (N, IM), (N, IM), (N, IM), (N, IM), (N, IM)),
    ("cluster-fail", "allow"): ((N, IM), (N, IM), (N, IM), (N, IM), (N, IM), (N, IM)),
    ("cluster-warn-fail", "deny"): ((Y, IM), (Y, V), (N, AM), (Y, V), (Y, IM), (N, PI)),
    ("cluster-warn-fail", "allow"): ((Y, IM), (Y, V), (N, AM), (Y, V), (Y, IM), (N, PI)),
    ("cluster-invalid", "deny"): ((N, PI), (N, PI), (N, PI), (N, PI), (N, PI), (N, PI)),
    ("cluster-invalid", "allow"): ((N, PI), (N, PI), (N, PI), (N, PI), (N, PI), (N, PI)),
}

CELLS = [
    pytest.param(cluster, ns, default, *TRUTH[(cluster, default)][i], id=f"{cluster}-{ns}-{default}")
    for (cluster, default) in TRUTH
    for i, ns in enumerate(_NS)
]


def _evaluate(
    policy: CompiledPolicy | InvalidPolicy, verified: tuple[VerifiedSignature, ...]
) -> PolicyResult:
    if isinstance(policy, InvalidPolicy):
        return evaluate_invalid(policy, IMAGE)
    return evaluate_policy(policy, verified, (), IMAGE)


def decide(
    docs: list[dict[str, object]],
    *,
    default: str,
    namespace: str | None = NAMESPACE,
    labels: Mapping[str, str] = EMPTY_LABELS,
    verified: tuple[VerifiedSignature, ...] = (SIGNED,),
) -> Combined:
    """The whole pure path: compile leniently, choose, evaluate, combine."""
    policies = PolicySet([compile_policy_lenient(doc) for doc in docs])
    matching = policies.scope_for(IMAGE, namespace, labels)
    assert default in ("deny", "allow")
    return combine(
        IMAGE,
        [_evaluate(p, verified) for p in matching.cluster],
        [_evaluate(p, verified) for p in matching.namespaced],
        default_decision="deny" if default == "deny" else "allow",
    )


def _docs(cluster: str, ns: str) -> list[dict[str, object]]:
    docs = []
    cluster_spec, ns_spec = CLUSTER[cluster], NAMESPACED[ns]
    if cluster_spec is not None:
        docs.append(_doc("ClusterImagePolicy", "acme", cluster_spec))
    if ns_spec is not None:
        docs.append(_doc("ImagePolicy", "extra", ns_spec, NAMESPACE))
    return docs


@pytest.mark.parametrize(("cluster", "ns", "default", "allowed", "reason"), CELLS)
def test_tenancy_matrix(cluster: str, ns: str, default: str, allowed: bool, reason: Reason) -> None:
    combined = decide(_docs(cluster, ns), default=default)
    assert (combined.allowed, combined.reason) == (allowed, reason)
    assert combined.policies == tuple(
        label
        for label, present in (
            ("ClusterImagePolicy acme", CLUSTER[cluster] is not None),
            (f"ImagePolicy {NAMESPACE}/extra", NAMESPACED[ns] is not None),
        )
        if present
    )
    assert bool(combined.matched) == (combined.allowed and combined.reason == Reason.VERIFIED)


@pytest.mark.parametrize(("cluster", "ns", "default", "allowed", "reason"), CELLS)
def test_the_namespaced_policy_never_admits_what_the_cluster_level_denies(
    cluster: str, ns: str, default: str, allowed: bool, reason: Reason
) -> None:
    without = decide(_docs(cluster, "no-ns"), default=default)
    with_ns = decide(_docs(cluster, ns), default=default)
    assert without.allowed or not with_ns.allowed


def test_a_loose_image_policy_does_not_admit_an_image_no_cluster_policy_covers() -> None:
    # issue 10, finding 1: "**" with ".*" identities in team-a, no cluster policy, default deny
    attacker = signature("eve@attacker.example", "https://attacker.example")
    doc = _doc("ImagePolicy", "open", {"identities": ANYONE}, NAMESPACE)
    doc["spec"] = {**doc["spec"], "images": [{"glob": "**"}]}  # type: ignore[dict-item]
    combined = decide([doc], default="deny", verified=(attacker,))
    assert (combined.allowed, combined.reason) == (False, Reason.NO_MATCHING_POLICY)
    assert "ImagePolicy team-a/open" in combined.detail


def test_a_warn_mode_image_policy_does_not_admit_an_unsigned_image() -> None:
    doc = _doc("ImagePolicy", "warn", {"identities": ANYONE, "mode": "warn"}, NAMESPACE)
    combined = decide([doc], default="deny", verified=())
    assert (combined.allowed, combined.reason) == (False, Reason.NO_MATCHING_POLICY)


def test_default_allow_warns_and_names_the_image() -> None:
    combined = decide([], default="allow")
    assert combined.allowed
    assert combined.warnings == (
        f"{IMAGE}: no ClusterImagePolicy matches; allowed by the configured default",
    )


def test_warn_mode_image_policy_warns_about_its_own_requirement() -> None:
    combined = decide(_docs("cluster-pass", "ns-warn-fail"), default="deny")
    assert combined.allowed and combined.reason == Reason.VERIFIED
    assert len(combined.warnings) == 1
    assert combined.warnings[0].startswith(f"ImagePolicy {NAMESPACE}/extra (warn mode): AnnotationMismatch")


def test_several_failures_name_the_first_policy_and_count_the_others() -> None:
    combined = decide(_docs("cluster-fail", "ns-strict-fail"), default="deny")
    assert combined.reason == Reason.IDENTITY_MISMATCH
    assert "(policy ClusterImagePolicy acme; 1 other policy also failed)" in combined.detail


def test_invalid_policy_names_itself_and_its_error() -> None:
    combined = decide(_docs("cluster-invalid", "no-ns"), default="allow")
    assert combined.detail.startswith("ClusterImagePolicy acme is invalid")
    assert "spec.identities[0].subjectRegExp" in combined.detail


def test_transient_iff_the_chosen_failure_is() -> None:
    transient = PolicyResult("ClusterImagePolicy a", False, Reason.REGISTRY_UNAVAILABLE, "x", transient=True)
    evidence = PolicyResult("ClusterImagePolicy b", False, Reason.SIGNATURE_INVALID, "y")
    assert combine(IMAGE, [transient, evidence], [], default_decision="deny").transient
    assert not combine(IMAGE, [evidence, transient], [], default_decision="deny").transient


def test_matched_signatures_are_unique() -> None:
    docs = [
        _doc("ClusterImagePolicy", "a", {"identities": TRUSTS_SIGNER}),
        _doc("ClusterImagePolicy", "b", {"identities": EXACT_SIGNER}),
    ]
    combined = decide(docs, default="deny")
    assert combined.matched == (SIGNED,)
    assert combined.detail == f"signed by {PHBELITZ} ({GITHUB_OAUTH}), rekor log index 25579"


# --- namespace-scoped cluster policies: rows added to the matrix
FAILING_SCOPED_BY_NAME = {"identities": TRUSTS_OTHER, "namespaces": ["payments"]}
FAILING_SCOPED_BY_LABEL = {
    "identities": TRUSTS_OTHER,
    "namespaceSelector": {"matchLabels": {"team": "payments"}},
}
PASSING_SCOPED = {"identities": TRUSTS_SIGNER, "namespaces": ["payments"]}
INVALID_SCOPED = {"identities": PYTHON_ONLY, "namespaces": ["payments"]}

SCOPED_ROWS = [
    # (spec, namespace, labels, default, allowed, reason)
    pytest.param(FAILING_SCOPED_BY_NAME, "payments", {}, "deny", N, IM, id="names-in-scope"),
    pytest.param(FAILING_SCOPED_BY_NAME, "team-a", {}, "deny", N, NMP, id="names-out-of-scope-deny"),
    pytest.param(FAILING_SCOPED_BY_NAME, "team-a", {}, "allow", Y, NMP, id="names-out-of-scope-allow"),
    pytest.param(FAILING_SCOPED_BY_NAME, None, {}, "deny", N, NMP, id="names-outside-any-namespace"),
    pytest.param(
        FAILING_SCOPED_BY_LABEL, "billing", {"team": "payments"}, "allow", N, IM, id="selector-match"
    ),
    pytest.param(
        FAILING_SCOPED_BY_LABEL, "billing", {"team": "web"}, "allow", Y, NMP, id="selector-no-match"
    ),
    pytest.param(FAILING_SCOPED_BY_LABEL, "billing", {}, "allow", Y, NMP, id="selector-no-labels"),
    pytest.param(FAILING_SCOPED_BY_LABEL, "billing", {}, "deny", N, NMP, id="selector-no-labels-deny"),
    pytest.param(PASSING_SCOPED, "payments", {}, "deny", Y, V, id="passing-in-scope"),
    pytest.param(PASSING_SCOPED, "team-a", {}, "deny", N, NMP, id="passing-out-of-scope"),
    pytest.param(INVALID_SCOPED, "payments", {}, "allow", N, PI, id="invalid-in-scope"),
    pytest.param(INVALID_SCOPED, "team-a", {}, "allow", Y, NMP, id="invalid-out-of-scope"),
]


@pytest.mark.parametrize(("spec", "namespace", "labels", "default", "allowed", "reason"), SCOPED_ROWS)
def test_namespace_scoped_cluster_policy(
    spec: Mapping[str, object],
    namespace: str | None,
    *,
    labels: Mapping[str, str],
    default: str,
    allowed: bool,
    reason: Reason,
) -> None:
    combined = decide(
        [_doc("ClusterImagePolicy", "payments-only", spec)],
        default=default,
        namespace=namespace,
        labels=labels,
    )
    assert (combined.allowed, combined.reason) == (allowed, reason)


def test_out_of_scope_policy_falls_to_the_other_cluster_policies() -> None:
    docs = [
        _doc("ClusterImagePolicy", "payments-only", FAILING_SCOPED_BY_NAME),
        _doc("ClusterImagePolicy", "everyone", {"identities": TRUSTS_SIGNER}),
    ]
    assert decide(docs, default="deny", namespace="team-a").allowed
    in_scope = decide(docs, default="deny", namespace="payments")
    assert (in_scope.allowed, in_scope.reason) == (False, Reason.IDENTITY_MISMATCH)


def test_unscoped_cluster_policy_applies_outside_any_namespace() -> None:
    combined = decide(_docs("cluster-pass", "no-ns"), default="deny", namespace=None)
    assert (combined.allowed, combined.reason) == (True, Reason.VERIFIED)
