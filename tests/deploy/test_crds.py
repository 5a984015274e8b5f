"""The CRDs: generated from one source, structurally valid, and refusing what the API server would refuse.

CEL rules are evaluated for real with cel-python (the CEL standard library the API server's rules
here use: has(), ternaries, arithmetic), on objects that also go through OpenAPI validation, defaulting
and unknown-field refusal (tests/deploy/crdcheck.py).
"""

from __future__ import annotations

import copy
import itertools
import re
import subprocess
import sys
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy import crdcheck
from tests.deploy.helmrun import HACK, KUBE_VERSION

CRDS = crdcheck.load_crds()
POLICY_KINDS = ("ClusterImagePolicy", "ImagePolicy")

VALID_POLICY_SPEC: dict[str, Any] = {
    "images": [{"glob": "ghcr.io/acme/**"}],
    "identities": [
        {"issuer": "https://accounts.google.com", "subject": "release@acme.com"},
        {
            "issuerRegExp": r"^https://token\.actions\.githubusercontent\.com$",
            "subjectRegExp": r"^https://github\.com/acme/.*$",
            "claims": {"githubWorkflowRepository": "acme/app", "githubWorkflowTrigger": {"regExp": "push"}},
        },
    ],
    "annotations": {"env": "prod"},
    "signatureRepository": "registry.acme.com/signatures",
}


