"""Public keys a policy trusts (``identities[].key``), and what a key-signed artifact must prove.

A key-signed artifact carries no certificate: it verifies when its signature verifies with one of
the policy's keys (:class:`~controller.model.TrustedKey`, PEM). The schemes accepted with a key are
cosign's (``signature.LoadVerifier(pub, crypto.SHA256)``, and ``LoadDefaultVerifier`` for the
curve's own hash) and sigstore-go's:

===================  ================================================================
key                  scheme
===================  ================================================================
ECDSA P-256          ECDSA with SHA-256
ECDSA P-384          ECDSA with SHA-384, else SHA-256 (cosign v2 signs with SHA-256)
ECDSA P-521          ECDSA with SHA-512, else SHA-256 (as above)
RSA 2048-4096 bits   RSASSA-PKCS1-v1_5 with SHA-256, else RSASSA-PSS with SHA-256
                     (MGF1-SHA-256, any salt length: ``--signing-algorithm rsa-sign-pss-*``)
Ed25519              pure Ed25519
===================  ================================================================

A key outside that table, or PEM that is not one ``PUBLIC KEY`` block, is a policy error
(``PolicyInvalid``): it can never verify anything, and a policy that names it must not silently
allow nothing. The key's identity is ``sha256:<hex of its SubjectPublicKeyInfo DER>``
(:attr:`VerificationKey.key_id`), what ``VerifiedSignature.key_id`` reports.

Reasons met here: no key verifies the signature -> ``KeyMismatch``; a Rekor body whose public key is
not the verifying key -> ``TlogBodyMismatch``.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from controller.errors import EvidenceError, PolicyError, Reason
from controller.model import TrustedKey
from controller.verify.keys import PublicKey, UnsupportedKeyError, leaf_key
from controller.verify.limits import MAX_PUBLIC_KEY_PEM_BYTES

MAX_TRUSTED_KEYS: Final = 64  # keys tried for one artifact
MAX_CACHED_KEYS: Final = 256  # parsed keys memoized by their PEM
_PEM_BLOCK: Final = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_PSS: Final = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
_SHA256: Final = hashes.SHA256()


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A trusted key, parsed once: its schemes, its SPKI DER and its ``sha256:`` key ID."""

    scheme: PublicKey
    spki_der: bytes
    key_id: str
    source: str

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` over ``data`` verifies under one accepted scheme. Never raises."""
        if self.scheme.verify(signature, data):
            return True
        key = self.scheme.key
        if isinstance(key, rsa.RSAPublicKey):
            try:
                key.verify(signature, data, _PSS, _SHA256)
            except (InvalidSignature, ValueError, UnsupportedAlgorithm):
                return False
            return True
        return False


def key_id(spki_der: bytes) -> str:
    """``sha256:<hex>`` of a SubjectPublicKeyInfo DER."""
    return "sha256:" + hashlib.sha256(spki_der).hexdigest()


def _invalid_key(source: str, detail: str) -> PolicyError:
    return PolicyError(Reason.POLICY_INVALID, f"{source}: {detail}")


@lru_cache(maxsize=MAX_CACHED_KEYS)
def _load(pem: bytes, source: str) -> VerificationKey:
    if len(pem) > MAX_PUBLIC_KEY_PEM_BYTES:
        raise _invalid_key(source, f"public key PEM is longer than {MAX_PUBLIC_KEY_PEM_BYTES} bytes")
    blocks = _PEM_BLOCK.findall(pem)
    if blocks != [b"PUBLIC KEY"]:
        raise _invalid_key(source, "not exactly one PEM 'PUBLIC KEY' block")
    try:
        public = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise _invalid_key(source, "not a PEM public key") from e
    try:
        scheme = leaf_key(public)
    except UnsupportedKeyError as e:
        raise _invalid_key(source, f"unsupported public key: {e}") from e
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return VerificationKey(scheme=scheme, spki_der=der, key_id=key_id(der), source=source)


def load_key(key: TrustedKey) -> VerificationKey:
    """Parse a trusted key (memoized by PEM) -> ``PolicyInvalid`` when it is not one we verify with."""
    return _load(bytes(key.pem), key.source)


def find_key(keys: Sequence[TrustedKey], signature: bytes, data: bytes) -> VerificationKey:
    """The first of ``keys`` with which ``signature`` over ``data`` verifies -> else ``KeyMismatch``.

    Every key is parsed before any is tried, so a broken key in a policy fails the same way whatever
    the artifact (``PolicyInvalid``).
    """
    if not keys:
        raise EvidenceError(Reason.KEY_MISMATCH, "no trusted keys to verify a key-signed artifact with")
    if len(keys) > MAX_TRUSTED_KEYS:
        raise PolicyError(Reason.POLICY_INVALID, f"more than {MAX_TRUSTED_KEYS} trusted keys")
    loaded = [load_key(key) for key in keys]
    for candidate in loaded:
        if candidate.verify(signature, data):
            return candidate
    raise EvidenceError(
        Reason.KEY_MISMATCH, f"the signature verifies with none of {len(keys)} trusted key(s)"
    )


def check_logged_key(public_key_b64: str, key: VerificationKey) -> None:
    """A Rekor body's ``publicKey`` (base64 of a PEM public key) is ``key`` -> else ``TlogBodyMismatch``.

    cosign compares the DER inside the PEM blocks (``comparePublicKey``); so do we. A certificate in
    the body is a keyless entry, never this key's.
    """
    try:
        pem = binascii.a2b_base64(public_key_b64, strict_mode=True)
    except ValueError as e:  # binascii.Error, or non-ASCII text
        raise EvidenceError(Reason.TLOG_BODY_MISMATCH, "entry public key is not base64") from e
    if len(pem) > MAX_PUBLIC_KEY_PEM_BYTES or _PEM_BLOCK.findall(pem) != [b"PUBLIC KEY"]:
        raise EvidenceError(Reason.TLOG_BODY_MISMATCH, "entry public key is not one PEM public key")
    try:
        logged = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise EvidenceError(Reason.TLOG_BODY_MISMATCH, "entry public key does not parse") from e
    der = logged.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if der != key.spki_der:
        raise EvidenceError(Reason.TLOG_BODY_MISMATCH, "entry public key is not the verifying key")
