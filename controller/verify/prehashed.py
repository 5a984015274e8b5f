"""Signatures over a digest: a message-signature bundle verified given only the artifact's digest.

cosign and sigstore-go sign a blob's digest with the hash the key's scheme names; a verifier that
holds only ``sha256:<hex>`` checks the signature over that prehashed value (``Prehashed``). Pure
Ed25519 signs the message itself, so it cannot be checked from a digest: that fails closed.
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

_HASHES: Final[dict[str, hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


def verify_digest_signature(
    key: PublicKeyTypes, signature: bytes, digest: bytes, algorithm: str, *, allow_pss: bool = False
) -> bool:
    """True when ``signature`` verifies over the ``algorithm`` digest ``digest``. Never raises.

    RSA-PSS is accepted only with ``allow_pss`` (a trusted key; Fulcio leaves sign PKCS#1 v1.5).
    """
    chosen = _HASHES.get(algorithm)
    if chosen is None or len(digest) != chosen.digest_size:
        return False
    prehashed = utils.Prehashed(chosen)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, digest, ec.ECDSA(prehashed))
        elif isinstance(key, rsa.RSAPublicKey):
            try:
                key.verify(signature, digest, padding.PKCS1v15(), prehashed)
            except InvalidSignature:
                if not allow_pss:
                    return False
                pss = padding.PSS(mgf=padding.MGF1(chosen), salt_length=padding.PSS.AUTO)
                key.verify(signature, digest, pss, prehashed)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True
