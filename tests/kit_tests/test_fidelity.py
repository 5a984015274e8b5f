"""The kit's output has the same bytes and shapes as real production cosign signatures."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.kit.oci import RawLayer, build_sig_image, config_blob
from tests.kit.sigstore import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    ANNOTATION_CHAIN,
    ANNOTATION_SIGNATURE,
    GOOGLE_ISSUER,
    Identity,
    SignedLayer,
    SigstoreKit,
    payload_bytes,
)
from tests.kit_tests.realdata import (
    CONNAISSEUR,
    LEGACY_CASES,
    RATIFY,
    SALRASHID,
    SIGSTORE_RS,
    real_data_dir,
    real_json,
    real_layer,
    shape,
)

CONNAISSEUR_DIGEST = "sha256:31dc72a13a0c34b40eb95419d2b2fd67320c856baf3b72da518023ee8d370aee"
CONNAISSEUR_REFERENCE = "index.docker.io/phbelitz/rekor-test"
CONNAISSEUR_CONFIG_DIGEST = "sha256:143de7881d07c46cbcbc8521cf2b6fc90caf6b0ec1db354d1621b081d4d53d05"


@pytest.fixture(scope="module")
def layer(sigstore_kit: SigstoreKit) -> SignedLayer:
    """The kit's default layer (email identity via GitHub OAuth, as the connaisseur case)."""
    return sigstore_kit.sign_image(CONNAISSEUR_DIGEST, CONNAISSEUR_REFERENCE)


