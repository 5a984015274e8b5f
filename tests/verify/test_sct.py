"""The embedded SCT (step 7)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sigstore._internal.sct import _pack_digitally_signed  # an independent oracle for the RFC 6962 bytes

from controller.errors import EvidenceError, Reason
from controller.verify import TrustRoot
from controller.verify.certificate import Leaf, check_leaf_profile, parse_leaf
from controller.verify.sct import signed_data, verify_embedded_sct
from controller.verify.trustroot import CaCertificate
from tests.verify.builders import LeafSpec, Sigstore
from tests.verify.realdata import CONNAISSEUR, RATIFY, SALRASHID, legacy_signature


def _real_leaf(case: str) -> Leaf:
    sig, _ = legacy_signature(case)
    return parse_leaf(sig.annotations["dev.sigstore.cosign/certificate"].encode())


def _issuer(root: TrustRoot, leaf: Leaf) -> CaCertificate:
    ((authority, position),) = root.issuers_named(leaf.issuer)
    return authority.chain[position]


def _leaf(sigstore: Sigstore, spec: LeafSpec | None = None) -> Leaf:
    _, cert = sigstore.issue_leaf(spec)
    return check_leaf_profile(cert.public_bytes(serialization.Encoding.DER))


def _reason(*args: Any) -> Reason:
    with pytest.raises(EvidenceError) as info:
        verify_embedded_sct(*args)
    return info.value.reason


@pytest.mark.parametrize("case", [CONNAISSEUR, RATIFY, SALRASHID])
def test_real_scts_verify(case: str, public_good: TrustRoot) -> None:
    leaf = _real_leaf(case)
    verify_embedded_sct(leaf, _issuer(public_good, leaf), public_good)


def test_signed_data_matches_sigstore_python(public_good: TrustRoot) -> None:
    leaf = _real_leaf(CONNAISSEUR)
    issuer = _issuer(public_good, leaf)
    (sct,) = leaf.cert.extensions.get_extension_for_class(
        x509.PrecertificateSignedCertificateTimestamps
    ).value
    ours = signed_data(sct, leaf.cert.tbs_precertificate_bytes, issuer.spki_sha256)
    assert ours == _pack_digitally_signed(sct, leaf.cert, issuer.spki_sha256)  # type: ignore[arg-type]


def test_generated_sct_verifies(sigstore: Sigstore, trust_root: TrustRoot) -> None:
    leaf = _leaf(sigstore)
    verify_embedded_sct(leaf, _issuer(trust_root, leaf), trust_root)


def test_missing_sct_is_sct_missing(sigstore: Sigstore, trust_root: TrustRoot) -> None:
    leaf = _leaf(sigstore, LeafSpec(sct=False))
    assert _reason(leaf, _issuer(trust_root, leaf), trust_root) is Reason.SCT_MISSING


def test_sct_from_an_unknown_log_is_sct_invalid(sigstore: Sigstore, trust_root: TrustRoot) -> None:
    leaf = _leaf(sigstore, LeafSpec(sct_log_key=ec.generate_private_key(ec.SECP256R1())))
    assert _reason(leaf, _issuer(trust_root, leaf), trust_root) is Reason.SCT_INVALID


def test_sct_with_a_forged_signature_is_sct_invalid(sigstore: Sigstore, trust_root: TrustRoot) -> None:
    # The trusted log's ID, but signed by another key.
    spec = LeafSpec(sct_log_key=ec.generate_private_key(ec.SECP256R1()), sct_log_id=sigstore.ctlog_id)
    leaf = _leaf(sigstore, spec)
    assert _reason(leaf, _issuer(trust_root, leaf), trust_root) is Reason.SCT_INVALID


def test_sct_checked_against_the_wrong_issuer_is_sct_invalid(
    sigstore: Sigstore, trust_root: TrustRoot
) -> None:
    leaf = _leaf(sigstore)
    root_cert = trust_root.certificate_authorities[0].chain[1]
    assert _reason(leaf, root_cert, trust_root) is Reason.SCT_INVALID


def test_sct_outside_the_log_key_validity_is_sct_invalid(sigstore: Sigstore) -> None:
    def shift(doc: dict[str, Any]) -> None:
        doc["ctlogs"][0]["publicKey"]["validFor"] = {
            "start": "2000-01-01T00:00:00Z",
            "end": "2001-01-01T00:00:00Z",
        }

    root = sigstore.trust_root(shift)
    leaf = _leaf(sigstore)
    assert _reason(leaf, _issuer(root, leaf), root) is Reason.SCT_INVALID


def _flip(offset: int) -> Any:
    def tamper(sct: bytes) -> bytes:
        out = bytearray(sct)
        out[offset] ^= 0x01
        return bytes(out)

    return tamper


# Serialized SCT: version (1) | log id (32) | timestamp (8) | extensions length (2) | ...
@pytest.mark.parametrize("offset", [33 + 7, 33 + 8 + 2 + 2 + 2 + 10])  # timestamp; signature body
def test_tampered_sct_is_sct_invalid(offset: int, sigstore: Sigstore, trust_root: TrustRoot) -> None:
    leaf = _leaf(sigstore, LeafSpec(sct_tamper=_flip(offset)))
    assert _reason(leaf, _issuer(trust_root, leaf), trust_root) is Reason.SCT_INVALID


def test_sct_with_an_earlier_timestamp_verifies(sigstore: Sigstore, trust_root: TrustRoot) -> None:
    leaf = _leaf(sigstore, LeafSpec(sct_timestamp=sigstore.now - timedelta(seconds=5)))
    verify_embedded_sct(leaf, _issuer(trust_root, leaf), trust_root)


def test_ct_log_unusable_scheme_is_sct_invalid(sigstore: Sigstore) -> None:
    def unusable(doc: dict[str, Any]) -> None:
        doc["ctlogs"][0]["publicKey"]["keyDetails"] = "PKIX_RSA_PSS_2048_SHA256"

    root = sigstore.trust_root(unusable)
    leaf = _leaf(sigstore)
    assert _reason(leaf, _issuer(root, leaf), root) is Reason.SCT_INVALID
