"""Subject, issuer and claims from Fulcio certificates (step 8)."""

from __future__ import annotations

import contextlib

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import EvidenceError, Reason
from controller.model import FULCIO_CLAIM_NAMES
from controller.verify.identity import (
    DER_CLAIMS,
    RAW_CLAIMS,
    decode_der_utf8string,
    extract_identity,
)
from tests.verify.builders import USERNAME_OID, LeafSpec, Sigstore, der_utf8
from tests.verify.realdata import CONNAISSEUR, RATIFY, SIGSTORE_RS, legacy_signature


def _identity(sigstore: Sigstore, spec: LeafSpec, *, require_issuer: bool = True):  # type: ignore[no-untyped-def]
    _, cert = sigstore.issue_leaf(spec)
    return extract_identity(cert.extensions, require_issuer=require_issuer)


def _reason(sigstore: Sigstore, spec: LeafSpec, *, require_issuer: bool = True) -> Reason:
    with pytest.raises(EvidenceError) as info:
        _identity(sigstore, spec, require_issuer=require_issuer)
    return info.value.reason


def _real_extensions(case: str) -> x509.Extensions:
    sig, _ = legacy_signature(case)
    return x509.load_pem_x509_certificate(
        sig.annotations["dev.sigstore.cosign/certificate"].encode()
    ).extensions


def test_real_identity_with_both_issuer_extensions() -> None:
    identity = extract_identity(_real_extensions(CONNAISSEUR), require_issuer=True)
    assert (identity.subject, identity.issuer, identity.claims) == (
        "philipp.belitz@securesystems.de",
        "https://github.com/login/oauth",
        {},
    )


def test_real_identity_with_only_the_legacy_issuer_extension() -> None:
    identity = extract_identity(_real_extensions(RATIFY), require_issuer=True)
    assert identity.issuer == "https://github.com/login/oauth"


def test_real_2021_certificate_has_no_issuer() -> None:
    with pytest.raises(EvidenceError) as info:
        extract_identity(_real_extensions(SIGSTORE_RS), require_issuer=True)
    assert info.value.reason is Reason.ISSUER_MISSING
    assert extract_identity(_real_extensions(SIGSTORE_RS), require_issuer=False).issuer == ""


def test_uri_subject(sigstore: Sigstore) -> None:
    uri = "https://github.com/acme/app/.github/workflows/ci.yml@refs/heads/main"
    assert _identity(sigstore, LeafSpec(san=x509.UniformResourceIdentifier(uri))).subject == uri


def test_username_othername_subject(sigstore: Sigstore) -> None:
    san = x509.OtherName(USERNAME_OID, der_utf8("alice!example.com"))
    assert _identity(sigstore, LeafSpec(san=san)).subject == "alice!example.com"


def test_issuer_v2_wins_over_missing_v1(sigstore: Sigstore) -> None:
    assert (
        _identity(sigstore, LeafSpec(issuer_v1=None, issuer_v2="https://v2.example")).issuer
        == "https://v2.example"
    )


def test_disagreeing_issuers_are_certificate_invalid(sigstore: Sigstore) -> None:
    spec = LeafSpec(issuer_v1="https://a.example", issuer_v2="https://b.example")
    assert _reason(sigstore, spec) is Reason.CERTIFICATE_INVALID


def test_empty_issuer_is_issuer_missing(sigstore: Sigstore) -> None:
    assert _reason(sigstore, LeafSpec(issuer_v1=None, issuer_v2="")) is Reason.ISSUER_MISSING


@pytest.mark.parametrize(
    "san",
    [
        [x509.RFC822Name("a@example.com"), x509.RFC822Name("b@example.com")],
        x509.DNSName("example.com"),
        x509.OtherName(x509.ObjectIdentifier("1.2.3"), der_utf8("x")),
        x509.OtherName(USERNAME_OID, b"\x13\x01x"),  # PrintableString, not UTF8String
        x509.OtherName(USERNAME_OID, der_utf8("")),  # empty username
    ],
)
def test_unsupported_subjects_are_certificate_invalid(san: object, sigstore: Sigstore) -> None:
    assert _reason(sigstore, LeafSpec(san=san)) is Reason.CERTIFICATE_INVALID  # type: ignore[arg-type]


def test_every_claim_oid_maps_to_its_camel_case_name(sigstore: Sigstore) -> None:
    raw = {oid.dotted_string: f"raw-{name}".encode() for oid, name in RAW_CLAIMS.items()}
    der = {oid.dotted_string: der_utf8(f"der-{name}") for oid, name in DER_CLAIMS.items()}
    identity = _identity(sigstore, LeafSpec(raw_claims={**raw, **der}))
    expected = {name: f"raw-{name}" for name in RAW_CLAIMS.values()} | {
        name: f"der-{name}" for name in DER_CLAIMS.values()
    }
    assert identity.claims == expected
    assert set(identity.claims) == set(FULCIO_CLAIM_NAMES)  # what policy/ can match on


@pytest.mark.parametrize(
    "claims",
    [
        {"1.3.6.1.4.1.57264.1.12": b"https://not-der.example"},
        {"1.3.6.1.4.1.57264.1.8": b"https://not-der.example"},
        {"1.3.6.1.4.1.57264.1.5": b"\xff\xfe"},
    ],
)
def test_badly_encoded_claims_are_certificate_invalid(claims: dict[str, bytes], sigstore: Sigstore) -> None:
    assert _reason(sigstore, LeafSpec(issuer_v2=None, raw_claims=claims)) is Reason.CERTIFICATE_INVALID


def test_unknown_sigstore_oids_are_ignored(sigstore: Sigstore) -> None:
    claims = {"1.3.6.1.4.1.57264.1.99": der_utf8("future")}
    assert _identity(sigstore, LeafSpec(raw_claims=claims)).claims == {}


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"\x0c\x00", ""),
        (b"\x0c\x03abc", "abc"),
        (der_utf8("x" * 200), "x" * 200),
        (der_utf8("y" * 70000), "y" * 70000),
        (der_utf8("\u00e9"), "\u00e9"),
    ],
)
def test_der_utf8string(data: bytes, text: str) -> None:
    assert decode_der_utf8string(data) == text


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x0c",
        b"\x13\x01a",  # PrintableString
        b"\x0c\x02a",  # short
        b"\x0c\x01ab",  # trailing
        b"\x0c\x81\x01a",  # non-minimal long form
        b"\x0c\x82\x00\x81" + b"a" * 129,  # leading zero length byte
        b"\x0c\x80",  # indefinite length
        b"\x0c\x02\xff\xfe",  # not UTF-8
    ],
)
def test_bad_der_utf8string(data: bytes) -> None:
    with pytest.raises(ValueError, match=r".+"):
        decode_der_utf8string(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_der_decodes_or_raises_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        decode_der_utf8string(data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300).filter(lambda t: all(not 0xD800 <= ord(c) <= 0xDFFF for c in t)))
def test_der_utf8string_round_trips(text: str) -> None:
    assert decode_der_utf8string(der_utf8(text)) == text
