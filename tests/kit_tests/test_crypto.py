"""The kit's outputs verify with cryptography directly and with sigstore-python's own checks, and each
tamper knob breaks exactly what it says it breaks."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.certificate_transparency import SignedCertificateTimestamp
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from sigstore._internal.sct import verify_sct
from sigstore._internal.trust import KeyringPurpose
from sigstore._utils import KeyID
from sigstore.errors import VerificationError as SigstoreVerificationError
from sigstore.models import TrustedRoot

from tests.kit.sigstore import (
    ANNOTATION_CHAIN,
    ANNOTATION_SIGNATURE,
    FULCIO_CLAIMS,
    LEAF_VALIDITY,
    CosignBundle,
    Identity,
    IssuerExtensions,
    KeyType,
    Leaf,
    LogKey,
    SignedLayer,
    SigstoreKit,
    der_utf8_string,
    hashedrekord_body,
    payload_bytes,
    sct_signed_data,
    spki_der,
)

DIGEST = "sha256:" + "ab" * 32
REFERENCE = "registry.example/acme/app"


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    """A kit of our own at a fixed, past ``now`` (sigstore-python reads the real clock for key windows)."""
    return SigstoreKit(now=datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC))


@pytest.fixture(scope="module")
def layer(kit: SigstoreKit) -> SignedLayer:
    return kit.sign_image(DIGEST, REFERENCE)


@pytest.fixture(scope="module")
def sigstore_root(kit: SigstoreKit, tmp_path_factory: pytest.TempPathFactory) -> TrustedRoot:
    """The kit's trusted root, parsed by sigstore-python (strict protobuf JSON)."""
    path = tmp_path_factory.mktemp("root") / "trusted_root.json"
    path.write_bytes(kit.trusted_root_json())
    return TrustedRoot.from_file(str(path))


def _sct(cert: x509.Certificate) -> SignedCertificateTimestamp:
    extension = cert.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps)
    scts: list[SignedCertificateTimestamp] = list(extension.value)
    assert len(scts) == 1
    return scts[0]


def _verify_sct_directly(leaf: Leaf, ct_log: LogKey) -> None:
    """RFC 6962 by hand: the CT key signed the precert struct over tbs_precertificate_bytes."""
    cert = leaf.certificate
    sct = _sct(cert)
    assert sct.log_id == ct_log.log_id
    issuer = leaf.ca.issuing_certificate
    signed = sct_signed_data(
        timestamp_ms=round(sct.timestamp.replace(tzinfo=UTC).timestamp() * 1000),
        issuer_key_hash=hashlib.sha256(spki_der(issuer)).digest(),
        tbs=cert.tbs_precertificate_bytes,
    )
    public = ct_log.private_key.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(sct.signature, signed, ec.ECDSA(hashes.SHA256()))


def _verify_set(bundle: CosignBundle, log: LogKey) -> None:
    public = log.private_key.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(
        base64.b64decode(bundle.signed_entry_timestamp), bundle.set_payload(), ec.ECDSA(hashes.SHA256())
    )


def _verify_chain(
    cert: x509.Certificate, roots: list[x509.Certificate], chain: list[x509.Certificate], at: datetime
) -> None:
    """Path validation as sigstore-python does it (cryptography's verifier, EKU left to the caller)."""
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store(roots))
        .time(at)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    verifier.verify(cert, chain)


# --- the default layer verifies


def test_payload_signature_verifies_with_the_leaf_key(layer: SignedLayer) -> None:
    public = layer.leaf.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(layer.signature, layer.payload, ec.ECDSA(hashes.SHA256()))


def test_sct_verifies_over_the_precertificate_tbs(kit: SigstoreKit, layer: SignedLayer) -> None:
    _verify_sct_directly(layer.leaf, kit.ct_log)
    assert layer.leaf.certificate.tbs_precertificate_bytes == layer.leaf.precertificate.tbs_certificate_bytes
    with pytest.raises(x509.ExtensionNotFound):
        layer.leaf.precertificate.extensions.get_extension_for_class(
            x509.PrecertificateSignedCertificateTimestamps
        )


