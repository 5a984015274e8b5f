"""Key schemes: Fulcio leaf keys (cosign's choices) and trust-root keys (keyDetails)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, padding, rsa

from controller.verify.keys import UnsupportedKeyError, leaf_key, trust_root_key
from tests.verify.builders import sign

DATA = b"payload bytes"


def _spki(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def keys() -> dict[str, object]:
    return {
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "p521": ec.generate_private_key(ec.SECP521R1()),
        "rsa2048": rsa.generate_private_key(65537, 2048),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


@pytest.mark.parametrize(
    ("kind", "algorithm", "accepted"),
    [
        ("p256", hashes.SHA256(), True),
        ("p256", hashes.SHA384(), False),
        ("p384", hashes.SHA384(), True),
        ("p384", hashes.SHA256(), True),  # cosign v2 verifies every ECDSA key with SHA-256
        ("p384", hashes.SHA512(), False),
        ("p521", hashes.SHA512(), True),
        ("p521", hashes.SHA256(), True),
        ("p521", hashes.SHA384(), False),
        ("rsa2048", hashes.SHA256(), True),
        ("rsa2048", hashes.SHA384(), False),
        ("ed25519", None, True),
    ],
)
def test_leaf_schemes(
    kind: str, algorithm: hashes.HashAlgorithm | None, accepted: bool, keys: dict[str, object]
) -> None:
    private = keys[kind]
    key = leaf_key(private.public_key())  # type: ignore[attr-defined]
    signature = sign(private, DATA, algorithm)  # type: ignore[arg-type]
    assert key.verify(signature, DATA) is accepted
    assert key.verify(signature, DATA + b"!") is False


def test_rsa_pss_is_not_accepted(keys: dict[str, object]) -> None:
    private = keys["rsa2048"]
    signature = private.sign(  # type: ignore[attr-defined]
        DATA, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH), hashes.SHA256()
    )
    assert leaf_key(private.public_key()).verify(signature, DATA) is False  # type: ignore[attr-defined]


@pytest.mark.parametrize("garbage", [b"", b"\x00", b"\x30\x00", b"x" * 600])
def test_garbage_signatures_never_raise(garbage: bytes, keys: dict[str, object]) -> None:
    for private in keys.values():
        assert leaf_key(private.public_key()).verify(garbage, DATA) is False  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "make",
    [
        lambda: rsa.generate_private_key(65537, 1024),  # noqa: S505  # the point: too small
        lambda: ec.generate_private_key(ec.SECP224R1()),
        lambda: dsa.generate_private_key(2048),
    ],
)
def test_unsupported_leaf_keys(make: object) -> None:
    with pytest.raises(UnsupportedKeyError):
        leaf_key(make().public_key())  # type: ignore[operator]


@pytest.mark.parametrize(
    ("details", "kind", "algorithm"),
    [
        ("PKIX_ECDSA_P256_SHA_256", "p256", hashes.SHA256()),
        ("PKIX_ECDSA_P384_SHA_384", "p384", hashes.SHA384()),
        ("PKIX_ECDSA_P384_SHA_256", "p384", hashes.SHA256()),
        ("PKIX_ECDSA_P521_SHA_512", "p521", hashes.SHA512()),
        ("PKCS1_RSA_PKCS1V5", "rsa2048", hashes.SHA256()),
        ("PKIX_RSA_PKCS1V15_2048_SHA256", "rsa2048", hashes.SHA256()),
        ("PKIX_ED25519", "ed25519", None),
    ],
)
def test_trust_root_schemes(
    details: str, kind: str, algorithm: hashes.HashAlgorithm | None, keys: dict[str, object]
) -> None:
    private = keys[kind]
    key = trust_root_key(details, _spki(private))
    assert key.verify(sign(private, DATA, algorithm), DATA)  # type: ignore[arg-type]
    if algorithm is not None and not isinstance(algorithm, hashes.SHA256):
        assert not key.verify(sign(private, DATA, hashes.SHA256()), DATA)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("details", "kind"),
    [
        ("PKIX_ECDSA_P256_SHA_256", "p384"),
        ("PKIX_ECDSA_P384_SHA_384", "rsa2048"),
        ("PKIX_RSA_PKCS1V15_3072_SHA256", "rsa2048"),
        ("PKIX_ED25519", "p256"),
        ("ML_DSA_65", "p256"),
    ],
)
def test_trust_root_key_must_match_its_details(details: str, kind: str, keys: dict[str, object]) -> None:
    with pytest.raises(UnsupportedKeyError):
        trust_root_key(details, _spki(keys[kind]))


def test_trust_root_key_must_be_der() -> None:
    with pytest.raises(UnsupportedKeyError):
        trust_root_key("PKIX_ED25519", b"not DER")
