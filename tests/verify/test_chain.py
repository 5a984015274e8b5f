"""Path validation from a Fulcio leaf to a trusted CA (step 6)."""

from __future__ import annotations

import base64
import copy
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.name import _ASN1Type

from controller.errors import EvidenceError, Reason
from controller.verify import TrustRoot
from controller.verify.certificate import Leaf, check_leaf_profile, parse_leaf
from controller.verify.chain import parse_chain_annotation, verify_chain
from tests.verify.builders import LeafSpec, Sigstore, ca_certificate, pem
from tests.verify.realdata import CONNAISSEUR, SIGSTORE_RS, legacy_signature


def _leaf(sigstore: Sigstore, spec: LeafSpec | None = None) -> Leaf:
    _, cert = sigstore.issue_leaf(spec)
    return check_leaf_profile(cert.public_bytes(serialization.Encoding.DER))


def _reason(leaf: Leaf, root: TrustRoot, **kwargs: Any) -> Reason:
    kwargs.setdefault("chain_pem", None)
    with pytest.raises(EvidenceError) as info:
        verify_chain(leaf, trust_root=root, **kwargs)
    return info.value.reason


def test_leaf_chains_through_the_intermediate(sigstore: Sigstore, trust_root: TrustRoot) -> None:
    path = verify_chain(_leaf(sigstore), at=sigstore.now, trust_root=trust_root, chain_pem=None)
    assert [c.subject for c in path] == [sigstore.intermediate.subject, sigstore.root.subject]


def test_leaf_issued_by_the_root_directly(sigstore: Sigstore, trust_root: TrustRoot) -> None:
    leaf = _leaf(sigstore, LeafSpec(issuer=(sigstore.root, sigstore.root_key)))
    path = verify_chain(leaf, at=sigstore.now, trust_root=trust_root, chain_pem=pem(sigstore.root).encode())
    assert [c.subject for c in path] == [sigstore.root.subject]


def test_real_2021_leaf_chains_to_the_2021_root(public_good: TrustRoot) -> None:
    sig, _ = legacy_signature(SIGSTORE_RS)
    leaf = parse_leaf(sig.annotations["dev.sigstore.cosign/certificate"].encode())
    path = verify_chain(leaf, at=leaf.not_before, trust_root=public_good, chain_pem=None)
    assert path == public_good.certificate_authorities[0].chain


def test_real_leaf_chain_annotation_matches(public_good: TrustRoot) -> None:
    sig, _ = legacy_signature(CONNAISSEUR)
    leaf = parse_leaf(sig.annotations["dev.sigstore.cosign/certificate"].encode())
    chain_pem = sig.annotations["dev.sigstore.cosign/chain"].encode()
    path = verify_chain(leaf, at=leaf.not_before, trust_root=public_good, chain_pem=chain_pem)
    assert path == public_good.certificate_authorities[1].chain


