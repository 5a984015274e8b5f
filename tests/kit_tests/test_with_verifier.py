"""The kit's signatures verify with the project's verifier, and each tamper knob hits one check."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from controller.errors import ImprimaturError, Reason
from controller.model import Digest, VerifiedSignature
from controller.verify import TrustRoot, VerifyOptions, verify_simplesigning
from tests.kit.sigstore import (
    ANNOTATION_CERTIFICATE,
    Identity,
    KeyType,
    Leaf,
    SignedLayer,
    SigstoreKit,
    hashedrekord_body,
    payload_bytes,
)

DIGEST = "sha256:" + "ab" * 32
REFERENCE = "registry.example/acme/app"


@pytest.fixture(scope="module")
def trust_root(sigstore_kit: SigstoreKit) -> TrustRoot:
    return TrustRoot.from_json(sigstore_kit.trusted_root_json(), "kit")


def _verify(layer: SignedLayer, trust_root: TrustRoot, now: datetime) -> VerifiedSignature:
    return verify_simplesigning(
        layer.to_signature(),
        digest=Digest.parse(DIGEST),
        trust_root=trust_root,
        options=VerifyOptions(),
        now=now,
    )


def test_default_layer_verifies(sigstore_kit: SigstoreKit, trust_root: TrustRoot) -> None:
    layer = sigstore_kit.sign_image(DIGEST, REFERENCE)
    verified = _verify(layer, trust_root, sigstore_kit.now)
    bundle = layer.bundle
    assert bundle is not None
    assert (verified.subject, verified.issuer) == ("alice@example.com", "https://github.com/login/oauth")
    assert verified.log_index == bundle.log_index
    assert verified.log_id == sigstore_kit.rekor.log_id_hex
    assert verified.warnings == ()


@pytest.mark.parametrize("key_type", list(KeyType))
def test_every_key_type_verifies(sigstore_kit: SigstoreKit, trust_root: TrustRoot, key_type: KeyType) -> None:
    _verify(sigstore_kit.sign_image(DIGEST, REFERENCE, key_type=key_type), trust_root, sigstore_kit.now)


def test_github_workflow_claims_round_trip(sigstore_kit: SigstoreKit, trust_root: TrustRoot) -> None:
    identity = Identity.github_workflow("acme/app")
    verified = _verify(
        sigstore_kit.sign_image(DIGEST, REFERENCE, identity=identity), trust_root, sigstore_kit.now
    )
    assert verified.subject == identity.subject
    assert verified.issuer == identity.issuer
    assert dict(verified.claims) == dict(identity.claims)


def test_rekord_kind_and_annotations_verify(sigstore_kit: SigstoreKit, trust_root: TrustRoot) -> None:
    layer = sigstore_kit.sign_image(DIGEST, REFERENCE, rekor_kind="rekord", annotations={"env": "prod"})
    assert dict(_verify(layer, trust_root, sigstore_kit.now).annotations) == {"env": "prod"}


def _tampered(kit: SigstoreKit) -> dict[str, tuple[Callable[[], SignedLayer], Reason]]:
    def base() -> SignedLayer:
        return kit.sign_image(DIGEST, REFERENCE)

    def bundle_of(layer: SignedLayer) -> tuple[SignedLayer, int, int]:
        bundle = layer.bundle
        assert bundle is not None
        return layer, bundle.integrated_time, bundle.log_index

    def signed_by(leaf: Callable[[], Leaf]) -> Callable[[], SignedLayer]:
        return lambda: kit.sign_image(DIGEST, REFERENCE, leaf=leaf())

    def stale_set() -> SignedLayer:
        layer, _, index = bundle_of(base())
        bundle = layer.bundle
        assert bundle is not None
        return layer.with_bundle(dataclasses.replace(bundle, log_index=index + 1))

    def late_log() -> SignedLayer:
        layer, integrated, _ = bundle_of(base())
        return kit.rebundle(layer, integrated_time=integrated + 3600)

    def other_body() -> SignedLayer:
        layer = base()
        body = hashedrekord_body(
            payload=b"other", signature=layer.signature, certificate_pem_text=layer.leaf.pem
        )
        return kit.rebundle(layer, body=body)

    return {
        "sct omitted": (signed_by(lambda: kit.issue_leaf(sct=False)), Reason.SCT_MISSING),
        "sct by a wrong key": (
            signed_by(lambda: kit.issue_leaf(sct_signing_key=ec.generate_private_key(ec.SECP256R1()))),
            Reason.SCT_INVALID,
        ),
        "issuer extensions omitted": (
            signed_by(lambda: kit.issue_leaf(issuer_extensions="none")),
            Reason.ISSUER_MISSING,
        ),
        "codeSigning EKU dropped": (signed_by(lambda: kit.issue_leaf(eku=None)), Reason.CERTIFICATE_INVALID),
        "leaf signed by a foreign key": (
            signed_by(lambda: kit.issue_leaf(cert_signing_key=ec.generate_private_key(ec.SECP384R1()))),
            Reason.CERTIFICATE_CHAIN_INVALID,
        ),
        "untrusted CA": (
            lambda: kit.sign_image(DIGEST, REFERENCE, ca=kit.new_ca()),
            Reason.CERTIFICATE_CHAIN_INVALID,
        ),
        "SET not re-signed": (stale_set, Reason.TLOG_ENTRY_INVALID),
        "SET by another Rekor": (
            lambda: kit.rebundle(base(), rekor=kit.new_log_key("https://rekor.other.test")),
            Reason.TLOG_ENTRY_INVALID,
        ),
        "logged after the leaf expired": (late_log, Reason.CERTIFICATE_EXPIRED),
        "body of another payload": (other_body, Reason.TLOG_BODY_MISMATCH),
        "payload for another image": (
            lambda: kit.resign_payload(base(), payload_bytes("sha256:" + "cd" * 32, REFERENCE)),
            Reason.PAYLOAD_DIGEST_MISMATCH,
        ),
        "payload edited, not re-signed": (
            lambda: base().with_payload(payload_bytes(DIGEST, "registry.example/other")),
            Reason.SIGNATURE_INVALID,
        ),
        "no bundle": (lambda: kit.sign_image(DIGEST, REFERENCE, tlog=False), Reason.TLOG_ENTRY_MISSING),
        "no certificate": (lambda: base().with_annotation(ANNOTATION_CERTIFICATE, None), Reason.NOT_KEYLESS),
    }


def test_each_knob_hits_its_own_check(sigstore_kit: SigstoreKit, trust_root: TrustRoot) -> None:
    outcomes: dict[str, Reason | None] = {}
    expected: dict[str, Reason | None] = {}
    for name, (make, reason) in _tampered(sigstore_kit).items():
        expected[name] = reason
        try:
            _verify(make(), trust_root, sigstore_kit.now)
            outcomes[name] = None
        except ImprimaturError as e:
            outcomes[name] = e.reason
    assert outcomes == expected
