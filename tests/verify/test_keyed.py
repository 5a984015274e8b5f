"""keyed: trusted public keys, the schemes each accepts, and a Rekor body's key."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dh, ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import EvidenceError, ImprimaturError, PolicyError, Reason
from controller.model import TrustedKey
from controller.verify.keyed import check_logged_key, find_key, key_id, load_key
from tests.kit.attest import key_id_of, public_key_pem, sign_with_key, trusted_key
from tests.kit.sigstore import KeyType, SigstoreKit, generate_key

DATA = b"the exact payload bytes"
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
ED25519 = generate_key(KeyType.ED25519)


@pytest.fixture(scope="module")
def sigstore_kit_leaf_pem() -> str:
    """A Fulcio leaf certificate PEM (keyless material, never a trusted key)."""
    return SigstoreKit(NOW).issue_leaf().pem


@pytest.mark.parametrize("key_type", list(KeyType))
def test_each_key_type_verifies_as_cosign_signs(key_type: KeyType) -> None:
    key = generate_key(key_type)
    found = find_key((trusted_key(key),), sign_with_key(key, DATA), DATA)
    assert found.key_id == key_id_of(key)
    assert found.source == "kit key"


@pytest.mark.parametrize(
    ("key_type", "algorithm"),
    [
        (KeyType.ECDSA_P384, hashes.SHA384()),  # sigstore-go / cosign v3 default for P-384
        (KeyType.ECDSA_P384, hashes.SHA256()),  # cosign v2: SHA-256 whatever the curve
        (KeyType.ECDSA_P521, hashes.SHA512()),
        (KeyType.ECDSA_P521, hashes.SHA256()),
    ],
)
def test_larger_curves_accept_their_hash_and_the_sha256_fallback(
    key_type: KeyType, algorithm: hashes.HashAlgorithm
) -> None:
    key = generate_key(key_type)
    assert load_key(trusted_key(key)).verify(sign_with_key(key, DATA, hash_algorithm=algorithm), DATA)


@pytest.mark.parametrize(
    ("key_type", "algorithm"),
    [
        (KeyType.ECDSA_P256, hashes.SHA384()),  # P-256 is SHA-256 only
        (KeyType.ECDSA_P384, hashes.SHA512()),
        (KeyType.RSA_2048, hashes.SHA512()),
    ],
)
def test_other_hashes_are_refused(key_type: KeyType, algorithm: hashes.HashAlgorithm) -> None:
    key = generate_key(key_type)
    assert not load_key(trusted_key(key)).verify(sign_with_key(key, DATA, hash_algorithm=algorithm), DATA)


@pytest.mark.parametrize("key_type", [KeyType.RSA_2048, KeyType.RSA_3072, KeyType.RSA_4096])
def test_rsa_sizes_verify_pkcs1v15_and_pss(key_type: KeyType) -> None:
    key = generate_key(key_type)
    loaded = load_key(trusted_key(key))
    assert loaded.verify(sign_with_key(key, DATA), DATA)
    assert loaded.verify(sign_with_key(key, DATA, pss=True), DATA)
    assert not loaded.verify(sign_with_key(key, DATA + b"!", pss=True), DATA)


@pytest.mark.parametrize("bits", [1024, 1536])
def test_rsa_outside_2048_to_4096_is_a_policy_error(bits: int) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    with pytest.raises(PolicyError) as info:
        load_key(trusted_key(key))
    assert info.value.reason == Reason.POLICY_INVALID


def test_wrong_key_is_key_mismatch() -> None:
    signer, other = generate_key(KeyType.ECDSA_P256), generate_key(KeyType.ECDSA_P256)
    with pytest.raises(EvidenceError) as info:
        find_key((trusted_key(other),), sign_with_key(signer, DATA), DATA)
    assert info.value.reason == Reason.KEY_MISMATCH


def test_the_matching_key_among_several_is_found() -> None:
    keys = [generate_key(t) for t in (KeyType.ED25519, KeyType.RSA_2048, KeyType.ECDSA_P256)]
    found = find_key(
        tuple(trusted_key(k, f"k{i}") for i, k in enumerate(keys)), sign_with_key(keys[2], DATA), DATA
    )
    assert (found.source, found.key_id) == ("k2", key_id_of(keys[2]))


def test_no_keys_is_key_mismatch() -> None:
    with pytest.raises(EvidenceError) as info:
        find_key((), b"sig", DATA)
    assert info.value.reason == Reason.KEY_MISMATCH


def test_a_broken_key_fails_the_policy_even_when_another_would_verify() -> None:
    good = generate_key(KeyType.ECDSA_P256)
    broken = TrustedKey(pem=b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", source="broken")
    with pytest.raises(PolicyError) as info:
        find_key((trusted_key(good), broken), sign_with_key(good, DATA), DATA)
    assert info.value.reason == Reason.POLICY_INVALID


def test_a_certificate_or_two_keys_is_not_a_trusted_key(sigstore_kit_leaf_pem: str) -> None:
    key = generate_key(KeyType.ECDSA_P256)
    for pem in (sigstore_kit_leaf_pem.encode(), (public_key_pem(key) * 2).encode(), b"", b"\x00" * 10):
        with pytest.raises(PolicyError):
            load_key(TrustedKey(pem=pem, source="x"))


def test_unsupported_key_types_are_policy_errors() -> None:
    curve_key = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(PolicyError):
        load_key(trusted_key(curve_key))  # type: ignore[arg-type]
    params = dh.generate_parameters(generator=2, key_size=512)
    dh_pem = (
        params.generate_private_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(PolicyError):
        load_key(TrustedKey(pem=dh_pem, source="dh"))


def test_key_id_is_sha256_of_spki() -> None:
    key = generate_key(KeyType.ED25519)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key_id(der) == key_id_of(key) == load_key(trusted_key(key)).key_id


def test_logged_key_must_be_the_verifying_key(sigstore_kit_leaf_pem: str) -> None:
    key, other = generate_key(KeyType.ECDSA_P256), generate_key(KeyType.ECDSA_P256)
    loaded = load_key(trusted_key(key))
    check_logged_key(base64.b64encode(public_key_pem(key).encode()).decode(), loaded)
    for logged in (
        base64.b64encode(public_key_pem(other).encode()).decode(),
        base64.b64encode(sigstore_kit_leaf_pem.encode()).decode(),  # a certificate: keyless entry
        "not base64!",
        base64.b64encode(b"garbage").decode(),
    ):
        with pytest.raises(EvidenceError) as info:
            check_logged_key(logged, loaded)
        assert info.value.reason == Reason.TLOG_BODY_MISMATCH


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_as_a_key_are_a_policy_error_or_a_key(pem: bytes) -> None:
    try:
        loaded = load_key(TrustedKey(pem=b"-----BEGIN PUBLIC KEY-----\n" + pem, source="fuzz"))
    except ImprimaturError as e:
        assert e.reason == Reason.POLICY_INVALID
    else:
        assert loaded.key_id.startswith("sha256:")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_any_logged_key_text_is_a_mismatch(text: str) -> None:
    loaded = load_key(trusted_key(ED25519))
    with pytest.raises(EvidenceError) as info:
        check_logged_key(text, loaded)
    assert info.value.reason == Reason.TLOG_BODY_MISMATCH
