"""Key identities: which PEM public keys are accepted, and how they are named."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.policy.keys import KeyParseError, parse_public_key

PUBLIC = serialization.PublicFormat.SubjectPublicKeyInfo


def pem_of(private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.PEM, PUBLIC)


@pytest.mark.parametrize(
    ("make", "algorithm"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ecdsa-p256"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "ecdsa-p384"),
        (lambda: rsa.generate_private_key(65537, 2048), "rsa-2048"),
        (ed25519.Ed25519PrivateKey.generate, "ed25519"),
    ],
)
def test_accepted_keys_are_named_by_their_spki_digest(make: object, algorithm: str) -> None:
    private = make()  # type: ignore[operator]
    key = parse_public_key(pem_of(private), "test")
    der = private.public_key().public_bytes(serialization.Encoding.DER, PUBLIC)
    assert key.key_id == "sha256:" + hashlib.sha256(der).hexdigest()
    assert key.algorithm == algorithm
    assert key.trusted.source == "test"


def test_refused_keys() -> None:
    p521 = pem_of(ec.generate_private_key(ec.SECP521R1()))
    with pytest.raises(KeyParseError, match="P-256 or P-384"):
        parse_public_key(p521, "t")
    small = pem_of(rsa.generate_private_key(65537, 1024))  # noqa: S505 - the key being refused
    with pytest.raises(KeyParseError, match="bits"):
        parse_public_key(small, "t")
    private = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyParseError, match="PUBLIC KEY"):
        parse_public_key(private, "t")
    two = pem_of(ed25519.Ed25519PrivateKey.generate()) * 2
    with pytest.raises(KeyParseError, match="exactly one"):
        parse_public_key(two, "t")
    with pytest.raises(KeyParseError, match="bytes"):
        parse_public_key(b"-----BEGIN PUBLIC KEY-----\n" + b"A" * 20000, "t")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_parse_only_raises_key_parse_error(noise: bytes) -> None:
    for data in (noise, b"-----BEGIN PUBLIC KEY-----\n" + noise + b"\n-----END PUBLIC KEY-----\n"):
        with contextlib.suppress(KeyParseError):
            parse_public_key(data, "t")
