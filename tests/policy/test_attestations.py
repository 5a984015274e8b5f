"""Signatures vs attestations, ``attestations:`` entries, key identities, and the tenancy rules for them."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controller.errors import PolicyError, Reason
from controller.model import Failure, VerifiedSignature
from controller.policy import PolicySet, combine, compile_policy, evaluate_policy, policy_from_flags
from controller.policy import attestations as attestations_module
from controller.policy.keys import parse_public_key
from tests.policy._builders import DIGEST, GITHUB_OAUTH, GOOGLE, GOOGLE_SA, PHBELITZ, policy_doc, signature

IMAGE = "ghcr.io/acme/app@" + str(DIGEST)
SLSA = "https://slsa.dev/provenance/v1"
GHA = "https://actions.github.io/buildtypes/workflow/v1"


def _pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


PEM = _pem()
OTHER_PEM = _pem()
KEY_ID = parse_public_key(PEM.encode(), "t").key_id


def statement(build_type: str = GHA, digest_hex: str = DIGEST.hex, **predicate: Any) -> bytes:
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "ghcr.io/acme/app", "digest": {"sha256": digest_hex}}],
            "predicateType": SLSA,
            "predicate": {"buildDefinition": {"buildType": build_type}, **predicate},
        }
    ).encode()


def attestation(
    subject: str = PHBELITZ, issuer: str = GITHUB_OAUTH, *, data: bytes | None = None, key_id: str = ""
) -> VerifiedSignature:
    return dataclasses.replace(
        signature(subject, issuer),
        kind="attestation",
        predicate_type=SLSA,
        statement=statement() if data is None else data,
        key_id=key_id,
    )


def keyed(key_id: str = KEY_ID, *, tlog: bool = True) -> VerifiedSignature:
    return dataclasses.replace(signature("", "", tlog=tlog), key_id=key_id)


def entry(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "provenance",
        "predicateType": SLSA,
        "conditions": [
            {
                "expression": f'predicate.buildDefinition.buildType == "{GHA}"',
                "message": "built by GitHub Actions",
            }
        ],
    }
    base.update(overrides)
    return base


def evaluate(doc: dict[str, object], *sigs: VerifiedSignature, failures: tuple[Failure, ...] = ()) -> Any:
    return evaluate_policy(compile_policy(doc), sigs, failures, IMAGE)


# --- 1. only a signature satisfies identities


def test_an_attestation_by_a_trusted_identity_is_not_a_signature() -> None:
    result = evaluate(policy_doc(), attestation())
    assert not result.passed
    assert result.reason == Reason.SIGNATURE_NOT_FOUND
    assert "not a signature" in result.detail


def test_a_signature_still_satisfies_identities() -> None:
    assert evaluate(policy_doc(), signature()).reason == Reason.VERIFIED


# --- 2. attestations: entries


@pytest.mark.parametrize(
    ("sigs", "reason"),
    [
        ((signature(), attestation()), Reason.VERIFIED),
        ((signature(),), Reason.ATTESTATION_MISSING),
        ((signature(), attestation(GOOGLE_SA, GOOGLE)), Reason.ATTESTATION_INVALID),  # wrong signer
        (
            (signature(), attestation(data=statement("https://evil.example/build"))),
            Reason.ATTESTATION_CONDITION_FAILED,
        ),
        ((signature(), attestation(data=statement(digest_hex="0" * 64))), Reason.ATTESTATION_INVALID),
        ((signature(), attestation(data=b"not json")), Reason.ATTESTATION_INVALID),
        ((attestation(),), Reason.SIGNATURE_NOT_FOUND),  # the attestation alone admits nothing
    ],
)
def test_attestation_entry_reasons(sigs: tuple[VerifiedSignature, ...], reason: Reason) -> None:
    result = evaluate(policy_doc(attestations=[entry()]), *sigs)
    assert result.reason == reason
    assert result.passed is (reason == Reason.VERIFIED)


def test_a_failed_condition_names_the_policy_the_entry_and_the_message() -> None:
    result = evaluate(policy_doc(attestations=[entry()]), signature(), attestation(data=statement("x")))
    assert "ClusterImagePolicy acme-releases" in result.detail
    assert "attestation provenance" in result.detail
    assert "built by GitHub Actions" in result.detail


def test_an_attestation_that_failed_verification_is_invalid_not_missing() -> None:
    failure = Failure(Reason.ATTESTATION_INVALID, "bad DSSE signature", IMAGE)
    result = evaluate(policy_doc(attestations=[entry()]), signature(), failures=(failure,))
    assert result.reason == Reason.ATTESTATION_INVALID


def test_every_entry_must_be_met() -> None:
    second = entry(name="sbom", predicateType="https://spdx.dev/Document", conditions=None)
    del second["conditions"]
    result = evaluate(policy_doc(attestations=[entry(), second]), signature(), attestation())
    assert result.reason == Reason.ATTESTATION_MISSING
    assert "attestation sbom" in result.detail


def test_entry_identities_replace_the_policy_identities() -> None:
    doc = policy_doc(attestations=[entry(identities=[{"issuer": GOOGLE, "subject": GOOGLE_SA}])])
    assert evaluate(doc, signature(), attestation()).reason == Reason.ATTESTATION_INVALID
    assert evaluate(doc, signature(), attestation(GOOGLE_SA, GOOGLE)).reason == Reason.VERIFIED


def test_warn_mode_admits_with_a_warning() -> None:
    result = evaluate(policy_doc(mode="warn", attestations=[entry()]), signature())
    assert result.passed
    assert result.reason == Reason.ATTESTATION_MISSING
    assert any("AttestationMissing" in w for w in result.warnings)


def test_an_attestation_without_a_tlog_entry_does_not_count_when_the_tlog_is_required() -> None:
    untlogged = dataclasses.replace(attestation(), log_index=None)
    result = evaluate(policy_doc(attestations=[entry()]), signature(), untlogged)
    assert result.reason == Reason.ATTESTATION_MISSING


def test_compiled_policy_and_matching_say_what_the_engine_must_fetch() -> None:
    plain = compile_policy(policy_doc())
    attested = compile_policy(policy_doc(attestations=[entry()]))
    assert not plain.needs_attestations
    assert attested.needs_attestations
    assert attested.predicate_types == frozenset({SLSA})
    matching = PolicySet([plain, dataclasses.replace(attested, name="other")]).scope_for(
        "ghcr.io/acme/app", None
    )
    assert matching.needs_attestations
    assert matching.predicate_types == frozenset({SLSA})
    assert PolicySet([plain]).scope_for("ghcr.io/acme/app", None).needs_attestations is False


@pytest.mark.parametrize(
    ("attestations", "problem"),
    [
        ([entry(), entry()], "more than once"),
        ([entry(predicateType="not a uri")], "not a URI"),
        ([entry(conditions=[{"expression": "foo(1)"}])], "invalid CEL"),
        ([entry(conditions=[{"expression": "request.object.x == 1"}])], "unknown variable"),
        ([entry(extra=1)], "unknown field"),
        ([entry(name="Bad_Name")], "not a name"),
        ([entry()] * 17, "at most 16"),
        ([entry(conditions=[{"expression": "true"}] * 17)], "at most 16"),
    ],
)
def test_invalid_attestations_are_policy_invalid(attestations: list[Any], problem: str) -> None:
    with pytest.raises(PolicyError, match=problem) as caught:
        compile_policy(policy_doc(attestations=attestations))
    assert caught.value.reason == Reason.POLICY_INVALID


# --- 4. key identities


def test_a_key_identity_admits_only_its_key() -> None:
    doc = policy_doc(identities=[{"key": {"pem": PEM}}])
    assert evaluate(doc, keyed()).reason == Reason.VERIFIED
    other = parse_public_key(OTHER_PEM.encode(), "t").key_id
    assert evaluate(doc, keyed(other)).reason == Reason.IDENTITY_MISMATCH
    assert evaluate(doc, signature()).reason == Reason.IDENTITY_MISMATCH  # keyless never satisfies a key


def test_a_key_signed_artifact_never_satisfies_a_keyless_identity() -> None:
    # even a keyless identity that would match an empty subject and issuer
    doc = policy_doc(identities=[{"issuerRegExp": ".*", "subjectRegExp": ".*"}])
    assert evaluate(doc, keyed()).reason == Reason.IDENTITY_MISMATCH


def test_the_tlog_setting_applies_to_key_identities() -> None:
    required = policy_doc(identities=[{"key": {"pem": PEM}}])
    assert evaluate(required, keyed(tlog=False)).reason == Reason.TLOG_ENTRY_MISSING
    optional = policy_doc(identities=[{"key": {"pem": PEM}}], tlog="optional")
    assert evaluate(optional, keyed(tlog=False)).reason == Reason.VERIFIED


def test_trusted_keys_come_from_identities_and_entries() -> None:
    doc = policy_doc(
        identities=[{"key": {"pem": PEM}}],
        attestations=[entry(identities=[{"key": {"pem": OTHER_PEM}}, {"key": {"pem": PEM}}])],
    )
    compiled = compile_policy(doc)
    assert [k.pem.decode() for k in compiled.trusted_keys] == [PEM, OTHER_PEM]
    matching = PolicySet([compiled]).scope_for("ghcr.io/acme/app", None)
    assert len(matching.trusted_keys) == 2
    assert compile_policy(policy_doc()).trusted_keys == ()


def test_secret_ref_keys_go_through_the_resolver_and_fail_closed() -> None:
    doc = policy_doc(identities=[{"key": {"secretRef": {"name": "cosign", "key": "cosign.pub"}}}])
    seen: list[tuple[str, str]] = []

    def resolver(name: str, key: str) -> bytes | None:
        seen.append((name, key))
        return PEM.encode()

    assert compile_policy(doc, resolver).trusted_keys[0].pem.decode() == PEM
    assert seen == [("cosign", "cosign.pub")]
    with pytest.raises(PolicyError, match="not found"):
        compile_policy(doc)  # no resolver: unresolved
    with pytest.raises(PolicyError, match=r"not a readable public key|PUBLIC KEY"):
        compile_policy(doc, lambda name, key: b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


@pytest.mark.parametrize(
    ("identity", "problem"),
    [
        ({"key": {"pem": PEM}, "issuer": GOOGLE}, "unknown field"),
        ({"key": {}}, "exactly one"),
        ({"key": {"pem": PEM, "secretRef": {"name": "a", "key": "b"}}}, "exactly one"),
        ({"key": {"secretRef": {"name": "A_B", "key": "b"}}}, "Secret name"),
        ({"key": {"pem": "garbage"}}, "PEM"),
    ],
)
def test_invalid_key_identities(identity: dict[str, Any], problem: str) -> None:
    with pytest.raises(PolicyError, match=problem):
        compile_policy(policy_doc(identities=[identity]))


def test_key_flag_builds_a_key_identity() -> None:
    policy = policy_from_flags(key_pem=PEM.encode())
    assert [k.pem.decode() for k in policy.trusted_keys] == [PEM]
    assert evaluate_policy(policy, (keyed(),), (), IMAGE).reason == Reason.VERIFIED
    with pytest.raises(PolicyError, match="cannot be combined"):
        policy_from_flags(key_pem=PEM.encode(), certificate_identity="x", certificate_oidc_issuer="y")


# --- tenancy: an ImagePolicy's attestations and keys only add requirements


def _namespaced(**spec: Any) -> dict[str, object]:
    doc = policy_doc(**spec)
    doc["kind"] = "ImagePolicy"
    doc["metadata"] = {"name": "team", "namespace": "team-a"}
    return doc


def _decide(cluster: dict[str, object], namespaced: dict[str, object], *sigs: VerifiedSignature) -> Any:
    c = evaluate_policy(compile_policy(cluster), sigs, (), IMAGE)
    n = evaluate_policy(compile_policy(namespaced), sigs, (), IMAGE)
    return combine(IMAGE, [c], [n], default_decision="deny")


def test_an_image_policy_trusting_a_key_cannot_admit_what_the_cluster_denies() -> None:
    decision = _decide(policy_doc(), _namespaced(identities=[{"key": {"pem": PEM}}]), keyed())
    assert not decision.allowed
    assert decision.reason == Reason.IDENTITY_MISMATCH


def test_an_image_policy_attestation_cannot_stand_in_for_a_cluster_signature() -> None:
    decision = _decide(policy_doc(), _namespaced(attestations=[entry()]), attestation())
    assert not decision.allowed
    assert decision.reason == Reason.SIGNATURE_NOT_FOUND


def test_an_image_policy_attestation_adds_a_requirement() -> None:
    decision = _decide(policy_doc(), _namespaced(attestations=[entry()]), signature())
    assert not decision.allowed
    assert decision.reason == Reason.ATTESTATION_MISSING
    allowed = _decide(policy_doc(), _namespaced(attestations=[entry()]), signature(), attestation())
    assert allowed.allowed


def test_a_pathological_image_policy_condition_is_bounded() -> None:
    hostile = "predicate.l.map(a, predicate.l.map(b, a + b)).size() > 0"
    costly = [{"expression": hostile, "message": f"m{i}"} for i in range(16)]
    entries = [entry(name=f"e{i}", conditions=costly) for i in range(16)]
    big = attestation(data=statement(l=list(range(100_000))))
    started = time.perf_counter()
    result = evaluate(_namespaced(attestations=entries), signature(), big)
    assert time.perf_counter() - started < 2.0
    assert result.reason == Reason.ATTESTATION_CONDITION_FAILED
    assert "exceed" in result.detail


# --- 5. an attestation that could not be fetched is not "missing"

ATT_FETCH = (
    "fetching the attestations of ghcr.io/acme/app: manifest sha256-"
    + DIGEST.hex
    + ".att has 5000 layers, more than 64"
)


@pytest.mark.parametrize("reason", [Reason.LIMIT_EXCEEDED, Reason.REGISTRY_UNAVAILABLE])
def test_an_unreadable_att_tag_carries_its_fetch_reason_transient(reason: Reason) -> None:
    unread = Failure(reason, ATT_FETCH, IMAGE, transient=True)
    result = evaluate(policy_doc(attestations=[entry()]), signature(), failures=(unread,))
    assert not result.passed
    assert result.reason == reason
    assert result.transient
    assert "attestation provenance" in result.detail  # names the entry
    assert ".att" in result.detail  # and what could not be read


def test_a_fetch_failure_outranks_an_invalid_attestation_but_not_a_verified_one() -> None:
    unread = Failure(Reason.REGISTRY_UNAVAILABLE, ATT_FETCH, IMAGE, transient=True)
    invalid = Failure(Reason.ATTESTATION_INVALID, "referrer: bad", IMAGE)
    doc = policy_doc(attestations=[entry()])
    both = evaluate(doc, signature(), failures=(invalid, unread))
    assert (both.reason, both.transient) == (Reason.REGISTRY_UNAVAILABLE, True)
    # the attestation verified from another source: the unread .att does not matter
    met = evaluate(doc, signature(), attestation(), failures=(unread,))
    assert (met.reason, met.passed, met.transient) == (Reason.VERIFIED, True, False)
    # a verified attestation that fails its condition is judged on its merits (not transient)
    bad = attestation(data=statement("https://evil.example/build"))
    failed = evaluate(doc, signature(), bad, failures=(unread,))
    assert (failed.reason, failed.transient) == (Reason.ATTESTATION_CONDITION_FAILED, False)


def test_without_fetch_failures_absent_is_still_missing_and_not_transient() -> None:
    invalid = Failure(Reason.ATTESTATION_INVALID, "referrer: bad", IMAGE)
    result = evaluate(policy_doc(attestations=[entry()]), signature(), failures=(invalid,))
    assert (result.reason, result.transient) == (Reason.ATTESTATION_INVALID, False)
    missing = evaluate(policy_doc(attestations=[entry()]), signature())
    assert (missing.reason, missing.transient) == (Reason.ATTESTATION_MISSING, False)


def test_warn_mode_keeps_the_fetch_reason_and_its_transience() -> None:
    unread = Failure(Reason.LIMIT_EXCEEDED, ATT_FETCH, IMAGE, transient=True)
    result = evaluate(policy_doc(mode="warn", attestations=[entry()]), signature(), failures=(unread,))
    assert result.passed
    assert (result.reason, result.transient) == (Reason.LIMIT_EXCEEDED, True)
    assert result.warnings and "LimitExceeded" in result.warnings[0]


def test_a_statement_is_parsed_once_across_evaluations_and_a_big_one_is_never_kept() -> None:
    module = attestations_module
    module._parsed.cache_clear()
    doc = policy_doc(attestations=[entry()])
    for _ in range(3):  # three evaluations, as after policy edits: one parse
        assert evaluate(doc, signature(), attestation()).reason == Reason.VERIFIED
    info = module._parsed.cache_info()
    assert (info.misses, info.hits) == (1, 2)
    big = statement(padding="x" * module.MAX_KEPT_STATEMENT_BYTES)
    assert evaluate(doc, signature(), attestation(data=big)).reason == Reason.VERIFIED
    assert module._parsed.cache_info().currsize == 1  # parsed, but not kept
