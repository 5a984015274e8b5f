"""Verification of one legacy cosign ``.sig`` layer (simple signing), as a numbered checklist.

Inputs are bytes, a trust root and a time; the output is a :class:`VerifiedSignature` or a reasoned
:class:`EvidenceError`. Nothing here reads the clock, a file or the network. The checks run in this
order, and the first failure decides the reason (tests pin the order):

1. **Annotations** (:func:`_read_annotations`)
   a. the signature is not of kind ``simplesigning``             -> PayloadInvalid
   b. no ``dev.sigstore.cosign/certificate`` (or it is empty)    -> NotKeylessSignature
      (one over its bound is LimitExceeded)
   c. payload or any other annotation over its bound (:mod:`.limits`) -> LimitExceeded
      (an EvidenceError, not the transient LimitError: oversized evidence is bad evidence);
      an annotation that is not valid Unicode                    -> PayloadInvalid
   d. ``dev.cosignproject.cosign/signature`` absent or not base64 -> SignatureInvalid
2. **Payload** (:mod:`.payload`): strict JSON of the exact bytes, cosign type -> PayloadInvalid;
   ``critical.image.docker-manifest-digest`` is not this image digest   -> PayloadDigestMismatch
3. **Certificate** (:mod:`.certificate`): one PEM leaf, X.509 v3, keyUsage digitalSignature,
   EKU codeSigning, not a CA, no unknown critical extension, a key type Fulcio issues
                                                                 -> CertificateInvalid
4. **Signature** over the exact payload bytes with the leaf key (:mod:`.keys`) -> SignatureInvalid
5. **Transparency log** (:mod:`.tlog`), the ``dev.sigstore.cosign/bundle`` annotation:
   absent -> TlogEntryMissing (or, if the policy allows, a warning and ``t = now``);
   malformed / unknown log / log key not valid then / bad SET / bad body -> TlogEntryInvalid;
   body not about this payload, signature, certificate      -> TlogBodyMismatch;
   integratedTime outside the leaf's validity               -> CertificateNotValidAtSigningTime.
   Otherwise ``t = integratedTime``.
6. **Chain** (:mod:`.chain`) at ``t``: no trusted path / CA not valid at ``t`` / not a CA /
   pathLen / chain annotation differs -> CertificateChainInvalid; a certificate of the path not
   valid at ``t`` -> CertificateNotValidAtSigningTime.
7. **SCT** (:mod:`.sct`): none -> SCTMissing; none verifies -> SCTInvalid (a warning if allowed).
8. **Identity** (:mod:`.identity`): exactly one SAN (email, URI, username), else CertificateInvalid;
   no issuer extension -> IssuerMissing (issuer "" with a warning if allowed).

So a 2021 certificate with neither SCT nor issuer extension fails at step 7 (SCTMissing) by
default, at step 8 (IssuerMissing) when only the SCT is waived, and verifies when both are waived.
Matching the identity against a policy is the policy layer's job.
"""

from __future__ import annotations

import binascii
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from controller.errors import EvidenceError, InputError, Reason
from controller.model import Digest, Signature, VerifiedSignature
from controller.verify.certificate import parse_leaf
from controller.verify.chain import verify_chain
from controller.verify.identity import extract_identity
from controller.verify.limits import (
    MAX_CERTIFICATE_PEM_BYTES,
    MAX_CHAIN_PEM_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_SIGNATURE_B64_BYTES,
    MAX_TLOG_BUNDLE_BYTES,
)
from controller.verify.options import VerifyOptions
from controller.verify.payload import check_payload_digest, parse_payload
from controller.verify.sct import verify_embedded_sct
from controller.verify.tlog import (
    check_body,
    check_integrated_time,
    parse_body,
    parse_rekor_entry,
    verify_set,
)
from controller.verify.trustroot import TrustRoot

_log = logging.getLogger(__name__)

SIGNATURE_ANNOTATION: Final = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION: Final = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION: Final = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION: Final = "dev.sigstore.cosign/bundle"


@dataclass(frozen=True, slots=True)
class _Evidence:
    """The annotations of one layer, bounded and decoded (step 1)."""

    signature: bytes
    certificate_pem: bytes
    chain_pem: bytes | None
    bundle_json: bytes | None


def _annotation(sig: Signature, key: str, limit: int) -> bytes | None:
    """An annotation as bytes, None when absent or empty (as cosign treats ""); bounded by ``limit``."""
    value = sig.annotations.get(key)
    if value is None or value == "":
        return None
    if len(value) > limit:
        raise EvidenceError(Reason.LIMIT_EXCEEDED, f"annotation {key} is longer than {limit} bytes")
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise EvidenceError(Reason.PAYLOAD_INVALID, f"annotation {key} is not valid Unicode") from e
    if len(data) > limit:
        raise EvidenceError(Reason.LIMIT_EXCEEDED, f"annotation {key} is longer than {limit} bytes")
    return data


