"""The tamper matrix: every field of a valid cosign keyless signature, altered alone, is rejected
with the reason that names that field's check.

Each case starts from one valid layer made by the test kit and changes exactly one thing. Where the
changed field is covered by an upstream signature (the payload by the signature, the bundle by the
SET), the case is listed twice when both matter: once *not* re-signed (the upstream signature must
catch it) and once re-signed (the field's own check must catch it).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from controller.errors import ImprimaturError, Reason
from controller.model import Digest
from controller.verify import TrustRoot, VerifyOptions, verify_simplesigning
from tests.kit.sigstore import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    ANNOTATION_CHAIN,
    ANNOTATION_SIGNATURE,
    CosignBundle,
    Identity,
    SignedLayer,
    SigstoreKit,
    hashedrekord_body,
    payload_bytes,
    rekord_body,
)

DIGEST = "sha256:" + "5e" * 32
OTHER_DIGEST = "sha256:" + "a1" * 32
REFERENCE = "registry.example/acme/app"

Case = Callable[[SigstoreKit], SignedLayer]


def _base(kit: SigstoreKit) -> SignedLayer:
    return kit.sign_image(DIGEST, REFERENCE)


def _payload_doc(layer: SignedLayer) -> dict[str, object]:
    doc = json.loads(layer.payload)
    assert isinstance(doc, dict)
    return doc


def _resigned_payload(edit: Callable[[dict[str, object]], object]) -> Case:
    """Edit the payload JSON and re-sign everything downstream (signature, Rekor body, SET)."""

    def make(kit: SigstoreKit) -> SignedLayer:
        layer = _base(kit)
        doc = _payload_doc(layer)
        edit(doc)
        return kit.resign_payload(layer, json.dumps(doc, separators=(",", ":")).encode())

    return make


def _raw_resigned_payload(payload: bytes) -> Case:
    return lambda kit: kit.resign_payload(_base(kit), payload)


def _critical(doc: dict[str, object]) -> dict[str, object]:
    critical = doc["critical"]
    assert isinstance(critical, dict)
    return critical


def _flip_b64(text: str, index: int = 10) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[index % len(raw)] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _bundle_field(change: Callable[[CosignBundle], CosignBundle]) -> Case:
    """Change a SET-covered bundle field without re-signing the SET."""

    def make(kit: SigstoreKit) -> SignedLayer:
        layer = _base(kit)
        bundle = layer.bundle
        assert bundle is not None
        changed = change(bundle)
        assert changed != bundle
        return layer.with_bundle(changed)

    return make


def _bundle_json(edit: Callable[[dict[str, object]], object]) -> Case:
    def make(kit: SigstoreKit) -> SignedLayer:
        layer = _base(kit)
        doc = json.loads(layer.annotations[ANNOTATION_BUNDLE])
        edit(doc)
        return layer.with_annotation(ANNOTATION_BUNDLE, json.dumps(doc))

    return make


def _body(edit: Callable[[dict[str, object]], object]) -> Case:
    """Edit the decoded Rekor body and re-sign the SET, so that the body check must catch it."""

    def make(kit: SigstoreKit) -> SignedLayer:
        layer = _base(kit)
        bundle = layer.bundle
        assert bundle is not None
        body = json.loads(bundle.body_bytes)
        edit(body)
        return kit.rebundle(layer, body=json.dumps(body, separators=(",", ":")).encode())

    return make


def _spec(body: dict[str, object]) -> dict[str, object]:
    spec = body["spec"]
    assert isinstance(spec, dict)
    return spec


def _set_path(doc: dict[str, object], path: tuple[str, ...], value: object) -> None:
    node: object = doc
    for key in path[:-1]:
        assert isinstance(node, dict)
        node = node[key]
    assert isinstance(node, dict)
    node[path[-1]] = value


def _with_leaf(**knobs: object) -> Case:
    return lambda kit: kit.sign_image(DIGEST, REFERENCE, leaf=kit.issue_leaf(**knobs))  # type: ignore[arg-type]


def _other_leaf_certificate(kit: SigstoreKit) -> SignedLayer:
    other = kit.issue_leaf()
    return _base(kit).with_annotation(ANNOTATION_CERTIFICATE, other.pem)


def _body_of_other_certificate(kit: SigstoreKit) -> SignedLayer:
    layer = _base(kit)
    other = kit.issue_leaf()
    body = hashedrekord_body(payload=layer.payload, signature=layer.signature, certificate_pem_text=other.pem)
    return kit.rebundle(layer, body=body)


def _body_of_other_signature(kit: SigstoreKit) -> SignedLayer:
    layer = _base(kit)
    body = hashedrekord_body(
        payload=layer.payload,
        signature=b"\x30" + layer.signature[1:-1] + b"\x00",
        certificate_pem_text=layer.leaf.pem,
    )
    return kit.rebundle(layer, body=body)


def _rekord_of_other_payload(kit: SigstoreKit) -> SignedLayer:
    layer = kit.sign_image(DIGEST, REFERENCE, rekor_kind="rekord")
    body = rekord_body(
        payload=b"another payload", signature=layer.signature, certificate_pem_text=layer.leaf.pem
    )
    return kit.rebundle(layer, body=body)


def _chain_of_other_ca(kit: SigstoreKit) -> SignedLayer:
    return _base(kit).with_annotation(ANNOTATION_CHAIN, kit.new_ca().chain_pem())


def _chain_without_intermediate(kit: SigstoreKit) -> SignedLayer:
    layer = _base(kit)
    pems = layer.annotations[ANNOTATION_CHAIN].split("-----END CERTIFICATE-----")
    root_only = pems[1].strip() + "\n-----END CERTIFICATE-----\n"
    return layer.with_annotation(ANNOTATION_CHAIN, root_only)


def _payload_with_trailing_byte(kit: SigstoreKit) -> SignedLayer:
    layer = _base(kit)
    return layer.with_payload(layer.payload + b" ")


def _signature_bit_flipped(kit: SigstoreKit) -> SignedLayer:
    layer = _base(kit)
    return layer.with_annotation(ANNOTATION_SIGNATURE, _flip_b64(layer.annotations[ANNOTATION_SIGNATURE]))


def _leaf_window(kit: SigstoreKit, *, after: bool) -> SignedLayer:
    layer = _base(kit)
    cert = layer.leaf.certificate
    moment = (
        cert.not_valid_after_utc.timestamp() + 60 if after else cert.not_valid_before_utc.timestamp() - 60
    )
    return kit.rebundle(layer, integrated_time=int(moment))


def _signed_by_other_key(kit: SigstoreKit) -> SignedLayer:
    layer = _base(kit)
    other = ec.generate_private_key(ec.SECP256R1())
    signature = other.sign(layer.payload, ec.ECDSA(hashes.SHA256()))
    return layer.with_annotation(ANNOTATION_SIGNATURE, base64.b64encode(signature).decode())


MATRIX: dict[str, tuple[Case, Reason]] = {
    # --- the payload (covered by the signature)
    "payload: digest edited, not re-signed": (
        lambda kit: _base(kit).with_payload(payload_bytes(OTHER_DIGEST, REFERENCE)),
        Reason.PAYLOAD_DIGEST_MISMATCH,  # the digest check (step 2) runs before the signature (step 4)
    ),
    "payload: docker-reference edited, not re-signed": (
        lambda kit: _base(kit).with_payload(payload_bytes(DIGEST, "registry.example/evil/app")),
        Reason.SIGNATURE_INVALID,
    ),
    "payload: trailing byte appended, not re-signed": (
        _payload_with_trailing_byte,
        Reason.SIGNATURE_INVALID,
    ),
    "payload: annotation injected, not re-signed": (
        lambda kit: _base(kit).with_payload(payload_bytes(DIGEST, REFERENCE, annotations={"env": "prod"})),
        Reason.SIGNATURE_INVALID,
    ),
    "payload: digest of another image, re-signed": (
        _resigned_payload(
            lambda d: _set_path(d, ("critical", "image", "docker-manifest-digest"), OTHER_DIGEST)
        ),
        Reason.PAYLOAD_DIGEST_MISMATCH,
    ),
    "payload: digest removed, re-signed": (
        _resigned_payload(lambda d: _critical(d).pop("image")),
        Reason.PAYLOAD_INVALID,
    ),
    "payload: type changed, re-signed": (
        _resigned_payload(lambda d: _set_path(d, ("critical", "type"), "cosign container image attestation")),
        Reason.PAYLOAD_INVALID,
    ),
    "payload: critical removed, re-signed": (
        _resigned_payload(lambda d: d.pop("critical")),
        Reason.PAYLOAD_INVALID,
    ),
    "payload: not JSON, re-signed": (_raw_resigned_payload(b"not json at all"), Reason.PAYLOAD_INVALID),
    "payload: duplicate digest key, re-signed": (
        _raw_resigned_payload(
            b'{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"'
            + DIGEST.encode()
            + b'","docker-manifest-digest":"'
            + OTHER_DIGEST.encode()
            + b'"},"type":"cosign container image signature"},"optional":null}'
        ),
        Reason.PAYLOAD_INVALID,
    ),
    # --- the signature annotation
    "signature: removed": (
        lambda kit: _base(kit).with_annotation(ANNOTATION_SIGNATURE, None),
        Reason.SIGNATURE_INVALID,
    ),
    "signature: not base64": (
        lambda kit: _base(kit).with_annotation(ANNOTATION_SIGNATURE, "%%% not base64 %%%"),
        Reason.SIGNATURE_INVALID,
    ),
    "signature: one bit flipped": (
        _signature_bit_flipped,
        Reason.SIGNATURE_INVALID,
    ),
    "signature: by another key": (_signed_by_other_key, Reason.SIGNATURE_INVALID),
    # --- the certificate annotation
    "certificate: removed (key-based)": (
        lambda kit: _base(kit).with_annotation(ANNOTATION_CERTIFICATE, None),
        Reason.NOT_KEYLESS,
    ),
    "certificate: garbage PEM": (
        lambda kit: _base(kit).with_annotation(
            ANNOTATION_CERTIFICATE, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        ),
        Reason.CERTIFICATE_INVALID,
    ),
    "certificate: another valid leaf": (_other_leaf_certificate, Reason.SIGNATURE_INVALID),
    "certificate: codeSigning EKU dropped": (_with_leaf(eku=None), Reason.CERTIFICATE_INVALID),
    "certificate: signed by a foreign key": (
        _with_leaf(cert_signing_key=ec.generate_private_key(ec.SECP384R1())),
        Reason.CERTIFICATE_CHAIN_INVALID,
    ),
    "certificate: from an untrusted CA": (
        lambda kit: kit.sign_image(DIGEST, REFERENCE, ca=kit.new_ca()),
        Reason.CERTIFICATE_CHAIN_INVALID,
    ),
    "certificate: SCT omitted": (_with_leaf(sct=False), Reason.SCT_MISSING),
    "certificate: SCT by an unknown log key": (
        _with_leaf(sct_signing_key=ec.generate_private_key(ec.SECP256R1())),
        Reason.SCT_INVALID,
    ),
    "certificate: SCT over the wrong issuer key hash": (
        _with_leaf(sct_issuer_key_hash=b"\x00" * 32),
        Reason.SCT_INVALID,
    ),
    "certificate: SCT as an x509 entry, not a precert": (_with_leaf(sct_entry_type=0), Reason.SCT_INVALID),
    "certificate: issuer extensions omitted": (_with_leaf(issuer_extensions="none"), Reason.ISSUER_MISSING),
    "certificate: SAN omitted": (_with_leaf(san=False), Reason.CERTIFICATE_INVALID),
    # --- the chain annotation
    "chain: garbage PEM": (
        lambda kit: _base(kit).with_annotation(
            ANNOTATION_CHAIN, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        ),
        Reason.CERTIFICATE_CHAIN_INVALID,
    ),
    "chain: of another CA": (_chain_of_other_ca, Reason.CERTIFICATE_CHAIN_INVALID),
    "chain: intermediate missing": (_chain_without_intermediate, Reason.CERTIFICATE_CHAIN_INVALID),
    # --- the Rekor bundle annotation
    "bundle: removed": (
        lambda kit: _base(kit).with_annotation(ANNOTATION_BUNDLE, None),
        Reason.TLOG_ENTRY_MISSING,
    ),
    "bundle: not JSON": (
        lambda kit: _base(kit).with_annotation(ANNOTATION_BUNDLE, "{not json"),
        Reason.TLOG_ENTRY_INVALID,
    ),
    "bundle: SET one bit flipped": (
        _bundle_json(lambda d: d.update(SignedEntryTimestamp=_flip_b64(str(d["SignedEntryTimestamp"])))),
        Reason.TLOG_ENTRY_INVALID,
    ),
    "bundle: SET removed": (_bundle_json(lambda d: d.pop("SignedEntryTimestamp")), Reason.TLOG_ENTRY_INVALID),
    "bundle: logIndex changed, SET not re-signed": (
        _bundle_field(lambda b: dataclasses.replace(b, log_index=b.log_index + 1)),
        Reason.TLOG_ENTRY_INVALID,
    ),
    "bundle: integratedTime changed, SET not re-signed": (
        _bundle_field(lambda b: dataclasses.replace(b, integrated_time=b.integrated_time - 1)),
        Reason.TLOG_ENTRY_INVALID,
    ),
    "bundle: logID of an unknown log": (
        lambda kit: kit.rebundle(_base(kit), rekor=kit.new_log_key("https://rekor.other.test")),
        Reason.TLOG_ENTRY_INVALID,
    ),
    "bundle: body edited, SET not re-signed": (
        _bundle_json(
            lambda d: _set_path(
                d,
                ("Payload", "body"),
                base64.b64encode(b'{"apiVersion":"0.0.1","kind":"hashedrekord"}').decode(),
            )
        ),
        Reason.TLOG_ENTRY_INVALID,
    ),
    "bundle: integratedTime before the leaf, re-signed": (
        lambda kit: _leaf_window(kit, after=False),
        Reason.CERTIFICATE_EXPIRED,
    ),
    "bundle: integratedTime after the leaf, re-signed": (
        lambda kit: _leaf_window(kit, after=True),
        Reason.CERTIFICATE_EXPIRED,
    ),
    # --- the Rekor body (SET re-signed, so the body check itself must catch it)
    "body: hash of another payload": (
        _body(lambda b: _set_path(_spec(b), ("data", "hash", "value"), "00" * 32)),
        Reason.TLOG_BODY_MISMATCH,
    ),
    "body: hash algorithm changed": (
        _body(lambda b: _set_path(_spec(b), ("data", "hash", "algorithm"), "sha512")),
        Reason.TLOG_BODY_MISMATCH,
    ),
    "body: signature of another": (_body_of_other_signature, Reason.TLOG_BODY_MISMATCH),
    "body: certificate of another leaf": (_body_of_other_certificate, Reason.TLOG_BODY_MISMATCH),
    "body: rekord entry for another payload": (_rekord_of_other_payload, Reason.TLOG_BODY_MISMATCH),
    "body: unknown kind": (_body(lambda b: b.update(kind="intoto")), Reason.TLOG_ENTRY_INVALID),
    "body: unknown apiVersion": (_body(lambda b: b.update(apiVersion="9.9.9")), Reason.TLOG_ENTRY_INVALID),
}


@pytest.fixture(scope="module")
def trust_root(sigstore_kit: SigstoreKit) -> TrustRoot:
    return TrustRoot.from_json(sigstore_kit.trusted_root_json(), "kit")


def test_matrix_is_large_enough() -> None:
    assert len(MATRIX) >= 30


def test_untampered_layer_verifies(sigstore_kit: SigstoreKit, trust_root: TrustRoot) -> None:
    verified = verify_simplesigning(
        _base(sigstore_kit).to_signature(),
        digest=Digest.parse(DIGEST),
        trust_root=trust_root,
        options=VerifyOptions(),
        now=sigstore_kit.now,
    )
    assert verified.subject == Identity.email("alice@example.com").subject


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_tampered_field_is_rejected_with_its_reason(
    case: str, sigstore_kit: SigstoreKit, trust_root: TrustRoot
) -> None:
    make, expected = MATRIX[case]
    layer = make(sigstore_kit)
    with pytest.raises(ImprimaturError) as caught:
        verify_simplesigning(
            layer.to_signature(),
            digest=Digest.parse(DIGEST),
            trust_root=trust_root,
            options=VerifyOptions(),
            now=sigstore_kit.now,
        )
    assert caught.value.reason == expected, f"{case}: {caught.value}"