def test_time_outside_the_ca_validity_is_chain_invalid(sigstore: Sigstore) -> None:
    def later(doc: dict[str, Any]) -> None:
        doc["certificateAuthorities"][0]["validFor"] = {
            "start": (sigstore.now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        }

    root = sigstore.trust_root(later)
    assert _reason(_leaf(sigstore), root, at=sigstore.now) is Reason.CERTIFICATE_CHAIN_INVALID


def test_leaf_outside_its_validity_is_certificate_expired(sigstore: Sigstore, trust_root: TrustRoot) -> None:
    leaf = _leaf(sigstore)
    assert _reason(leaf, trust_root, at=leaf.not_after + timedelta(seconds=1)) is Reason.CERTIFICATE_EXPIRED
    assert _reason(leaf, trust_root, at=leaf.not_before - timedelta(seconds=1)) is Reason.CERTIFICATE_EXPIRED


def test_expired_intermediate_is_certificate_expired() -> None:
    sigstore = Sigstore()
    sigstore.intermediate = ca_certificate(
        "test-intermediate",
        sigstore.intermediate_key,
        issuer=(sigstore.root, sigstore.root_key),
        not_before=sigstore.now - timedelta(days=30),
        not_after=sigstore.now - timedelta(days=1),
        path_length=0,
    )
    root = sigstore.trust_root()
    assert _reason(_leaf(sigstore), root, at=sigstore.now) is Reason.CERTIFICATE_EXPIRED


def test_untrusted_issuer_is_chain_invalid(trust_root: TrustRoot) -> None:
    stranger = Sigstore()  # same names, different keys
    assert _reason(_leaf(stranger), trust_root, at=stranger.now) is Reason.CERTIFICATE_CHAIN_INVALID


def test_issuer_that_is_not_a_ca_is_chain_invalid() -> None:
    sigstore = Sigstore()
    sigstore.intermediate = ca_certificate(
        "test-intermediate",
        sigstore.intermediate_key,
        issuer=(sigstore.root, sigstore.root_key),
        not_before=sigstore.now - timedelta(days=30),
        not_after=sigstore.now + timedelta(days=30),
        ca=False,
    )
    assert (
        _reason(_leaf(sigstore), sigstore.trust_root(), at=sigstore.now) is Reason.CERTIFICATE_CHAIN_INVALID
    )


def test_issuer_without_key_cert_sign_is_chain_invalid() -> None:
    sigstore = Sigstore()
    sigstore.intermediate = ca_certificate(
        "test-intermediate",
        sigstore.intermediate_key,
        issuer=(sigstore.root, sigstore.root_key),
        not_before=sigstore.now - timedelta(days=30),
        not_after=sigstore.now + timedelta(days=30),
        key_cert_sign=False,
    )
    assert (
        _reason(_leaf(sigstore), sigstore.trust_root(), at=sigstore.now) is Reason.CERTIFICATE_CHAIN_INVALID
    )


def test_path_length_constraint_is_enforced() -> None:
    sigstore = Sigstore()
    sigstore.root = ca_certificate(
        "test-root",
        sigstore.root_key,
        not_before=sigstore.now - timedelta(days=30),
        not_after=sigstore.now + timedelta(days=30),
        path_length=0,  # no intermediate allowed below the root
    )
    sigstore.intermediate = ca_certificate(
        "test-intermediate",
        sigstore.intermediate_key,
        issuer=(sigstore.root, sigstore.root_key),
        not_before=sigstore.now - timedelta(days=30),
        not_after=sigstore.now + timedelta(days=30),
        path_length=0,
    )
    root = sigstore.trust_root()
    assert _reason(_leaf(sigstore), root, at=sigstore.now) is Reason.CERTIFICATE_CHAIN_INVALID
    # Directly below the root, the path is fine.
    direct = _leaf(sigstore, LeafSpec(issuer=(sigstore.root, sigstore.root_key)))
    assert verify_chain(direct, at=sigstore.now, trust_root=root, chain_pem=None)


@pytest.mark.parametrize("chain", ["intermediate", "root", "reversed", "extra", "garbage", "stranger"])
def test_chain_annotation_must_be_exactly_the_path(
    chain: str, sigstore: Sigstore, trust_root: TrustRoot
) -> None:
    stranger = Sigstore()
    text = {
        "intermediate": pem(sigstore.intermediate),
        "root": pem(sigstore.root),
        "reversed": pem(sigstore.root) + pem(sigstore.intermediate),
        "extra": pem(sigstore.intermediate) + pem(sigstore.root) + pem(sigstore.root),
        "garbage": "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
        "stranger": pem(stranger.intermediate) + pem(stranger.root),
    }[chain]
    leaf = _leaf(sigstore)
    assert (
        _reason(leaf, trust_root, at=sigstore.now, chain_pem=text.encode())
        is Reason.CERTIFICATE_CHAIN_INVALID
    )


def test_later_candidate_is_tried_when_the_first_has_expired() -> None:
    sigstore = Sigstore()
    current = sigstore.intermediate
    expired = ca_certificate(
        "test-intermediate",
        sigstore.intermediate_key,
        issuer=(sigstore.root, sigstore.root_key),
        not_before=sigstore.now - timedelta(days=60),
        not_after=sigstore.now - timedelta(days=30),
        path_length=0,
    )

    def two_cas(doc: dict[str, Any]) -> None:
        first = doc["certificateAuthorities"][0]
        second = copy.deepcopy(first)
        first["certChain"]["certificates"][0]["rawBytes"] = base64.b64encode(
            expired.public_bytes(serialization.Encoding.DER)
        ).decode()
        doc["certificateAuthorities"].append(second)

    root = sigstore.trust_root(two_cas)
    path = verify_chain(_leaf(sigstore), at=sigstore.now, trust_root=root, chain_pem=None)
    assert path[0].cert == current


def test_chain_annotation_is_decoded_once_per_text(sigstore: Sigstore) -> None:
    text = (pem(sigstore.intermediate) + pem(sigstore.root)).encode()
    first = parse_chain_annotation(text)
    assert first == (
        sigstore.intermediate.public_bytes(serialization.Encoding.DER),
        sigstore.root.public_bytes(serialization.Encoding.DER),
    )
    assert parse_chain_annotation(bytes(text)) is first  # memoized by value
    bad = b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"
    for _ in range(2):  # a failure is raised every time, never remembered as a result
        with pytest.raises(EvidenceError) as info:
            parse_chain_annotation(bad)
        assert info.value.reason is Reason.CERTIFICATE_CHAIN_INVALID


def test_issuer_name_equal_but_encoded_differently_still_finds_its_ca(
    sigstore: Sigstore, trust_root: TrustRoot
) -> None:
    # The leaf names its issuer with PrintableStrings where the CA's subject has UTF8Strings: the
    # names are equal (as X.509 compares them), their DER is not, so the lookup by DER misses.
    issuer = x509.Name(
        [
            x509.NameAttribute(attribute.oid, str(attribute.value), _type=_ASN1Type.PrintableString)
            for attribute in sigstore.intermediate.subject
        ]
    )
    _, template = sigstore.issue_leaf(LeafSpec(sct=False))
    builder = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(issuer)
        .public_key(template.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(template.not_valid_before_utc)
        .not_valid_after(template.not_valid_after_utc)
    )
    for extension in template.extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    cert = builder.sign(sigstore.intermediate_key, hashes.SHA384())
    leaf = check_leaf_profile(cert.public_bytes(serialization.Encoding.DER))
    assert leaf.issuer == sigstore.intermediate.subject
    assert leaf.issuer_der != sigstore.intermediate.subject.public_bytes()
    path = verify_chain(leaf, at=sigstore.now, trust_root=trust_root, chain_pem=None)
    assert [c.subject for c in path] == [sigstore.intermediate.subject, sigstore.root.subject]