def _read_annotations(sig: Signature) -> _Evidence:
    """Step 1 (see the module docstring)."""
    if sig.kind != "simplesigning":
        raise EvidenceError(Reason.PAYLOAD_INVALID, f"not a simple-signing signature ({sig.kind})")
    certificate_pem = _annotation(sig, CERTIFICATE_ANNOTATION, MAX_CERTIFICATE_PEM_BYTES)
    if certificate_pem is None:
        raise EvidenceError(
            Reason.NOT_KEYLESS, "layer has no certificate: a key-based signature, not keyless evidence"
        )
    if len(sig.payload) > MAX_PAYLOAD_BYTES:
        raise EvidenceError(Reason.LIMIT_EXCEEDED, f"payload is larger than {MAX_PAYLOAD_BYTES} bytes")
    chain_pem = _annotation(sig, CHAIN_ANNOTATION, MAX_CHAIN_PEM_BYTES)
    bundle_json = _annotation(sig, BUNDLE_ANNOTATION, MAX_TLOG_BUNDLE_BYTES)
    signature_b64 = _annotation(sig, SIGNATURE_ANNOTATION, MAX_SIGNATURE_B64_BYTES)
    if signature_b64 is None:
        raise EvidenceError(Reason.SIGNATURE_INVALID, f"layer has no {SIGNATURE_ANNOTATION}")
    try:
        signature = binascii.a2b_base64(signature_b64, strict_mode=True)  # = b64decode(validate=True)
    except binascii.Error as e:
        raise EvidenceError(Reason.SIGNATURE_INVALID, "signature annotation is not base64") from e
    if not signature:
        raise EvidenceError(Reason.SIGNATURE_INVALID, "signature annotation is empty")
    return _Evidence(signature, certificate_pem, chain_pem, bundle_json)


def as_utc(now: datetime) -> datetime:
    """``now`` in UTC; a naive datetime is an API misuse (InputError), never silently local time."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise InputError(Reason.INTERNAL_ERROR, "verification time must be timezone-aware")
    return now.astimezone(UTC)


def _warn(warnings: list[str], source: str, message: str) -> None:
    _log.warning("%s: %s", source, message)
    warnings.append(message)


def verify_simplesigning(
    sig: Signature,
    *,
    digest: Digest,
    trust_root: TrustRoot,
    options: VerifyOptions,
    now: datetime,
) -> VerifiedSignature:
    """Verify one cosign ``.sig`` layer for the image ``digest`` (checklist in the module docstring)."""
    now = as_utc(now)
    warnings: list[str] = []

    # 1. annotations
    evidence = _read_annotations(sig)

    # 2. payload: the exact bytes, for this image
    payload = parse_payload(sig.payload)
    check_payload_digest(payload, digest)

    # 3. certificate profile
    leaf = parse_leaf(evidence.certificate_pem)

    # 4. signature over the exact payload bytes
    if not leaf.key.verify(evidence.signature, sig.payload):
        raise EvidenceError(Reason.SIGNATURE_INVALID, "signature does not verify with the certificate key")

    # 5. transparency log entry: fixes the verification time
    log_index: int | None = None
    log_id: str | None = None
    integrated_time: datetime | None = None
    if evidence.bundle_json is not None:
        entry = parse_rekor_entry(evidence.bundle_json)
        verify_set(entry, trust_root)
        body = parse_body(entry)
        check_body(
            body,
            payload_sha256=hashlib.sha256(sig.payload).hexdigest(),
            signature=evidence.signature,
            leaf=leaf,
        )
        check_integrated_time(entry, leaf)
        integrated_time = entry.integrated_at
        log_index, log_id = entry.log_index, entry.log_id_hex
        at = integrated_time
    elif options.require_tlog:
        raise EvidenceError(Reason.TLOG_ENTRY_MISSING, f"layer has no {BUNDLE_ANNOTATION}")
    else:
        _warn(warnings, sig.source, "no transparency log entry; chain and SCT checked at the current time")
        at = now

    # 6. chain to a trusted Fulcio CA, valid at that time
    path = verify_chain(leaf, at=at, trust_root=trust_root, chain_pem=evidence.chain_pem)

    # 7. embedded SCT
    try:
        verify_embedded_sct(leaf, path[0], trust_root)
    except EvidenceError as e:
        if options.require_sct:
            raise
        _warn(warnings, sig.source, f"SCT not verified ({e.reason}), allowed by policy")

    # 8. identity
    identity = extract_identity(leaf.cert.extensions, require_issuer=options.require_issuer_extension)
    if not identity.issuer:
        _warn(warnings, sig.source, "certificate has no OIDC issuer extension, allowed by policy")

    return VerifiedSignature(
        subject=identity.subject,
        issuer=identity.issuer,
        claims=identity.claims,
        digest=digest,
        log_index=log_index,
        integrated_time=integrated_time,
        annotations=payload.annotations,
        log_id=log_id,
        trust_root=trust_root.name,
        source=sig.source,
        warnings=tuple(warnings),
    )
