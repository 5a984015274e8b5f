"""Public keys and the signature schemes we accept with them.

Two sources of keys, two rules:

* **Trust-root keys** (Rekor, CT logs) carry an explicit ``keyDetails`` from Sigstore's algorithm
  registry (https://github.com/sigstore/architecture-docs/blob/main/algorithm-registry.md); the
  scheme is exactly what ``keyDetails`` names. :func:`trust_root_key` builds them once, when the
  trust root is loaded.
* **Fulcio leaf keys** carry no algorithm; cosign chooses it from the key. :func:`leaf_key` maps:

  ===================  ==============================================================
  key                  scheme
  ===================  ==============================================================
  ECDSA P-256          ECDSA with SHA-256
  ECDSA P-384          ECDSA with SHA-384 (registry default), else SHA-256 (cosign v2
                       loads every certificate key with ``LoadVerifier(pk, SHA256)``)
  ECDSA P-521          ECDSA with SHA-512 (registry default), else SHA-256 (as above)
  RSA 2048-4096 bits   RSASSA-PKCS1-v1_5 with SHA-256
  Ed25519              pure Ed25519
  ===================  ==============================================================

  Anything else is not a key Fulcio issues for, and the certificate is rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

VerifyingKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

MIN_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 4096

_SHA256: Final = hashes.SHA256()
_SHA384: Final = hashes.SHA384()
_SHA512: Final = hashes.SHA512()
# ECDSA scheme objects are immutable: build one per hash, not one per verification.
_ECDSA: Final = {algorithm.name: ec.ECDSA(algorithm) for algorithm in (_SHA256, _SHA384, _SHA512)}
_PKCS1V15: Final = padding.PKCS1v15()


class UnsupportedKeyError(ValueError):
    """Raised when a key or ``keyDetails`` names a scheme we do not verify. Internal."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A public key bound to the signature scheme(s) accepted with it.

    ``hashes`` is empty for Ed25519 (pure EdDSA). For ECDSA and RSA, a signature verifies if it
    verifies under any listed hash, tried in order (only P-384/P-521 leaf keys list two).
    """

    key: VerifyingKey
    hashes: tuple[hashes.HashAlgorithm, ...]
    # One bound verify call per accepted scheme, built once (the key type and the ECDSA / padding
    # objects are fixed for the key's lifetime, so ``verify`` does no type checks per call).
    _checks: tuple[Callable[[bytes, bytes], None], ...] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_checks", _schemes(self.key, self.hashes))

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` is a valid signature over ``data``. Never raises."""
        for check in self._checks:
            try:
                check(signature, data)
            except InvalidSignature:
                continue
            except (ValueError, UnsupportedAlgorithm):
                return False
            return True
        return False


def _schemes(
    key: VerifyingKey, algorithms: tuple[hashes.HashAlgorithm, ...]
) -> tuple[Callable[[bytes, bytes], None], ...]:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return tuple(_ecdsa_check(key, _ECDSA.get(a.name) or ec.ECDSA(a)) for a in algorithms)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return (key.verify,)
    return tuple(_pkcs1v15_check(key, algorithm) for algorithm in algorithms)


def _ecdsa_check(key: ec.EllipticCurvePublicKey, scheme: ec.ECDSA) -> Callable[[bytes, bytes], None]:
    def check(signature: bytes, data: bytes) -> None:
        key.verify(signature, data, scheme)

    return check


def _pkcs1v15_check(key: rsa.RSAPublicKey, algorithm: hashes.HashAlgorithm) -> Callable[[bytes, bytes], None]:
    def check(signature: bytes, data: bytes) -> None:
        key.verify(signature, data, _PKCS1V15, algorithm)

    return check


def _curve_hash(curve: ec.EllipticCurve) -> hashes.HashAlgorithm | None:
    if isinstance(curve, ec.SECP256R1):
        return _SHA256
    if isinstance(curve, ec.SECP384R1):
        return _SHA384
    if isinstance(curve, ec.SECP521R1):
        return _SHA512
    return None


