"""Public keys a policy trusts (``identities[].key``): parsed, checked and named once, at compile time.

A key identity is ``key: {pem: "..."}`` or ``key: {secretRef: {name, key}}``. The Secret lives in the
controller's namespace and is read by the caller, who passes a resolver ``(name, key) -> bytes | None``
to the compiler; policy/ never talks to the API server. A key that cannot be resolved or parsed makes
the policy invalid: fail closed.

Accepted: ECDSA P-256 and P-384, RSA of 2048 to 8192 bits, Ed25519, as one PEM ``PUBLIC KEY``
(SubjectPublicKeyInfo). A key is named by ``sha256:<hex of its SPKI DER>``, the same value
``VerifiedSignature.key_id`` carries for an artifact that verified with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from controller.model import TrustedKey, VerifiedSignature

MAX_PEM_BYTES: Final = 16 * 1024  # an RSA-8192 PEM public key is about 1.5 KiB
MIN_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 8192
_CURVES: Final = frozenset({"secp256r1", "secp384r1"})

SecretResolver = Callable[[str, str], bytes | None]
"""``(secret name, data key) -> the key's bytes``, or ``None`` when the Secret or the key is absent."""


class KeyParseError(ValueError):
    """Raised when a PEM is not an accepted public key, or a secretRef cannot be resolved."""


@dataclass(frozen=True, slots=True)
class PolicyKey:
    """A trusted public key: its ``sha256:`` id, a short description, and where it came from."""

    key_id: str
    algorithm: str  # "ecdsa-p256", "rsa-3072", "ed25519" ...
    trusted: TrustedKey

    def describe(self) -> str:
        """``key sha256:abcd1234… (ecdsa-p256)``."""
        return f"key {self.key_id[:19]}… ({self.algorithm})"


def key_id_of_der(spki_der: bytes) -> str:
    """``sha256:<hex>`` of a SubjectPublicKeyInfo DER."""
    return "sha256:" + hashlib.sha256(spki_der).hexdigest()


def parse_public_key(pem: bytes, source: str) -> PolicyKey:
    """Parse one PEM public key; raises :class:`KeyParseError` naming the problem."""
    if len(pem) > MAX_PEM_BYTES:
        raise KeyParseError(f"the PEM has {len(pem)} bytes; at most {MAX_PEM_BYTES}")
    text = pem.strip()
    if text.count(b"-----BEGIN ") != 1:
        raise KeyParseError("expected exactly one PEM block (-----BEGIN PUBLIC KEY-----)")
    if not text.startswith(b"-----BEGIN PUBLIC KEY-----"):
        raise KeyParseError("not a PUBLIC KEY PEM block (a certificate or private key is refused)")
    try:
        key = serialization.load_pem_public_key(text)
    except (ValueError, UnsupportedAlgorithm, TypeError) as e:
        raise KeyParseError(f"not a readable public key: {str(e)[:200]}") from e
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            raise KeyParseError(f"ECDSA curve {key.curve.name} is not accepted (P-256 or P-384)")
        algorithm = "ecdsa-p256" if key.curve.name == "secp256r1" else "ecdsa-p384"
    elif isinstance(key, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise KeyParseError(f"RSA keys of {MIN_RSA_BITS}-{MAX_RSA_BITS} bits only, not {key.key_size}")
        algorithm = f"rsa-{key.key_size}"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        algorithm = "ed25519"
    else:
        raise KeyParseError(f"{type(key).__name__} keys are not accepted (ECDSA, RSA or Ed25519)")
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    canonical = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PolicyKey(key_id_of_der(der), algorithm, TrustedKey(canonical, source))


def no_secrets(name: str, key: str) -> bytes | None:
    """The resolver where no Secret can be read (files, the CLI): every ``secretRef`` is unresolved."""
    return None


@dataclass(frozen=True, slots=True)
class KeyMatcher:
    """A key identity, compiled: matches exactly the artifacts that verified with this key."""

    key: PolicyKey

    def matches(self, sig: VerifiedSignature) -> bool:
        """Whether ``sig`` is key-signed with this key (a keyless artifact never matches)."""
        return bool(sig.key_id) and sig.key_id == self.key.key_id

    def describe(self) -> str:
        """``key sha256:abcd… (ecdsa-p256)``."""
        return self.key.describe()
