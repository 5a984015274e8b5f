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
from controller.verify import certificate
from controller.verify.certificate import PemError, check_leaf_profile, parse_leaf, pem_to_der, tbs_and_issuer
from controller.verify.limits import MAX_CACHED_ISSUER_NAMES
from tests.verify.builders import LeafSpec, Sigstore, pem
from tests.verify.realdata import CONNAISSEUR, RATIFY, SALRASHID, SIGSTORE_RS, legacy_signature


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
        leaf = check_leaf_profile(bytes(der))
    except EvidenceError as e:
        assert e.reason is Reason.CERTIFICATE_INVALID
    else:  # what the leaf sliced from its DER is what the library reads and re-encodes
        assert leaf.tbs == leaf.cert.tbs_certificate_bytes
        assert leaf.issuer == leaf.cert.issuer
        assert leaf.issuer_der == leaf.cert.issuer.public_bytes()


def _certificates(sigstore: Sigstore) -> list[x509.Certificate]:
    real = [
        x509.load_pem_x509_certificate(
            legacy_signature(case)[0].annotations["dev.sigstore.cosign/certificate"].encode()
        )
        for case in (CONNAISSEUR, RATIFY, SALRASHID, SIGSTORE_RS)
    ]
    issued = [
        sigstore.issue_leaf(LeafSpec(key=sigstore.leaf_key(kind)))[1]
        for kind in ("p256", "p384", "rsa2048", "ed25519")
    ]
    return [*real, *issued, sigstore.intermediate, sigstore.root]


def test_tbs_and_issuer_are_the_library_s_bytes(sigstore: Sigstore) -> None:
    for cert in _certificates(sigstore):
        tbs, issuer = tbs_and_issuer(_der(cert))
        assert tbs == cert.tbs_certificate_bytes
        assert issuer == cert.issuer.public_bytes()


def test_a_leaf_carries_its_tbs_issuer_and_pem(sigstore: Sigstore) -> None:
    for cert in _certificates(sigstore)[:-2]:
        text = pem(cert).encode()
        leaf = parse_leaf(text)
        assert (leaf.tbs, leaf.issuer, leaf.issuer_der) == (
            cert.tbs_certificate_bytes,
            cert.issuer,
            cert.issuer.public_bytes(),
        )
        assert leaf.pem == text
        assert check_leaf_profile(_der(cert)).pem is None


@pytest.mark.parametrize(
    "der",
    [b"", b"\x30", b"\x30\x03\x30\x01", b"\x31\x00", b"\x30\x85\x00\x00\x00\x00\x01", b"\x30\x80"],
)
def test_tbs_and_issuer_reject_other_shapes(der: bytes) -> None:
    with pytest.raises((ValueError, IndexError)):
        tbs_and_issuer(der)


def test_leaves_of_one_ca_share_one_issuer_name(sigstore: Sigstore) -> None:
    first, second = (check_leaf_profile(_der(sigstore.issue_leaf()[1])) for _ in range(2))
    assert first.issuer is second.issuer
    assert first.issuer == sigstore.intermediate.subject


def test_the_issuer_name_memo_is_bounded(sigstore: Sigstore) -> None:
    names = certificate._ISSUER_NAMES
    try:
        names.clear()
        for serial in range(MAX_CACHED_ISSUER_NAMES):  # full, with keys no certificate's issuer has
            names[serial.to_bytes(4, "big")] = sigstore.root.subject
        leaf = check_leaf_profile(_der(sigstore.issue_leaf()[1]))
        assert leaf.issuer == sigstore.intermediate.subject
        assert list(names.values()) == [leaf.issuer]  # emptied, then this issuer
    finally:
        names.clear()