def leaf_key(key: PublicKeyTypes) -> PublicKey:
    """The scheme cosign uses with a Fulcio certificate key (see the module table)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        natural = _curve_hash(key.curve)
        if natural is None:
            raise UnsupportedKeyError(f"unsupported curve {key.curve.name}")
        return PublicKey(key, (natural,) if natural is _SHA256 else (natural, _SHA256))
    if isinstance(key, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise UnsupportedKeyError(f"unsupported RSA key size {key.key_size}")
        return PublicKey(key, (_SHA256,))
    if isinstance(key, ed25519.Ed25519PublicKey):
        return PublicKey(key, ())
    raise UnsupportedKeyError(f"unsupported key type {type(key).__name__}")


# keyDetails (protobuf-specs ``PublicKeyDetails``) that we verify: key class, curve or RSA size, hash.
_EC_DETAILS: Final[dict[str, tuple[type[ec.EllipticCurve], hashes.HashAlgorithm]]] = {
    "PKIX_ECDSA_P256_SHA_256": (ec.SECP256R1, _SHA256),
    "PKIX_ECDSA_P384_SHA_384": (ec.SECP384R1, _SHA384),
    "PKIX_ECDSA_P521_SHA_512": (ec.SECP521R1, _SHA512),
    "PKIX_ECDSA_P384_SHA_256": (ec.SECP384R1, _SHA256),
    "PKIX_ECDSA_P521_SHA_256": (ec.SECP521R1, _SHA256),
}
_RSA_PKCS1V15_DETAILS: Final[dict[str, int | None]] = {
    "PKCS1_RSA_PKCS1V5": None,  # deprecated; any size in our bounds
    "PKIX_RSA_PKCS1V5": None,  # deprecated
    "PKIX_RSA_PKCS1V15_2048_SHA256": 2048,
    "PKIX_RSA_PKCS1V15_3072_SHA256": 3072,
    "PKIX_RSA_PKCS1V15_4096_SHA256": 4096,
}
_ED25519_DETAILS: Final = "PKIX_ED25519"

# keyDetails that are valid registry names but that we cannot verify: the entry is kept, unusable.
UNSUPPORTED_KEY_DETAILS: Final = frozenset(
    {
        "PUBLIC_KEY_DETAILS_UNSPECIFIED",
        "PKCS1_RSA_PSS",
        "PKIX_RSA_PSS",
        "PKIX_RSA_PSS_2048_SHA256",
        "PKIX_RSA_PSS_3072_SHA256",
        "PKIX_RSA_PSS_4096_SHA256",
        "PKIX_ECDSA_P256_HMAC_SHA_256",
        "PKIX_ED25519_PH",
        "LMS_SHA256",
        "LMOTS_SHA256",
        "ML_DSA_65",
        "ML_DSA_87",
    }
)
KNOWN_KEY_DETAILS: Final = frozenset(
    {*_EC_DETAILS, *_RSA_PKCS1V15_DETAILS, _ED25519_DETAILS, *UNSUPPORTED_KEY_DETAILS}
)


def trust_root_key(key_details: str, der: bytes) -> PublicKey:
    """The key a trust-root entry describes. Raises :class:`UnsupportedKeyError` when ``der`` is
    not a key of the kind ``key_details`` names, or when we do not verify that scheme."""
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise UnsupportedKeyError(f"{key_details}: not a DER public key") from e
    if key_details in _EC_DETAILS:
        curve, algorithm = _EC_DETAILS[key_details]
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, curve):
            raise UnsupportedKeyError(f"{key_details}: key is not on that curve")
        return PublicKey(key, (algorithm,))
    if key_details in _RSA_PKCS1V15_DETAILS:
        bits = _RSA_PKCS1V15_DETAILS[key_details]
        if not isinstance(key, rsa.RSAPublicKey):
            raise UnsupportedKeyError(f"{key_details}: not an RSA key")
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS or bits not in (None, key.key_size):
            raise UnsupportedKeyError(f"{key_details}: RSA key of {key.key_size} bits")
        return PublicKey(key, (_SHA256,))
    if key_details == _ED25519_DETAILS:
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise UnsupportedKeyError(f"{key_details}: not an Ed25519 key")
        return PublicKey(key, ())
    raise UnsupportedKeyError(f"{key_details}: scheme not supported")