def test_sct_verifies_with_sigstore_python(layer: SignedLayer, sigstore_root: TrustedRoot) -> None:
    chain = x509.load_pem_x509_certificates(layer.annotations[ANNOTATION_CHAIN].encode())
    verify_sct(layer.leaf.certificate, chain, sigstore_root.ct_keyring(KeyringPurpose.VERIFY))


def test_sct_timestamp_is_just_after_not_before(layer: SignedLayer) -> None:
    stamp = _sct(layer.leaf.certificate).timestamp.replace(tzinfo=UTC)
    assert layer.leaf.certificate.not_valid_before_utc <= stamp < layer.leaf.certificate.not_valid_after_utc


def test_set_verifies_over_canonical_json(kit: SigstoreKit, layer: SignedLayer) -> None:
    bundle = layer.bundle
    assert bundle is not None
    _verify_set(bundle, kit.rekor)
    assert (
        bundle.set_payload()
        == json.dumps(
            {
                "body": bundle.body,
                "integratedTime": bundle.integrated_time,
                "logID": bundle.log_id,
                "logIndex": bundle.log_index,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
    )
    assert bundle.log_id == hashlib.sha256(spki_der(kit.rekor.private_key)).hexdigest()


def test_set_verifies_with_sigstore_python_keyring(layer: SignedLayer, sigstore_root: TrustedRoot) -> None:
    bundle = layer.bundle
    assert bundle is not None
    sigstore_root.rekor_keyring(KeyringPurpose.VERIFY).verify(
        key_id=KeyID(bytes.fromhex(bundle.log_id)),
        signature=base64.b64decode(bundle.signed_entry_timestamp),
        data=bundle.set_payload(),
    )


def test_rekor_body_describes_the_signature(layer: SignedLayer) -> None:
    bundle = layer.bundle
    assert bundle is not None
    assert bundle.body_bytes == hashedrekord_body(
        payload=layer.payload, signature=layer.signature, certificate_pem_text=layer.leaf.pem
    )


def test_chain_links_verify(layer: SignedLayer) -> None:
    intermediate, root = x509.load_pem_x509_certificates(layer.annotations[ANNOTATION_CHAIN].encode())
    layer.leaf.certificate.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)


def test_chain_validates_at_integrated_time_like_sigstore_python(
    kit: SigstoreKit, layer: SignedLayer
) -> None:
    bundle = layer.bundle
    assert bundle is not None
    at = datetime.fromtimestamp(bundle.integrated_time, UTC)
    cert = layer.leaf.certificate
    assert cert.not_valid_before_utc <= at <= cert.not_valid_after_utc
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == LEAF_VALIDITY
    assert at < kit.now
    _verify_chain(cert, [kit.ca.root], [kit.ca.issuing_certificate], at)
    with pytest.raises(VerificationError):
        _verify_chain(
            cert, [kit.ca.root], [kit.ca.issuing_certificate], cert.not_valid_after_utc + timedelta(1)
        )


def test_trusted_root_roundtrips_through_sigstore_python(
    kit: SigstoreKit, sigstore_root: TrustedRoot
) -> None:
    assert sigstore_root.get_fulcio_certs() == [kit.ca.intermediate, kit.ca.root]


@pytest.mark.parametrize("key_type", list(KeyType))
def test_every_key_type_signs_as_cosign_verifies(kit: SigstoreKit, key_type: KeyType) -> None:
    layer = kit.sign_image(DIGEST, REFERENCE, key_type=key_type)
    public = layer.leaf.certificate.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(layer.signature, layer.payload, ec.ECDSA(hashes.SHA256()))  # SHA-256 on every curve
    elif isinstance(public, rsa.RSAPublicKey):
        public.verify(layer.signature, layer.payload, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(public, ed25519.Ed25519PublicKey)
        public.verify(layer.signature, layer.payload)
    assert layer.leaf.key_type == key_type
    _verify_sct_directly(layer.leaf, kit.ct_log)


# --- identities


def test_github_workflow_claims_in_fulcio_order_and_encoding(kit: SigstoreKit) -> None:
    identity = Identity.github_workflow("acme/app")
    cert = kit.issue_leaf(identity).certificate
    oids = [ext.oid.dotted_string for ext in cert.extensions]
    fulcio = [oid for oid in oids if oid.startswith("1.3.6.1.4.1.57264.1.")]
    arcs = [int(oid.rsplit(".", 1)[1]) for oid in fulcio]
    assert arcs == [1, 2, 3, 4, 5, 6, 8, *range(9, 23)]
    assert oids[-1] == "1.3.6.1.4.1.11129.2.4.2"
    for name, (arc, der) in FULCIO_CLAIMS.items():
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(f"1.3.6.1.4.1.57264.1.{arc}")).value
        assert isinstance(ext, x509.UnrecognizedExtension)
        expected = identity.claims[name]
        assert ext.value == (der_utf8_string(expected) if der else expected.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [identity.subject]


def test_username_identity_is_a_fulcio_othername(kit: SigstoreKit) -> None:
    cert = kit.issue_leaf(Identity.username("alice", "https://oidc.example")).certificate
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    [other] = ext.value.get_values_for_type(x509.OtherName)
    assert other.type_id.dotted_string == "1.3.6.1.4.1.57264.1.7"
    assert other.value == b"\x0c\x05alice"
    der = cert.public_bytes(serialization.Encoding.DER)
    # SAN = SEQUENCE { [0] { OID .1.7, [0] EXPLICIT UTF8String "alice" } }, as Fulcio marshals it.
    assert bytes.fromhex("a015060a2b0601040183bf300107a0070c05616c696365") in der
    assert ext.critical


def test_unknown_claim_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown Fulcio claims"):
        Identity.uri("https://x", "https://issuer", {"notAClaim": "x"})


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SigstoreKit(now=datetime(2030, 1, 1))


def test_annotations_become_the_optional_map(kit: SigstoreKit) -> None:
    layer = kit.sign_image(DIGEST, REFERENCE, annotations={"z": "1", "a": "<&>"})
    assert layer.payload.endswith(b'"optional":{"a":"\\u003c\\u0026\\u003e","z":"1"}}')
    assert json.loads(layer.payload)["optional"] == {"a": "<&>", "z": "1"}
    assert layer.payload == payload_bytes(DIGEST, REFERENCE, {"a": "<&>", "z": "1"})


# --- tamper knobs break what they say, and only that


def test_sct_can_be_omitted(kit: SigstoreKit) -> None:
    leaf = kit.issue_leaf(sct=False)
    with pytest.raises(x509.ExtensionNotFound):
        leaf.certificate.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps)
    assert leaf.certificate == leaf.precertificate


def test_sct_signed_with_a_wrong_key_names_the_trusted_log_but_fails(
    kit: SigstoreKit, sigstore_root: TrustedRoot
) -> None:
    leaf = kit.issue_leaf(sct_signing_key=ec.generate_private_key(ec.SECP256R1()))
    assert _sct(leaf.certificate).log_id == kit.ct_log.log_id
    with pytest.raises(InvalidSignature):
        _verify_sct_directly(leaf, kit.ct_log)
    with pytest.raises(SigstoreVerificationError):
        verify_sct(leaf.certificate, leaf.ca.chain, sigstore_root.ct_keyring(KeyringPurpose.VERIFY))


def test_sct_from_an_unknown_log_names_that_log(kit: SigstoreKit) -> None:
    other = kit.new_log_key("https://ctfe.other.test")
    leaf = kit.issue_leaf(ct_log=other)
    assert _sct(leaf.certificate).log_id == other.log_id
    _verify_sct_directly(leaf, other)


@pytest.mark.parametrize(
    ("knob", "expected"),
    [("both", ["1", "8"]), ("v1", ["1"]), ("v2", ["8"]), ("none", [])],
)
def test_issuer_extensions_knob(kit: SigstoreKit, knob: IssuerExtensions, expected: list[str]) -> None:
    cert = kit.issue_leaf(issuer_extensions=knob).certificate
    arcs = [
        ext.oid.dotted_string.rsplit(".", 1)[1]
        for ext in cert.extensions
        if ext.oid.dotted_string.startswith("1.3.6.1.4.1.57264.1.")
    ]
    assert arcs == expected
    _verify_sct_directly(kit.issue_leaf(issuer_extensions=knob), kit.ct_log)


def test_eku_can_be_dropped_or_replaced(kit: SigstoreKit) -> None:
    dropped = kit.issue_leaf(eku=None).certificate
    with pytest.raises(x509.ExtensionNotFound):
        dropped.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    other = kit.issue_leaf(eku=[ExtendedKeyUsageOID.CLIENT_AUTH]).certificate
    assert list(other.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]


def test_leaf_from_an_untrusted_ca_does_not_chain(kit: SigstoreKit) -> None:
    rogue = kit.new_ca()
    leaf = kit.issue_leaf(ca=rogue)
    at = leaf.certificate.not_valid_before_utc + timedelta(seconds=10)
    _verify_chain(leaf.certificate, [rogue.root], [rogue.issuing_certificate], at)
    with pytest.raises(VerificationError):
        _verify_chain(leaf.certificate, [kit.ca.root], [rogue.issuing_certificate], at)
    assert leaf.certificate.issuer == kit.ca.issuing_certificate.subject  # same names, different keys


def test_leaf_signed_by_a_foreign_key_breaks_the_link(kit: SigstoreKit) -> None:
    leaf = kit.issue_leaf(cert_signing_key=ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(InvalidSignature):
        leaf.certificate.verify_directly_issued_by(kit.ca.issuing_certificate)


def test_expired_ca_is_expired_at_now(kit: SigstoreKit) -> None:
    now = kit.now
    expired = kit.new_ca(
        not_before=now - timedelta(days=4 * 365), not_after=now - timedelta(days=365), valid_until=now
    )
    assert expired.root.not_valid_after_utc < now
    assert expired.issuing_certificate.not_valid_after_utc < now
    entry = json.loads(kit.trusted_root_json(extra_cas=[expired]))["certificateAuthorities"][1]
    assert entry["validFor"]["end"]


def test_one_tier_ca_issues_from_the_root(kit: SigstoreKit) -> None:
    ca = kit.new_ca(intermediate=False)
    layer = kit.sign_image(DIGEST, REFERENCE, ca=ca)
    assert layer.annotations[ANNOTATION_CHAIN].count("BEGIN CERTIFICATE") == 1
    layer.leaf.certificate.verify_directly_issued_by(ca.root)
    _verify_sct_directly(layer.leaf, kit.ct_log)


def test_tlog_and_chain_can_be_left_out(kit: SigstoreKit) -> None:
    layer = kit.sign_image(DIGEST, REFERENCE, tlog=False, chain=False)
    assert set(layer.annotations) == {ANNOTATION_SIGNATURE, "dev.sigstore.cosign/certificate"}
    assert layer.bundle is None
    assert layer.rekor is None


def test_rebundle_changes_one_field_and_keeps_the_set_valid(kit: SigstoreKit, layer: SignedLayer) -> None:
    before = layer.bundle
    assert before is not None
    moved = kit.rebundle(layer, integrated_time=before.integrated_time + 3600)
    after = moved.bundle
    assert after is not None
    assert after.integrated_time == before.integrated_time + 3600
    assert (after.body, after.log_index, after.log_id) == (before.body, before.log_index, before.log_id)
    _verify_set(after, kit.rekor)
    assert moved.payload == layer.payload
    assert moved.annotations[ANNOTATION_SIGNATURE] == layer.annotations[ANNOTATION_SIGNATURE]


def test_editing_a_bundle_without_resigning_breaks_only_the_set(kit: SigstoreKit, layer: SignedLayer) -> None:
    bundle = layer.bundle
    assert bundle is not None
    edited = layer.with_bundle(dataclasses.replace(bundle, log_index=bundle.log_index + 1))
    edited_bundle = edited.bundle
    assert edited_bundle is not None
    with pytest.raises(InvalidSignature):
        _verify_set(edited_bundle, kit.rekor)


def test_set_from_another_rekor_fails_under_the_kit_key(kit: SigstoreKit, layer: SignedLayer) -> None:
    other = kit.new_log_key("https://rekor.other.test")
    moved = kit.rebundle(layer, rekor=other)
    bundle = moved.bundle
    assert bundle is not None
    _verify_set(bundle, other)
    with pytest.raises(InvalidSignature):
        _verify_set(bundle, kit.rekor)
    assert moved.rekor is other


def test_resign_payload_resigns_everything_downstream(kit: SigstoreKit, layer: SignedLayer) -> None:
    new_payload = payload_bytes("sha256:" + "cd" * 32, REFERENCE)
    changed = kit.resign_payload(layer, new_payload)
    public = changed.leaf.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(changed.signature, new_payload, ec.ECDSA(hashes.SHA256()))
    bundle = changed.bundle
    assert bundle is not None
    _verify_set(bundle, kit.rekor)
    body = json.loads(bundle.body_bytes)
    assert body["spec"]["data"]["hash"]["value"] == hashlib.sha256(new_payload).hexdigest()
    assert body["spec"]["signature"]["content"] == changed.annotations[ANNOTATION_SIGNATURE]
    old = layer.bundle
    assert old is not None
    assert (bundle.integrated_time, bundle.log_index) == (old.integrated_time, old.log_index)


def test_resign_payload_without_tlog_leaves_a_stale_body(kit: SigstoreKit, layer: SignedLayer) -> None:
    changed = kit.resign_payload(layer, b"{}", tlog=False)
    assert changed.bundle == layer.bundle
    assert changed.signature != layer.signature


def test_resign_keeps_the_rekord_kind(kit: SigstoreKit) -> None:
    layer = kit.sign_image(DIGEST, REFERENCE, rekor_kind="rekord")
    changed = kit.resign_payload(layer, b"{}")
    bundle = changed.bundle
    assert bundle is not None
    assert json.loads(bundle.body_bytes)["kind"] == "rekord"


def test_with_annotation_removes_and_sets(layer: SignedLayer) -> None:
    removed = layer.with_annotation(ANNOTATION_CHAIN, None)
    assert ANNOTATION_CHAIN not in removed.annotations
    assert ANNOTATION_CHAIN in layer.annotations  # the original is untouched
    assert removed.with_annotation(ANNOTATION_CHAIN, "x").annotations[ANNOTATION_CHAIN] == "x"


def test_to_signature_carries_the_layer(layer: SignedLayer) -> None:
    signature = layer.to_signature("here")
    assert signature.payload == layer.payload
    assert signature.layer_digest.matches(layer.payload)
    assert dict(signature.annotations) == layer.annotations
    assert signature.kind == "simplesigning"


def test_sign_times_and_log_values_are_honoured(kit: SigstoreKit) -> None:
    when = kit.now - timedelta(hours=2)
    logged = when + timedelta(minutes=30)  # past the leaf's 10 minutes
    layer = kit.sign_image(DIGEST, REFERENCE, sign_time=when, integrated_time=logged, log_index=42)
    bundle = layer.bundle
    assert bundle is not None
    assert bundle.integrated_time == int(logged.timestamp())
    assert bundle.log_index == 42
    assert layer.leaf.certificate.not_valid_after_utc < logged
    _verify_set(bundle, kit.rekor)


def test_fixture_kit_is_valid_now(sigstore_kit: SigstoreKit, sigstore_trusted_root_file: Path) -> None:
    now = datetime.now(UTC)
    assert abs(sigstore_kit.now - now) < timedelta(hours=6)
    assert json.loads(sigstore_trusted_root_file.read_bytes()) == json.loads(sigstore_kit.trusted_root_json())
    layer = sigstore_kit.sign_image(DIGEST, REFERENCE)
    bundle = layer.bundle
    assert bundle is not None
    _verify_chain(
        layer.leaf.certificate,
        [sigstore_kit.ca.root],
        [sigstore_kit.ca.issuing_certificate],
        datetime.fromtimestamp(bundle.integrated_time, UTC),
    )


def test_make_set_accepts_body_bytes_or_base64(kit: SigstoreKit, layer: SignedLayer) -> None:
    bundle = layer.bundle
    assert bundle is not None
    for body in (bundle.body_bytes, bundle.body):
        resigned = dataclasses.replace(
            bundle, signed_entry_timestamp=kit.make_set(body, bundle.integrated_time, bundle.log_index)
        )
        _verify_set(resigned, kit.rekor)
