"""PEM decoding and the Fulcio leaf profile (step 3)."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import EvidenceError, Reason
from controller.verify.certificate import PemError, check_leaf_profile, parse_leaf, pem_to_der
from tests.verify.builders import LeafSpec, Sigstore, pem
from tests.verify.realdata import CONNAISSEUR, SIGSTORE_RS, legacy_signature


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_pem_blocks_decode_with_any_surrounding_whitespace(sigstore: Sigstore) -> None:
    text = (
        "\r\n " + pem(sigstore.intermediate).replace("\n", "\r\n") + "\n\n" + pem(sigstore.root) + "\n"
    ).encode()
    assert pem_to_der(text, max_certificates=2) == [_der(sigstore.intermediate), _der(sigstore.root)]


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"   \n",
        b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n",  # bad padding
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        b"junk-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\ntrailing",
    ],
)
def test_bad_pem_is_rejected(text: bytes) -> None:
    with pytest.raises(PemError):
        pem_to_der(text, max_certificates=4)


def test_pem_count_is_bounded(sigstore: Sigstore) -> None:
    text = (pem(sigstore.root) * 3).encode()
    assert len(pem_to_der(text, max_certificates=3)) == 3
    with pytest.raises(PemError):
        pem_to_der(text, max_certificates=2)


@pytest.mark.parametrize("case", [CONNAISSEUR, SIGSTORE_RS])
def test_real_leaves_pass_the_profile(case: str) -> None:
    sig, _ = legacy_signature(case)
    leaf = parse_leaf(sig.annotations["dev.sigstore.cosign/certificate"].encode())
    assert leaf.not_before < leaf.not_after
    assert leaf.issuer == leaf.cert.issuer


def test_two_certificates_in_the_leaf_annotation_are_invalid(sigstore: Sigstore) -> None:
    _, cert = sigstore.issue_leaf()
    with pytest.raises(EvidenceError) as info:
        parse_leaf((pem(cert) + pem(cert)).encode())
    assert info.value.reason is Reason.CERTIFICATE_INVALID


PROFILE_VIOLATIONS = {
    "no codeSigning": LeafSpec(eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)),
    "no digitalSignature": LeafSpec(key_usage_digital_signature=False),
    "a CA": LeafSpec(basic_constraints_ca=True),
    "unknown critical extension": LeafSpec(
        extra_extensions=((x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), b"\x05\x00"), True),)
    ),
    "Ed448 key": LeafSpec(key=ed448.Ed448PrivateKey.generate()),  # type: ignore[arg-type]
    "P-224 key": LeafSpec(key=ec.generate_private_key(ec.SECP224R1())),
}


@pytest.mark.parametrize("name", sorted(PROFILE_VIOLATIONS))
def test_profile_violations_are_certificate_invalid(name: str, sigstore: Sigstore) -> None:
    _, cert = sigstore.issue_leaf(PROFILE_VIOLATIONS[name])
    with pytest.raises(EvidenceError) as info:
        check_leaf_profile(_der(cert))
    assert info.value.reason is Reason.CERTIFICATE_INVALID


def test_basic_constraints_not_ca_is_fine(sigstore: Sigstore) -> None:
    _, cert = sigstore.issue_leaf(LeafSpec(basic_constraints_ca=False))
    assert check_leaf_profile(_der(cert)).der == _der(cert)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_der_raises_only_certificate_invalid(data: bytes) -> None:
    with pytest.raises(EvidenceError) as info:
        check_leaf_profile(data)
    assert info.value.reason is Reason.CERTIFICATE_INVALID


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_pem_raises_only_certificate_invalid(data: bytes) -> None:
    text = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(data) + b"-----END CERTIFICATE-----\n"
    for candidate in (data, text):
        with pytest.raises(EvidenceError) as info:
            parse_leaf(candidate)
        assert info.value.reason is Reason.CERTIFICATE_INVALID


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_bit_flipped_real_leaf_parses_or_raises_certificate_invalid(position: int, bit: int) -> None:
    sig, _ = legacy_signature(CONNAISSEUR)
    der = bytearray(
        pem_to_der(sig.annotations["dev.sigstore.cosign/certificate"].encode(), max_certificates=1)[0]
    )
    der[position % len(der)] ^= 1 << bit
    try:
        check_leaf_profile(bytes(der))
    except EvidenceError as e:
        assert e.reason is Reason.CERTIFICATE_INVALID