def _policy(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "p"}
    if kind == "ImagePolicy":
        metadata["namespace"] = "apps"
    return {"apiVersion": "imprimatur.dev/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}


def _trust_root(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "imprimatur.dev/v1alpha1",
        "kind": "TrustRoot",
        "metadata": {"name": "t"},
        "spec": spec,
    }


def test_crds_are_generated_from_hack_gen_crds() -> None:
    result = subprocess.run(
        [sys.executable, str(HACK / "gen-crds.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_three_crds_exist_with_their_scopes() -> None:
    scopes = {kind: crd["spec"]["scope"] for kind, crd in CRDS.items()}
    assert scopes == {
        "ClusterImagePolicy": "Cluster",
        "ImagePolicy": "Namespaced",
        "TrustRoot": "Cluster",
        "ImagePolicyException": "Namespaced",  # issue 8
    }
    for crd in CRDS.values():
        assert crd["spec"]["group"] == "imprimatur.dev"
        (version,) = crd["spec"]["versions"]
        assert version["name"] == "v1alpha1"
        assert version["served"] is True
        assert version["storage"] is True
        assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_crd_is_a_valid_kubernetes_object(kind: str) -> None:
    kubernetes_validate.validate(CRDS[kind], KUBE_VERSION, strict=True)


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schema_is_structural_and_bounded(kind: str) -> None:
    assert crdcheck.structural_problems(crdcheck.schema_of(CRDS[kind])) == []


def test_structural_check_catches_an_untyped_field_and_an_unbounded_string() -> None:
    schema = copy.deepcopy(crdcheck.schema_of(CRDS["TrustRoot"]))
    del schema["properties"]["spec"]["properties"]["inline"]["maxLength"]
    schema["properties"]["spec"]["properties"]["extra"] = {"description": "no type"}
    problems = crdcheck.structural_problems(schema)
    assert "$.spec.inline: string without maxLength" in problems
    assert "$.spec.extra: no type" in problems


def test_both_policy_kinds_share_one_spec() -> None:
    cluster, namespaced = (crdcheck.schema_of(CRDS[k]) for k in POLICY_KINDS)
    assert cluster["properties"]["spec"] == namespaced["properties"]["spec"]
    assert cluster["properties"]["status"] == namespaced["properties"]["status"]


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_cel_rule_compiles_and_sees_only_typed_fields(kind: str) -> None:
    found = list(crdcheck.rules(crdcheck.schema_of(CRDS[kind])))
    assert found, f"{kind} has no CEL rules"
    for rule in found:
        crdcheck.evaluate(rule.rule, {})  # compiles, and is total on an empty object
        hidden = crdcheck.referenced_fields(rule.rule) - crdcheck.cel_visible_fields(rule.node)
        assert not hidden, f"{rule.path}: {rule.rule!r} reads fields CEL cannot see: {hidden}"
        assert rule.message


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_status_conditions_have_the_metav1_condition_shape(kind: str) -> None:
    status = crdcheck.schema_of(CRDS[kind])["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert status["properties"]["observedGeneration"]["type"] == "integer"


def _columns(kind: str) -> dict[str, str]:
    (version,) = CRDS[kind]["spec"]["versions"]
    return {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}


def test_printer_columns() -> None:
    ready = '.status.conditions[?(@.type=="Ready")].status'
    for kind in POLICY_KINDS:
        assert (
            _columns(kind)
            == {
                "Mode": ".spec.mode",
                "Enforce-After": ".spec.enforceAfter",  # issue 8
                "Phase": '.status.conditions[?(@.type=="Enforcing")].message',  # issue 8: Warning until / Enforcing since
                "Images": ".spec.images[*].glob",
                "Ready": ready,
                "Age": ".metadata.creationTimestamp",
            }
        )
    assert _columns("ImagePolicyException") == {  # issue 8
        "Expires": ".spec.expires",
        "Status": ".status.state",
        "Reason": ".spec.reason",
        "Age": ".metadata.creationTimestamp",
    }
    assert _columns("TrustRoot") == {
        "Source": ".status.source",
        "Ready": ready,
        "Age": ".metadata.creationTimestamp",
    }


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_printer_columns_name_fields_of_the_schema(kind: str) -> None:
    schema = crdcheck.schema_of(CRDS[kind])
    for path in _columns(kind).values():
        if path.startswith(".metadata."):
            continue
        node = schema
        for part in re.sub(r"\[[^\]]*\]", "[]", path).lstrip(".").split("."):
            name = part.split("[", 1)[0]
            node = node["properties"][name]
            if "[" in part:
                node = node["items"]
        assert "type" in node, path


# --- policies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_the_documented_policy_is_accepted_and_defaulted(kind: str) -> None:
    obj = _policy(kind, VALID_POLICY_SPEC)
    assert crdcheck.validate_object(CRDS[kind], obj) == []
    spec = crdcheck.defaulted(CRDS[kind], obj)["spec"]
    assert (spec["tlog"], spec["mode"], spec["trustRoot"]) == ("required", "enforce", "public-good")


def _without(spec: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != key}


_BAD_SPECS: dict[str, dict[str, Any]] = {
    "no images": _without(VALID_POLICY_SPEC, "images"),
    "empty images": {**VALID_POLICY_SPEC, "images": []},
    "empty glob": {**VALID_POLICY_SPEC, "images": [{"glob": ""}]},
    "no identities": _without(VALID_POLICY_SPEC, "identities"),
    "empty identities": {**VALID_POLICY_SPEC, "identities": []},
    "bad mode": {**VALID_POLICY_SPEC, "mode": "audit"},
    "bad tlog": {**VALID_POLICY_SPEC, "tlog": "never"},
    "non-string annotation": {**VALID_POLICY_SPEC, "annotations": {"env": 1}},
    "unknown spec field": {**VALID_POLICY_SPEC, "keys": ["pem"]},
    "unknown identity field": {
        **VALID_POLICY_SPEC,
        "identities": [{"issuer": "i", "subject": "s", "san": "x"}],
    },
    "too many claims": {
        **VALID_POLICY_SPEC,
        "identities": [{"issuer": "i", "subject": "s", "claims": {f"c{i}": "v" for i in range(17)}}],
    },
    "bad trust root name": {**VALID_POLICY_SPEC, "trustRoot": "Not_A_Name"},
    "too many images": {**VALID_POLICY_SPEC, "images": [{"glob": f"r/{i}"} for i in range(65)]},
}


@pytest.mark.parametrize("kind", POLICY_KINDS)
@pytest.mark.parametrize("case", sorted(_BAD_SPECS))
def test_a_malformed_policy_is_refused(kind: str, case: str) -> None:
    assert crdcheck.validate_object(CRDS[kind], _policy(kind, _BAD_SPECS[case])) != []


_IDENTITY_FIELDS = {
    "issuer": "https://accounts.google.com",
    "issuerRegExp": "^https://.*$",
    "subject": "release@acme.com",
    "subjectRegExp": "^.*@acme\\.com$",
}


@pytest.mark.parametrize(
    "fields",
    [set(c) for n in range(len(_IDENTITY_FIELDS) + 1) for c in itertools.combinations(_IDENTITY_FIELDS, n)],
    ids=lambda f: "+".join(sorted(f)) or "none",
)
def test_identity_needs_exactly_one_issuer_form_and_exactly_one_subject_form(fields: set[str]) -> None:
    identity = {k: v for k, v in _IDENTITY_FIELDS.items() if k in fields}
    obj = _policy("ClusterImagePolicy", {**VALID_POLICY_SPEC, "identities": [identity]})
    one_issuer = len(fields & {"issuer", "issuerRegExp"}) == 1
    one_subject = len(fields & {"subject", "subjectRegExp"}) == 1
    errors = crdcheck.validate_object(CRDS["ClusterImagePolicy"], obj)
    assert (errors == []) == (one_issuer and one_subject), errors


def test_identity_rule_messages_name_the_fields() -> None:
    obj = _policy(
        "ClusterImagePolicy",
        {**VALID_POLICY_SPEC, "identities": [{"issuer": "a", "issuerRegExp": "b", "subject": "s"}]},
    )
    errors = crdcheck.validate_object(CRDS["ClusterImagePolicy"], obj)
    assert errors == ["$.spec.identities[0]: exactly one of issuer or issuerRegExp must be set"]


# --- trust roots --------------------------------------------------------------------------------------

_SOURCES = {
    "inline": '{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}',
    "configMapRef": {"name": "sigstore", "namespace": "imprimatur-system", "key": "trusted_root.json"},
    "secretRef": {"name": "sigstore", "namespace": "imprimatur-system", "key": "trusted_root.json"},
}


@pytest.mark.parametrize(
    "sources",
    [c for n in range(len(_SOURCES) + 1) for c in itertools.combinations(sorted(_SOURCES), n)],
    ids=lambda c: "+".join(c) or "none",
)
def test_trust_root_needs_exactly_one_source(sources: tuple[str, ...]) -> None:
    errors = crdcheck.validate_object(CRDS["TrustRoot"], _trust_root({k: _SOURCES[k] for k in sources}))
    assert (errors == []) == (len(sources) == 1), errors


@pytest.mark.parametrize(
    "ref",
    [
        {"name": "sigstore", "namespace": "ns"},
        {"name": "Bad_Name", "namespace": "ns", "key": "k"},
        {"name": "sigstore", "namespace": "a.b", "key": "k"},
        {"name": "sigstore", "namespace": "ns", "key": "bad/key"},
    ],
)
def test_trust_root_reference_must_be_complete_and_well_formed(ref: dict[str, str]) -> None:
    assert crdcheck.validate_object(CRDS["TrustRoot"], _trust_root({"secretRef": ref})) != []


def test_status_accepts_a_ready_condition() -> None:
    obj = _trust_root({"inline": "{}"})
    obj["status"] = {
        "observedGeneration": 1,
        "source": "inline",
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "TrustRootInvalid",
                "message": "TrustRootInvalid: no Fulcio CA",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
    }
    assert crdcheck.validate_object(CRDS["TrustRoot"], obj) == []
    obj["status"]["conditions"][0]["status"] = "Maybe"
    assert crdcheck.validate_object(CRDS["TrustRoot"], obj) != []