def _leaf(annotations: dict[str, str]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(annotations[ANNOTATION_CERTIFICATE].encode())


def _chain(annotations: dict[str, str]) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(annotations[ANNOTATION_CHAIN].encode())


def _extension_layout(cert: x509.Certificate) -> list[tuple[str, bool]]:
    return [(ext.oid.dotted_string, ext.critical) for ext in cert.extensions]


def _decoded_body(annotations: dict[str, str]) -> dict[str, Any]:
    bundle = json.loads(annotations[ANNOTATION_BUNDLE])
    body: dict[str, Any] = json.loads(base64.b64decode(bundle["Payload"]["body"]))
    return body


# --- payload and annotations


def test_payload_is_byte_identical_to_the_real_connaisseur_payload() -> None:
    real = real_layer(CONNAISSEUR)
    assert payload_bytes(CONNAISSEUR_DIGEST, CONNAISSEUR_REFERENCE) == real.payload


@pytest.mark.parametrize("case", LEGACY_CASES)
def test_payload_rebuilds_every_real_payload_byte_for_byte(case: str) -> None:
    real = real_layer(case)
    parsed = json.loads(real.payload)
    rebuilt = payload_bytes(
        parsed["critical"]["image"]["docker-manifest-digest"],
        parsed["critical"]["identity"]["docker-reference"],
        parsed["optional"],
    )
    assert rebuilt == real.payload


def test_sign_image_payload_matches_real_bytes(layer: SignedLayer) -> None:
    assert layer.payload == real_layer(CONNAISSEUR).payload


def test_annotation_keys_match_real_layers(layer: SignedLayer) -> None:
    for case in (CONNAISSEUR, RATIFY, SALRASHID):
        assert list(layer.annotations) == list(real_layer(case).annotations)


def test_signature_annotation_is_asn1_ecdsa_like_real(layer: SignedLayer) -> None:
    real = base64.b64decode(real_layer(CONNAISSEUR).annotations[ANNOTATION_SIGNATURE])
    ours = layer.signature
    assert ours[0] == real[0] == 0x30  # DER SEQUENCE{r, s}
    assert 68 <= len(ours) <= 72


def test_certificate_and_chain_pem_framing_match_real(layer: SignedLayer) -> None:
    real = real_layer(CONNAISSEUR).annotations
    for key in (ANNOTATION_CERTIFICATE, ANNOTATION_CHAIN):
        assert layer.annotations[key].startswith("-----BEGIN CERTIFICATE-----\n")
        assert layer.annotations[key].endswith("\n") == real[key].endswith("\n")
        assert layer.annotations[key].count("BEGIN CERTIFICATE") == real[key].count("BEGIN CERTIFICATE")


# --- certificates


def test_leaf_extension_layout_matches_real_connaisseur_leaf(layer: SignedLayer) -> None:
    real = _leaf(real_layer(CONNAISSEUR).annotations)
    assert _extension_layout(layer.leaf.certificate) == _extension_layout(real)


def test_leaf_with_only_legacy_issuer_matches_real_ratify_leaf(sigstore_kit: SigstoreKit) -> None:
    leaf = sigstore_kit.issue_leaf(Identity.email("sozercan@gmail.com"), issuer_extensions="v1")
    assert _extension_layout(leaf.certificate) == _extension_layout(_leaf(real_layer(RATIFY).annotations))


def test_leaf_fulcio_extension_values_encoded_like_real(sigstore_kit: SigstoreKit) -> None:
    real = _leaf(real_layer(SALRASHID).annotations)
    ours = sigstore_kit.issue_leaf(
        Identity.email("cosign-svc-account@mineral-minutia-820.iam.gserviceaccount.com", GOOGLE_ISSUER)
    ).certificate
    for oid in ("1.3.6.1.4.1.57264.1.1", "1.3.6.1.4.1.57264.1.8"):
        real_ext = real.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value
        our_ext = ours.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value
        assert isinstance(real_ext, x509.UnrecognizedExtension)
        assert isinstance(our_ext, x509.UnrecognizedExtension)
        assert our_ext.value == real_ext.value
    assert ours.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == (
        real.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    )


def test_leaf_fields_match_real_leaf(layer: SignedLayer) -> None:
    real = _leaf(real_layer(CONNAISSEUR).annotations)
    ours = layer.leaf.certificate
    assert ours.version == real.version
    assert ours.signature_algorithm_oid == real.signature_algorithm_oid  # ecdsa-with-SHA384
    assert ours.subject == real.subject == x509.Name([])
    assert ours.issuer.public_bytes() == real.issuer.public_bytes()  # same names, same string types
    assert ours.not_valid_after_utc - ours.not_valid_before_utc == (
        real.not_valid_after_utc - real.not_valid_before_utc
    )
    our_key, real_key = ours.public_key(), real.public_key()
    assert isinstance(our_key, ec.EllipticCurvePublicKey)
    assert isinstance(real_key, ec.EllipticCurvePublicKey)
    assert our_key.curve.name == real_key.curve.name == "secp256r1"
    assert 0 < ours.serial_number < 1 << 160
    for cert in (ours, real):  # SKI is RFC 5280 method 1, as Fulcio computes it
        assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value == (
            x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
        )


def test_sct_layout_matches_real(layer: SignedLayer) -> None:
    real = _leaf(real_layer(CONNAISSEUR).annotations)
    [real_sct] = real.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    [our_sct] = layer.leaf.certificate.extensions.get_extension_for_class(
        x509.PrecertificateSignedCertificateTimestamps
    ).value
    assert our_sct.version == real_sct.version
    assert our_sct.entry_type == real_sct.entry_type
    assert type(our_sct.signature_hash_algorithm) is type(real_sct.signature_hash_algorithm)
    assert our_sct.signature_algorithm == real_sct.signature_algorithm
    assert our_sct.extension_bytes == real_sct.extension_bytes == b""
    assert len(our_sct.log_id) == len(real_sct.log_id) == 32


def test_chain_layout_matches_real_chain(layer: SignedLayer) -> None:
    real_chain = _chain(real_layer(CONNAISSEUR).annotations)
    our_chain = _chain(layer.annotations)
    assert len(our_chain) == len(real_chain) == 2
    for ours, real in zip(our_chain, real_chain, strict=True):
        assert _extension_layout(ours) == _extension_layout(real)
        assert ours.subject.public_bytes() == real.subject.public_bytes()
        assert ours.issuer.public_bytes() == real.issuer.public_bytes()
        assert ours.signature_algorithm_oid == real.signature_algorithm_oid
        assert ours.extensions.get_extension_for_class(x509.BasicConstraints).value == (
            real.extensions.get_extension_for_class(x509.BasicConstraints).value
        )
        assert ours.extensions.get_extension_for_class(x509.KeyUsage).value == (
            real.extensions.get_extension_for_class(x509.KeyUsage).value
        )
        our_key, real_key = ours.public_key(), real.public_key()
        assert isinstance(our_key, ec.EllipticCurvePublicKey)
        assert isinstance(real_key, ec.EllipticCurvePublicKey)
        assert our_key.curve.name == real_key.curve.name == "secp384r1"
    # The intermediate lives until the root's end, as in production.
    assert our_chain[0].not_valid_after_utc == our_chain[1].not_valid_after_utc


# --- bundle and Rekor body


def test_bundle_annotation_has_real_keys_and_types(layer: SignedLayer) -> None:
    real = json.loads(real_layer(CONNAISSEUR).annotations[ANNOTATION_BUNDLE])
    ours = json.loads(layer.annotations[ANNOTATION_BUNDLE])
    assert shape(ours) == shape(real)


def test_bundle_annotation_is_compact_like_real(layer: SignedLayer) -> None:
    real = real_layer(CONNAISSEUR).annotations[ANNOTATION_BUNDLE]
    ours = layer.annotations[ANNOTATION_BUNDLE]
    assert ours.startswith('{"SignedEntryTimestamp":"')
    assert json.dumps(json.loads(ours), separators=(",", ":")) == ours
    assert json.dumps(json.loads(real), separators=(",", ":")) == real


def test_hashedrekord_body_has_real_structure(layer: SignedLayer) -> None:
    real = real_layer(CONNAISSEUR)
    ours = _decoded_body(layer.annotations)
    real_body = _decoded_body(real.annotations)
    assert shape(ours) == shape(real_body)
    # Same field semantics as production: payload hash, signature annotation, PEM of the leaf.
    for body, signed in ((ours, layer.payload), (real_body, real.payload)):
        assert body["spec"]["data"]["hash"]["value"] == hashlib.sha256(signed).hexdigest()
    assert ours["spec"]["signature"]["content"] == layer.annotations[ANNOTATION_SIGNATURE]
    assert (
        base64.b64decode(ours["spec"]["signature"]["publicKey"]["content"]).decode()
        == (layer.annotations[ANNOTATION_CERTIFICATE])
    )


def test_hashedrekord_body_bytes_are_compact_like_real(layer: SignedLayer) -> None:
    for values in (layer.annotations, real_layer(CONNAISSEUR).annotations):
        raw = base64.b64decode(json.loads(values[ANNOTATION_BUNDLE])["Payload"]["body"])
        assert json.dumps(json.loads(raw), separators=(",", ":")).encode() == raw


def test_rekord_body_has_real_structure(sigstore_kit: SigstoreKit) -> None:
    real = _decoded_body(real_layer(SIGSTORE_RS).annotations)
    layer = sigstore_kit.sign_image(
        CONNAISSEUR_DIGEST, CONNAISSEUR_REFERENCE, rekor_kind="rekord", chain=False
    )
    assert shape(_decoded_body(layer.annotations)) == shape(real)
    assert set(layer.annotations) == set(real_layer(SIGSTORE_RS).annotations)  # no chain, as in 2021


# --- OCI


def test_config_blob_reproduces_the_connaisseur_config_digest() -> None:
    real = real_layer(CONNAISSEUR)
    manifest = real_json("legacy", CONNAISSEUR, "sig_manifest.json")
    config = config_blob([real.payload])
    assert len(config) == manifest["config"]["size"] == 233
    assert (
        "sha256:" + hashlib.sha256(config).hexdigest()
        == manifest["config"]["digest"]
        == CONNAISSEUR_CONFIG_DIGEST
    )


def test_sig_manifest_reproduces_the_connaisseur_manifest() -> None:
    real = real_layer(CONNAISSEUR)
    image = build_sig_image([RawLayer(real.payload, real.annotations)])
    assert json.loads(image.manifest) == real_json("legacy", CONNAISSEUR, "sig_manifest.json")
    assert shape(json.loads(image.manifest)) == shape(real_json("legacy", CONNAISSEUR, "sig_manifest.json"))


def test_sig_manifest_reproduces_the_two_layer_layers_section() -> None:
    folder = ("legacy", SALRASHID)
    published = real_json(*folder, "sig_manifest_as_published.json")
    blob = real_layer(SALRASHID).payload
    layers = [
        RawLayer(blob, real_json(*folder, "annotations_layer0_kms_key_signature.json")),
        RawLayer(blob, real_json(*folder, "annotations.json")),
    ]
    image = build_sig_image(layers)
    assert json.loads(image.manifest)["layers"] == published["layers"]
    # That image came from cosign 2.0, which stamped `created` with the wall clock (30 characters);
    # with one diff_id and one history entry per layer the size then matches too.
    assert (
        len(config_blob([blob, blob], created="2023-05-07T13:15:14.123456789Z"))
        == published["config"]["size"]
    )


# --- trusted root


def test_trusted_root_has_production_structure(sigstore_kit: SigstoreKit) -> None:
    production = real_json("trusted_root.production.json")
    ours = json.loads(sigstore_kit.trusted_root_json())
    assert list(ours) == list(production)
    assert ours["mediaType"] == production["mediaType"]
    for key in ("tlogs", "certificateAuthorities", "ctlogs"):
        production_shapes = shape(production[key])[1]
        assert ours[key], key
        for entry in ours[key]:
            assert shape(entry) in production_shapes, key
    assert ours["timestampAuthorities"] == []


def test_trusted_root_with_expired_ca_and_rotated_log_keeps_production_structure(
    sigstore_kit: SigstoreKit,
) -> None:
    production = real_json("trusted_root.production.json")
    now = sigstore_kit.now
    expired = sigstore_kit.new_ca(
        not_before=now - timedelta(days=4 * 365), not_after=now - timedelta(days=365), valid_until=now
    )
    old_ct = sigstore_kit.new_log_key("https://ctfe.sigstore.test/test", valid_until=now)
    ours = json.loads(
        sigstore_kit.trusted_root_json(cas=[expired, sigstore_kit.ca], ctlogs=[old_ct, sigstore_kit.ct_log])
    )
    assert shape(ours["certificateAuthorities"]) == shape(production["certificateAuthorities"])
    assert shape(ours["ctlogs"]) == shape(production["ctlogs"])


def test_trusted_root_bytes_are_laid_out_like_the_production_file(sigstore_kit: SigstoreKit) -> None:
    production = (real_data_dir() / "trusted_root.production.json").read_bytes()
    ours = sigstore_kit.trusted_root_json()
    assert ours.endswith(b"}\n") and production.endswith(b"}\n")
    assert ours.startswith(b'{\n  "mediaType": ') and production.startswith(b'{\n  "mediaType": ')
