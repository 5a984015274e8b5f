"""verify_bundle / verify_blob on the real bundles: kinds, reasons, relaxations and fuzzing."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.errors import EvidenceError, ImprimaturError, InputError, Reason
from controller.model import Digest, Signature
from controller.verify import TrustRoot, VerifyOptions, verify_blob, verify_bundle, verify_bundle_artifact
from tests.verify.realdata import bundle_bytes

NOW = datetime(2026, 11, 25, tzinfo=UTC)
ATTESTATION = "cosign__oci-attestation.sigstore.json"
ATTESTED_IMAGE = Digest.parse("sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4")
STAGING_BUNDLES = ["bundle", "bundle_v3", "bundle_v3_alt"]


def _signature(data: bytes) -> Signature:
    return Signature(
        kind="bundle",
        payload=data,
        annotations={},
        layer_digest=Digest.of(data),
        source="registry.test/repo referrer",
        media_type="application/vnd.dev.sigstore.bundle.v0.3+json",
    )


def _reason(call: Any, *args: Any, **kwargs: Any) -> Reason:
    with pytest.raises(ImprimaturError) as info:
        call(*args, **kwargs)
    return info.value.reason


def test_production_attestation_bundle_verifies(public_good: TrustRoot) -> None:
    verified = verify_bundle(
        _signature(bundle_bytes(ATTESTATION)), digest=ATTESTED_IMAGE, trust_root=public_good, now=NOW
    )
    assert verified.subject == "cody@soyland.com"
    assert verified.issuer == "https://github.com/login/oauth"
    assert verified.digest == ATTESTED_IMAGE
    assert verified.log_index == 175508996
    assert verified.integrated_time == datetime(2025, 2, 28, 19, 18, 11, tzinfo=UTC)
    assert verified.log_id == "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"
    assert verified.annotations == {"predicateType": "https://cosign.sigstore.dev/attestation/v1"}
    assert verified.trust_root == "public-good"
    assert verified.source == "registry.test/repo referrer"
    # an attestation is not a signature: the policy layer counts it only for ``attestations:``
    assert verified.kind == "attestation"
    assert verified.predicate_type == "https://cosign.sigstore.dev/attestation/v1"
    assert json.loads(verified.statement)["predicateType"] == verified.predicate_type
    assert verified.key_id == ""


def test_attestation_for_another_image_is_payload_digest_mismatch(public_good: TrustRoot) -> None:
    other = Digest.parse("sha256:" + "11" * 32)
    sig = _signature(bundle_bytes(ATTESTATION))
    assert (
        _reason(verify_bundle, sig, digest=other, trust_root=public_good, now=NOW)
        is Reason.PAYLOAD_DIGEST_MISMATCH
    )


def test_production_bundle_with_the_staging_root_is_refused(staging: TrustRoot) -> None:
    sig = _signature(bundle_bytes(ATTESTATION))
    assert (
        _reason(verify_bundle, sig, digest=ATTESTED_IMAGE, trust_root=staging, now=NOW)
        is Reason.TLOG_ENTRY_INVALID  # its Rekor log is not in the staging root
    )


def _tamper_envelope(mutate: Any) -> bytes:
    doc = json.loads(bundle_bytes(ATTESTATION))
    mutate(doc)
    return json.dumps(doc).encode()


def _swap_subject(doc: dict[str, Any]) -> None:
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "22" * 32
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()


def _flip_signature(doc: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[10] ^= 1
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()


def _flip_set(doc: dict[str, Any]) -> None:
    promise = doc["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
    raw = bytearray(base64.b64decode(promise["signedEntryTimestamp"]))
    raw[-3] ^= 1
    promise["signedEntryTimestamp"] = base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (_swap_subject, Reason.PAYLOAD_DIGEST_MISMATCH),
        (_flip_signature, Reason.SIGNATURE_INVALID),
        (_flip_set, Reason.TLOG_ENTRY_INVALID),
    ],
)
def test_tampered_attestation_is_refused(mutate: Any, reason: Reason, public_good: TrustRoot) -> None:
    sig = _signature(_tamper_envelope(mutate))
    assert _reason(verify_bundle, sig, digest=ATTESTED_IMAGE, trust_root=public_good, now=NOW) is reason


@pytest.mark.parametrize("name", STAGING_BUNDLES)
def test_staging_message_signature_bundles_verify(name: str, staging: TrustRoot) -> None:
    artifact = bundle_bytes(f"sigstore-python__{name}.txt")
    bundle = bundle_bytes(f"sigstore-python__{name}.txt.sigstore")
    verified = verify_bundle_artifact(bundle, artifact, staging, now=NOW)
    assert verified.digest == Digest.of(artifact)
    assert verified.issuer == "https://github.com/login/oauth"
    assert verified.subject in {"a@tny.town", "william@yossarian.net"}
    assert verified.log_index is not None
    assert verified.integrated_time is not None
    # The same check through the image entry point: the artifact digest plays the image digest.
    assert verify_bundle(
        _signature(bundle), digest=Digest.of(artifact), trust_root=staging, now=NOW
    ) == replace(verified, source="registry.test/repo referrer")


@pytest.mark.parametrize("name", STAGING_BUNDLES)
def test_staging_bundle_over_another_artifact_is_rejected(name: str, staging: TrustRoot) -> None:
    bundle = bundle_bytes(f"sigstore-python__{name}.txt.sigstore")
    reason = _reason(verify_bundle_artifact, bundle, b"another artifact", staging, now=NOW)
    assert reason is Reason.PAYLOAD_DIGEST_MISMATCH


def test_bundle_without_checkpoint_is_bundle_invalid(staging: TrustRoot) -> None:
    artifact = bundle_bytes("sigstore-python__bundle_no_checkpoint.txt")
    bundle = bundle_bytes("sigstore-python__bundle_no_checkpoint.txt.sigstore")
    assert _reason(verify_bundle_artifact, bundle, artifact, staging, now=NOW) is Reason.BUNDLE_INVALID


def test_staging_bundle_with_the_production_root_is_refused(public_good: TrustRoot) -> None:
    artifact = bundle_bytes("sigstore-python__bundle_v3.txt")
    bundle = bundle_bytes("sigstore-python__bundle_v3.txt.sigstore")
    assert (
        _reason(verify_bundle_artifact, bundle, artifact, public_good, now=NOW) is Reason.TLOG_ENTRY_INVALID
    )


def test_message_signature_cannot_sign_a_sha512_digest(staging: TrustRoot) -> None:
    bundle = bundle_bytes("sigstore-python__bundle_v3.txt.sigstore")
    sha512 = Digest.of(b"x", "sha512")
    assert _reason(verify_bundle, _signature(bundle), digest=sha512, trust_root=staging, now=NOW) is (
        Reason.PAYLOAD_DIGEST_MISMATCH
    )


@pytest.mark.parametrize(
    "data",
    [b"", b"{}", b"[]", b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}', b'{"a":1,"a":1}'],
)
def test_malformed_bundles_are_bundle_invalid(data: bytes, public_good: TrustRoot) -> None:
    sig = _signature(data)
    assert (
        _reason(verify_bundle, sig, digest=ATTESTED_IMAGE, trust_root=public_good, now=NOW)
        is Reason.BUNDLE_INVALID
    )


def test_oversized_bundle_is_limit_exceeded(public_good: TrustRoot) -> None:
    sig = _signature(b" " * (8 * 1024 * 1024 + 1))
    with pytest.raises(EvidenceError) as info:
        verify_bundle(sig, digest=ATTESTED_IMAGE, trust_root=public_good, now=NOW)
    assert info.value.reason is Reason.LIMIT_EXCEEDED


def test_simplesigning_kind_is_refused(public_good: TrustRoot) -> None:
    sig = replace(_signature(bundle_bytes(ATTESTATION)), kind="simplesigning")
    assert (
        _reason(verify_bundle, sig, digest=ATTESTED_IMAGE, trust_root=public_good, now=NOW)
        is Reason.BUNDLE_INVALID
    )


def test_naive_now_is_refused(public_good: TrustRoot) -> None:
    with pytest.raises(InputError):
        verify_bundle(
            _signature(bundle_bytes(ATTESTATION)),
            digest=ATTESTED_IMAGE,
            trust_root=public_good,
            now=datetime(2026, 1, 1),
        )


def _without_tlog() -> bytes:
    doc = json.loads(bundle_bytes("sigstore-python__bundle_v3.txt.sigstore"))
    del doc["verificationMaterial"]["tlogEntries"]
    return json.dumps(doc).encode()


def _v3_digest() -> Digest:
    return Digest.of(bundle_bytes("sigstore-python__bundle_v3.txt"))


def test_bundle_without_tlog_entry_is_tlog_entry_missing(staging: TrustRoot) -> None:
    assert _reason(
        verify_blob, _without_tlog(), artifact_digest=_v3_digest(), trust_root=staging, now=NOW
    ) is (Reason.TLOG_ENTRY_MISSING)


def test_optional_tlog_is_honoured_for_bundles(staging: TrustRoot) -> None:
    relaxed = VerifyOptions(require_tlog=False)
    # With no signed time, the (10-minute) certificate is checked now: long expired.
    assert (
        _reason(
            verify_blob,
            _without_tlog(),
            artifact_digest=_v3_digest(),
            trust_root=staging,
            now=NOW,
            options=relaxed,
        )
        is Reason.CERTIFICATE_EXPIRED
    )
    logged = verify_blob(
        bundle_bytes("sigstore-python__bundle_v3.txt.sigstore"),
        artifact_digest=_v3_digest(),
        trust_root=staging,
        now=NOW,
    ).integrated_time
    assert logged is not None
    verified = verify_blob(
        _without_tlog(), artifact_digest=_v3_digest(), trust_root=staging, now=logged, options=relaxed
    )
    assert verified.log_index is None
    assert any("no transparency log entry" in w for w in verified.warnings)


def test_sct_relaxation_is_honoured_for_bundles(staging: TrustRoot) -> None:
    doc = json.loads(staging.raw)
    doc["ctlogs"] = []
    root = TrustRoot.from_json(json.dumps(doc).encode(), "staging")
    bundle = bundle_bytes("sigstore-python__bundle_v3.txt.sigstore")
    assert (
        _reason(verify_blob, bundle, artifact_digest=_v3_digest(), trust_root=root, now=NOW)
        is Reason.SCT_INVALID
    )
    relaxed = VerifyOptions(require_sct=False)
    verified = verify_blob(bundle, artifact_digest=_v3_digest(), trust_root=root, now=NOW, options=relaxed)
    assert any("SCT not verified" in w for w in verified.warnings)


def test_signed_time_after_now_is_refused(staging: TrustRoot) -> None:
    bundle = bundle_bytes("sigstore-python__bundle_v3.txt.sigstore")
    verified = verify_blob(bundle, artifact_digest=_v3_digest(), trust_root=staging, now=NOW)
    assert verified.integrated_time is not None
    before = verified.integrated_time.replace(year=verified.integrated_time.year - 1)
    assert _reason(verify_blob, bundle, artifact_digest=_v3_digest(), trust_root=staging, now=before) is (
        Reason.TLOG_ENTRY_INVALID
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_our_errors(data: bytes, public_good: TrustRoot) -> None:
    with pytest.raises(EvidenceError) as info:
        verify_bundle(_signature(data), digest=ATTESTED_IMAGE, trust_root=public_good, now=NOW)
    assert info.value.reason in {Reason.BUNDLE_INVALID, Reason.PAYLOAD_INVALID}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.extend(_paths(item, (*prefix, index)))
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_field_replacement_raises_only_our_errors(
    data: st.DataObject, public_good: TrustRoot
) -> None:
    doc = json.loads(bundle_bytes(ATTESTATION))
    path = data.draw(st.sampled_from(_paths(doc)))
    value = data.draw(
        st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=2))
    )
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    sig = _signature(json.dumps(doc).encode())
    try:
        verified = verify_bundle(sig, digest=ATTESTED_IMAGE, trust_root=public_good, now=NOW)
    except EvidenceError:
        return  # a reasoned refusal (any other exception fails the test)
    # what still verifies is the same attestation (a replaced hint such as keyid changes nothing)
    assert (verified.subject, verified.kind, verified.log_index) == (
        "cody@soyland.com",
        "attestation",
        175508996,
    )


def test_digest_helper_matches_the_artifact() -> None:
    artifact = bundle_bytes("sigstore-python__bundle.txt")
    assert Digest.of(artifact).hex == hashlib.sha256(artifact).hexdigest()
