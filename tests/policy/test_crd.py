"""Tests for controller/policy/crd.py: the strict CRD parser."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from controller.errors import PolicyError, Reason
from controller.policy.crd import (
    DEFAULT_TRUST_ROOT,
    MAX_ANNOTATIONS,
    MAX_IDENTITIES,
    MAX_REGEXP_LENGTH,
    MAX_STRING_LENGTH,
    StringMatchSpec,
    parse_policy,
)
from tests.policy._builders import ACTIONS, BASE_POLICY, GITHUB_OAUTH, GOOGLE, policy_doc

FULL_EXAMPLE: dict[str, object] = {
    "apiVersion": "imprimatur.dev/v1alpha1",
    "kind": "ClusterImagePolicy",
    "metadata": {"name": "acme-releases"},
    "spec": {
        "images": [{"glob": "ghcr.io/acme/**"}],
        "identities": [
            {"issuer": GOOGLE, "subject": "release@acme.com"},
            {
                "issuer": ACTIONS,
                "subjectRegExp": "https://github.com/acme/.+/.github/workflows/release.yml@refs/tags/v.+",
            },
            {
                "issuerRegExp": ACTIONS,
                "subject": "...",
                "claims": {
                    "githubWorkflowRepository": "acme/app",
                    "githubWorkflowTrigger": {"regExp": "push"},
                },
            },
        ],
        "annotations": {"env": "prod"},
        "tlog": "optional",
        "mode": "warn",
        "trustRoot": "staging",
        "signatureRepository": "registry.example/sigs/app",
    },
}


def test_full_example_parses_to_typed_fields() -> None:
    doc = parse_policy(FULL_EXAMPLE)
    assert (doc.kind, doc.name, doc.namespace) == ("ClusterImagePolicy", "acme-releases", None)
    assert [image.glob for image in doc.spec.images] == ["ghcr.io/acme/**"]
    first, second, third = doc.spec.identities
    assert first.issuer == StringMatchSpec(value=GOOGLE)
    assert first.subject == StringMatchSpec(value="release@acme.com")
    assert second.subject.reg_exp is not None
    assert second.subject.value is None
    assert third.issuer == StringMatchSpec(reg_exp=ACTIONS)
    assert dict(third.claims) == {
        "githubWorkflowRepository": StringMatchSpec(value="acme/app"),
        "githubWorkflowTrigger": StringMatchSpec(reg_exp="push"),
    }
    assert dict(doc.spec.annotations) == {"env": "prod"}
    assert (doc.spec.tlog, doc.spec.mode, doc.spec.trust_root) == ("optional", "warn", "staging")
    assert doc.spec.signature_repository == "registry.example/sigs/app"


def test_defaults() -> None:
    spec = parse_policy(BASE_POLICY).spec
    assert (spec.tlog, spec.mode, spec.trust_root) == ("required", "enforce", DEFAULT_TRUST_ROOT)
    assert spec.signature_repository is None
    assert dict(spec.annotations) == {}


def test_null_optional_fields_mean_absent() -> None:
    doc = policy_doc()
    for key in ("annotations", "tlog", "mode", "trustRoot", "signatureRepository"):
        doc["spec"][key] = None  # type: ignore[index]
    spec = parse_policy(doc).spec
    assert dict(spec.annotations) == {}
    assert (spec.tlog, spec.mode, spec.trust_root, spec.signature_repository) == (
        "required",
        "enforce",
        DEFAULT_TRUST_ROOT,
        None,
    )


def test_image_policy_is_namespaced() -> None:
    doc = copy.deepcopy(BASE_POLICY)
    doc["kind"] = "ImagePolicy"
    doc["metadata"] = {"name": "extra", "namespace": "team-a"}
    parsed = parse_policy(doc)
    assert (parsed.kind, parsed.namespace, parsed.label) == (
        "ImagePolicy",
        "team-a",
        "ImagePolicy team-a/extra",
    )


def test_kubernetes_object_metadata_and_status_are_ignored() -> None:
    doc = copy.deepcopy(BASE_POLICY)
    doc["metadata"] = {
        "name": "acme-releases",
        "uid": "0c2d6f0e-5f1a-4d8b-9e4c-1b2a3c4d5e6f",
        "resourceVersion": "4711",
        "generation": 2,
        "labels": {"app": "imprimatur"},
        "managedFields": [{"manager": "kubectl"}],
    }
    doc["status"] = {"observedGeneration": 2}
    assert parse_policy(doc).name == "acme-releases"


def _set(path: tuple[str | int, ...], value: object) -> Callable[[dict[str, object]], None]:
    def mutate(doc: dict[str, object]) -> None:
        node: object = doc
        for key in path[:-1]:
            node = node[key]  # type: ignore[index]
        if value is _DELETE:
            del node[path[-1]]  # type: ignore[attr-defined]
        else:
            node[path[-1]] = value  # type: ignore[index]

    return mutate


_DELETE = object()
ID0 = ("spec", "identities", 0)

INVALID: dict[str, Callable[[dict[str, object]], None]] = {
    "unknown top-level field": _set(("specs",), {}),
    "wrong apiVersion": _set(("apiVersion",), "policy.sigstore.dev/v1beta1"),
    "missing apiVersion": _set(("apiVersion",), _DELETE),
    "non-policy kind": _set(("kind",), "ConfigMap"),
    "missing metadata": _set(("metadata",), _DELETE),
    "missing name": _set(("metadata", "name"), _DELETE),
    "name not a k8s name": _set(("metadata", "name"), "Acme Releases"),
    "cluster policy with namespace": _set(("metadata", "namespace"), "default"),
    "missing spec": _set(("spec",), _DELETE),
    "spec not a mapping": _set(("spec",), ["images"]),
    "unknown spec field": _set(("spec", "identity"), []),
    "images missing": _set(("spec", "images"), _DELETE),
    "images empty": _set(("spec", "images"), []),
    "images a string": _set(("spec", "images"), "ghcr.io/acme/**"),
    "image entry a string": _set(("spec", "images"), ["ghcr.io/acme/**"]),
    "image glob not a string": _set(("spec", "images"), [{"glob": 7}]),
    "image glob empty": _set(("spec", "images"), [{"glob": ""}]),
    "image unknown field": _set(("spec", "images"), [{"glob": "**", "regex": ".*"}]),
    "identities missing": _set(("spec", "identities"), _DELETE),
    "identities empty": _set(("spec", "identities"), []),
    "identities a mapping": _set(("spec", "identities"), {"issuer": GITHUB_OAUTH}),
    "identity both subject and subjectRegExp": _set((*ID0, "subjectRegExp"), ".*"),
    "identity both issuer and issuerRegExp": _set((*ID0, "issuerRegExp"), ".*"),
    "identity without subject": _set((*ID0, "subject"), _DELETE),
    "identity without issuer": _set((*ID0, "issuer"), _DELETE),
    "identity unknown field": _set((*ID0, "subjectRegexp"), ".*"),
    "identity subject empty": _set((*ID0, "subject"), ""),
    "identity subject not a string": _set((*ID0, "subject"), ["a"]),
    "identity subject too long": _set((*ID0, "subject"), "a" * (MAX_STRING_LENGTH + 1)),
    "identity regexp too long": _set((*ID0, "issuerRegExp"), "a" * (MAX_REGEXP_LENGTH + 1)),
    "unknown claim": _set((*ID0, "claims"), {"githubWorkflowRepo": "acme/app"}),
    "claim value an int": _set((*ID0, "claims"), {"githubWorkflowTrigger": 1}),
    "claim matcher unknown field": _set((*ID0, "claims"), {"githubWorkflowTrigger": {"regexp": "push"}}),
    "claim matcher empty": _set((*ID0, "claims"), {"githubWorkflowTrigger": {}}),
    "claims a list": _set((*ID0, "claims"), ["githubWorkflowTrigger"]),
    "annotations a list": _set(("spec", "annotations"), ["env=prod"]),
    "annotation value an int": _set(("spec", "annotations"), {"replicas": 3}),
    "annotation value a bool": _set(("spec", "annotations"), {"enabled": True}),
    "annotation key not a string": _set(("spec", "annotations"), {1: "x"}),
    "too many annotations": _set(("spec", "annotations"), {f"k{i}": "v" for i in range(MAX_ANNOTATIONS + 1)}),
    "bad tlog": _set(("spec", "tlog"), "sometimes"),
    "bad mode": _set(("spec", "mode"), "audit"),
    "mode a bool": _set(("spec", "mode"), True),
    "trust root with spaces": _set(("spec", "trustRoot"), "public good"),
    "signature repository with tag": _set(("spec", "signatureRepository"), "ghcr.io/acme/sigs:latest"),
    "signature repository with digest": _set(("spec", "signatureRepository"), "ghcr.io/acme/sigs@sha256:00"),
    "signature repository upper case": _set(("spec", "signatureRepository"), "ghcr.io/Acme/sigs"),
    "too many identities": _set(
        ("spec", "identities"),
        [{"issuer": GOOGLE, "subject": f"u{i}@x.io"} for i in range(MAX_IDENTITIES + 1)],
    ),
}


@pytest.mark.parametrize("mutate", INVALID.values(), ids=INVALID.keys())
def test_invalid_policy_is_policy_invalid(mutate: Callable[[dict[str, object]], None]) -> None:
    doc = copy.deepcopy(BASE_POLICY)
    mutate(doc)
    with pytest.raises(PolicyError) as info:
        parse_policy(doc)
    assert info.value.reason == Reason.POLICY_INVALID


def test_image_policy_without_namespace_is_invalid() -> None:
    doc = copy.deepcopy(BASE_POLICY)
    doc["kind"] = "ImagePolicy"
    with pytest.raises(PolicyError) as info:
        parse_policy(doc)
    assert info.value.reason == Reason.POLICY_INVALID


@pytest.mark.parametrize("doc", [None, [], "kind: ClusterImagePolicy", 3])
def test_non_mapping_document_is_invalid(doc: object) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(doc)  # type: ignore[arg-type]
    assert info.value.reason == Reason.POLICY_INVALID


def test_subject_regexp_alone_is_valid() -> None:
    doc = policy_doc(identities=[{"issuer": GITHUB_OAUTH, "subjectRegExp": ".*@securesystems\\.de"}])
    (identity,) = parse_policy(doc).spec.identities
    assert identity.subject == StringMatchSpec(reg_exp=".*@securesystems\\.de")
