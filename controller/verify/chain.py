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

from datetime import datetime

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from controller.errors import EvidenceError, Reason
from controller.verify.certificate import Leaf, PemError, pem_to_der
from controller.verify.limits import MAX_CHAIN_CERTIFICATES
from controller.verify.trustroot import CaCertificate, TrustRoot


def parse_chain_annotation(pem: bytes) -> list[bytes]:
    """The DER certificates of a ``dev.sigstore.cosign/chain`` annotation -> else CertificateChainInvalid."""
    try:
        return pem_to_der(pem, max_certificates=MAX_CHAIN_CERTIFICATES)
    except PemError as e:
        raise EvidenceError(Reason.CERTIFICATE_CHAIN_INVALID, f"chain annotation: {e}") from e


def _check_path(
    leaf: Leaf, path: tuple[CaCertificate, ...], at: datetime, presented: list[bytes] | None
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
    if presented is not None and presented != [ca_cert.der for ca_cert in path]:
        raise EvidenceError(
            Reason.CERTIFICATE_CHAIN_INVALID,
            "chain annotation is not the trusted path (intermediates then root)",
        )


def verify_chain(
    leaf: Leaf, *, at: datetime, trust_root: TrustRoot, chain_pem: bytes | None
) -> tuple[CaCertificate, ...]:
    """Step 6: the path leaf -> intermediates -> root that is valid at ``at`` (see module docstring).

    Returns the CA part of the path (the leaf's issuer first, the trust anchor last).
    """
    presented = None if chain_pem is None else parse_chain_annotation(chain_pem)
    first_error: EvidenceError | None = None
    outside_validity = False
    for authority, position in trust_root.issuers_named(leaf.issuer):
        if not authority.valid_for.contains(at):
            outside_validity = True
            continue
        path = authority.chain[position:]
        try:
            leaf.cert.verify_directly_issued_by(path[0].cert)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            continue  # not this issuer (wrong key, name, or algorithm)
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
