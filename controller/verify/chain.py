"""Certificate path validation from a Fulcio leaf to a trusted CA (checklist step 6).

Paths are built only from the trust root: the leaf's issuer is any certificate, in any trusted
CA's chain, whose subject is the leaf's issuer name and whose key verifies the leaf's signature;
the rest of the path is that chain's tail, up to its last certificate, the trust anchor. (The 2021
Fulcio CA is a lone root; its leaves are issued directly by it.) The chain's internal links were
verified once when the trust root was loaded, so only the leaf's link costs a signature check here.

A candidate path is accepted when, at the verification time ``t``:

6a. the CA's ``validFor`` contains ``t``                      -> else CertificateChainInvalid
6b. the leaf's signature verifies with the issuer's key        -> else CertificateChainInvalid
6c. every issuer is a CA with keyCertSign, within its pathLen  -> else CertificateChainInvalid
6d. the leaf and every CA certificate are valid at ``t``       -> else CertificateNotValidAtSigningTime
6e. a ``dev.sigstore.cosign/chain`` annotation, when present, parses and is exactly the path's
    certificates after the leaf (intermediates, then root)    -> else CertificateChainInvalid

Candidates are tried in trust-root order; the first that passes wins. When none passes, the error
is the first one raised by a candidate whose signature verified (6c-6e), else CertificateChainInvalid.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

from controller.errors import EvidenceError, Reason
from controller.verify.certificate import Leaf, PemError, pem_to_der
from controller.verify.limits import MAX_CACHED_CHAIN_ANNOTATIONS, MAX_CHAIN_CERTIFICATES
from controller.verify.trustroot import CaCertificate, TrustRoot

# What ``signature_algorithm_parameters`` returns for the common ECDSA OIDs, built once.
_ECDSA_SCHEMES: Final[dict[x509.ObjectIdentifier, ec.ECDSA]] = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: ec.ECDSA(hashes.SHA256()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: ec.ECDSA(hashes.SHA384()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: ec.ECDSA(hashes.SHA512()),
}


def parse_chain_annotation(pem: bytes) -> tuple[bytes, ...]:
    """The DER certificates of a ``dev.sigstore.cosign/chain`` annotation -> else CertificateChainInvalid."""
    try:
        return _chain_der(pem)
    except PemError as e:
        raise EvidenceError(Reason.CERTIFICATE_CHAIN_INVALID, f"chain annotation: {e}") from e


@functools.lru_cache(maxsize=MAX_CACHED_CHAIN_ANNOTATIONS)
def _chain_der(pem: bytes) -> tuple[bytes, ...]:
    """PEM -> DER of a chain annotation, memoized: every leaf of one CA carries the same chain.

    A pure function of immutable bytes (an error is raised anew each time, never cached).
    """
    return tuple(pem_to_der(pem, max_certificates=MAX_CHAIN_CERTIFICATES))


def _check_path(
    leaf: Leaf, path: tuple[CaCertificate, ...], at: datetime, presented: tuple[bytes, ...] | None
) -> None:
    for below, ca_cert in enumerate(path):
        if not ca_cert.is_ca:
            raise EvidenceError(
                Reason.CERTIFICATE_CHAIN_INVALID,
                f"{ca_cert.subject.rfc4514_string()} is not a CA with keyCertSign",
            )
        if ca_cert.path_length is not None and below > ca_cert.path_length:
            raise EvidenceError(
                Reason.CERTIFICATE_CHAIN_INVALID,
                f"path length exceeds {ca_cert.subject.rfc4514_string()}'s pathLen",
            )
    if not leaf.not_before <= at <= leaf.not_after:
        raise EvidenceError(
            Reason.CERTIFICATE_EXPIRED,
            f"leaf certificate is not valid at {at.isoformat()} "
            f"({leaf.not_before.isoformat()}..{leaf.not_after.isoformat()})",
        )
    for ca_cert in path:
        if not ca_cert.not_before <= at <= ca_cert.not_after:
            raise EvidenceError(
                Reason.CERTIFICATE_EXPIRED,
                f"CA certificate {ca_cert.subject.rfc4514_string()} is not valid at {at.isoformat()}",
            )
    if presented is not None and presented != tuple(ca_cert.der for ca_cert in path):
        raise EvidenceError(
            Reason.CERTIFICATE_CHAIN_INVALID,
            "chain annotation is not the trusted path (intermediates then root)",
        )


def _issued_by(leaf: Leaf, issuer: CaCertificate) -> bool:
    """The link check of ``verify_directly_issued_by`` (6b), with the issuer's key parsed once.

    The trust root's issuer index already matched the issuer name; this verifies the signature over
    the leaf's TBSCertificate (as it appears in its DER: ``Leaf.tbs``) with the algorithm the
    certificate names (ECDSA, RSA PKCS#1 v1.5 or PSS, Ed25519/Ed448).
    """
    cert = leaf.cert
    key = issuer.public_key
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            params = _ECDSA_SCHEMES.get(cert.signature_algorithm_oid) or cert.signature_algorithm_parameters
            if not isinstance(params, ec.ECDSA):
                return False
            key.verify(cert.signature, leaf.tbs, params)
        elif isinstance(key, rsa.RSAPublicKey):
            padding_params = cert.signature_algorithm_parameters
            algorithm = cert.signature_hash_algorithm
            if not isinstance(padding_params, padding.PSS | padding.PKCS1v15) or algorithm is None:
                return False
            key.verify(cert.signature, leaf.tbs, padding_params, algorithm)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(cert.signature, leaf.tbs)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def verify_chain(
    leaf: Leaf, *, at: datetime, trust_root: TrustRoot, chain_pem: bytes | None
) -> tuple[CaCertificate, ...]:
    """Step 6: the path leaf -> intermediates -> root that is valid at ``at`` (see module docstring).

    Returns the CA part of the path (the leaf's issuer first, the trust anchor last).
    """
    presented = None if chain_pem is None else parse_chain_annotation(chain_pem)
    first_error: EvidenceError | None = None
    outside_validity = False
    for authority, position in trust_root.issuers_of(leaf.issuer, leaf.issuer_der):
        if not authority.valid_for.contains(at):
            outside_validity = True
            continue
        path = authority.chain[position:]
        if not _issued_by(leaf, path[0]):
            continue  # not this issuer (wrong key or algorithm)
        try:
            _check_path(leaf, path, at, presented)
        except EvidenceError as e:
            first_error = first_error or e
            continue
        return path
    if first_error is not None:
        raise first_error
    detail = f"no path to a CA of trust root {trust_root.name}"
    if outside_validity:
        detail += f" valid at {at.isoformat()}"
    raise EvidenceError(Reason.CERTIFICATE_CHAIN_INVALID, detail)
