"""Verification of one legacy cosign ``.sig`` layer (simple signing), as a numbered checklist.

Inputs are bytes, a trust root and a time; the output is a :class:`VerifiedSignature` or a reasoned
:class:`EvidenceError`. Nothing here reads the clock, a file or the network. The checks run in this
order, and the first failure decides the reason (tests pin the order):

1. **Annotations** (:func:`_read_annotations`)
   a. the signature is not of kind ``simplesigning``             -> PayloadInvalid
   b. no ``dev.sigstore.cosign/certificate`` (or it is empty) and no trusted keys given
      (``options.keys``)                                         -> NotKeylessSignature
      (one over its bound is LimitExceeded); with keys, the layer is key-signed (steps K below)
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

A layer **without** a certificate, when the policy trusts keys (``options.keys``), is key-signed:
after steps 1 and 2,

K1. **Key** (:mod:`.keyed`): the signature verifies over the exact payload with one of the keys
    -> else KeyMismatch (a key the policy names that we cannot use -> PolicyInvalid).
K2. **Transparency log**: absent -> TlogEntryMissing (or a warning if allowed); malformed / unknown
    log / bad SET -> TlogEntryInvalid; a body not about this payload, signature and *key* (a
    certificate in the body is not this key) -> TlogBodyMismatch.

The result carries ``key_id`` and an empty subject and issuer. A layer *with* a certificate is
keyless evidence whatever keys are given: it never verifies as key-signed, nor the reverse.

So a 2021 certificate with neither SCT nor issuer extension fails at step 7 (SCTMissing) by
default, at step 8 (IssuerMissing) when only the SCT is waived, and verifies when both are waived.
Matching the identity against a policy is the policy layer's job.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from controller.errors import EvidenceError, Reason
from controller.model import Digest, EvidenceKind, Signature, VerifiedSignature
from controller.verify.certificate import parse_leaf
from controller.verify.identity import Identity
from controller.verify.keyed import find_key
from controller.verify.layer import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    SIGNATURE_ANNOTATION,
    LoggedAt,
    annotation,
    as_utc,
    logged_at,
    missing_tlog,
    verify_keyed_tlog,
    verify_keyless_certificate,
)
from controller.verify.limits import (
    MAX_CERTIFICATE_PEM_BYTES,
    MAX_CHAIN_PEM_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_SIGNATURE_B64_BYTES,
    MAX_TLOG_BUNDLE_BYTES,
)
from controller.verify.options import VerifyOptions
from controller.verify.payload import SimpleSigningPayload, check_payload_digest, parse_payload
from controller.verify.tlog import (
    check_body,
    check_integrated_time,
    parse_body,
    parse_rekor_entry,
    verify_set,
)
from controller.verify.trustroot import TrustRoot

__all__ = [
    "BUNDLE_ANNOTATION",
    "CERTIFICATE_ANNOTATION",
    "CHAIN_ANNOTATION",
    "SIGNATURE_ANNOTATION",
    "as_utc",
    "verify_simplesigning",
]

_SIMPLESIGNING: Final = "simplesigning"


@dataclass(frozen=True, slots=True)
class _Evidence:
    """The annotations of one layer, bounded and decoded (step 1). No certificate: key-signed."""

    signature: bytes
    certificate_pem: bytes | None
    chain_pem: bytes | None
    bundle_json: bytes | None


def _read_annotations(sig: Signature, *, keys_given: bool) -> _Evidence:
    """Step 1 (see the module docstring)."""
    if sig.kind != _SIMPLESIGNING:
        raise EvidenceError(Reason.PAYLOAD_INVALID, f"not a simple-signing signature ({sig.kind})")
    certificate_pem = annotation(sig, CERTIFICATE_ANNOTATION, MAX_CERTIFICATE_PEM_BYTES)
    if certificate_pem is None and not keys_given:
        raise EvidenceError(
            Reason.NOT_KEYLESS, "layer has no certificate: a key-based signature, not keyless evidence"
        )
    if len(sig.payload) > MAX_PAYLOAD_BYTES:
        raise EvidenceError(Reason.LIMIT_EXCEEDED, f"payload is larger than {MAX_PAYLOAD_BYTES} bytes")
    chain_pem = annotation(sig, CHAIN_ANNOTATION, MAX_CHAIN_PEM_BYTES)
    bundle_json = annotation(sig, BUNDLE_ANNOTATION, MAX_TLOG_BUNDLE_BYTES)
    signature_b64 = annotation(sig, SIGNATURE_ANNOTATION, MAX_SIGNATURE_B64_BYTES)
    if signature_b64 is None:
        raise EvidenceError(Reason.SIGNATURE_INVALID, f"layer has no {SIGNATURE_ANNOTATION}")
    try:
        signature = binascii.a2b_base64(signature_b64, strict_mode=True)  # = b64decode(validate=True)
    except binascii.Error as e:
        raise EvidenceError(Reason.SIGNATURE_INVALID, "signature annotation is not base64") from e
    if not signature:
        raise EvidenceError(Reason.SIGNATURE_INVALID, "signature annotation is empty")
    return _Evidence(signature, certificate_pem, chain_pem, bundle_json)


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
    evidence = _read_annotations(sig, keys_given=bool(options.keys))

    # 2. payload: the exact bytes, for this image
    payload = parse_payload(sig.payload)
    check_payload_digest(payload, digest)

    if evidence.certificate_pem is None:
        return _verify_key_signed(sig, evidence, payload, digest, trust_root, options, warnings)

    # 3. certificate profile
    leaf = parse_leaf(evidence.certificate_pem)

    # 4. signature over the exact payload bytes
    if not leaf.key.verify(evidence.signature, sig.payload):
        raise EvidenceError(Reason.SIGNATURE_INVALID, "signature does not verify with the certificate key")

    # 5. transparency log entry: fixes the verification time
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
        logged = logged_at(entry)
        at = entry.integrated_at
    else:
        logged = missing_tlog(sig, options, warnings)
        at = now

    # 6-8. chain to a trusted Fulcio CA valid at that time, embedded SCT, identity
    identity = verify_keyless_certificate(
        leaf,
        at=at,
        chain_pem=evidence.chain_pem,
        trust_root=trust_root,
        options=options,
        warnings=warnings,
        source=sig.source,
    )
    return verified_signature(
        identity,
        logged,
        sig=sig,
        digest=digest,
        trust_root=trust_root,
        warnings=warnings,
        annotations=payload.annotations,
    )


def _verify_key_signed(  # noqa: PLR0917 - one private step of the checklist above, called once
    sig: Signature,
    evidence: _Evidence,
    payload: SimpleSigningPayload,
    digest: Digest,
    trust_root: TrustRoot,
    options: VerifyOptions,
    warnings: list[str],
) -> VerifiedSignature:
    """Steps K1-K2 (see the module docstring)."""
    # K1. the signature verifies with one of the policy's keys
    key = find_key(options.keys, evidence.signature, sig.payload)

    # K2. the Rekor entry, if any, records this payload, signature and key
    logged: LoggedAt
    if evidence.bundle_json is not None:
        logged = verify_keyed_tlog(
            evidence.bundle_json,
            payload_sha256=hashlib.sha256(sig.payload).hexdigest(),
            signature=evidence.signature,
            key=key,
            trust_root=trust_root,
        )
    else:
        logged = missing_tlog(sig, options, warnings)
    return verified_signature(
        Identity(subject="", issuer="", claims={}),
        logged,
        sig=sig,
        digest=digest,
        trust_root=trust_root,
        warnings=warnings,
        annotations=payload.annotations,
        key_id=key.key_id,
    )


def verified_signature(
    identity: Identity,
    logged: LoggedAt,
    *,
    sig: Signature,
    digest: Digest,
    trust_root: TrustRoot,
    warnings: list[str],
    annotations: Mapping[str, str],
    key_id: str = "",
    kind: EvidenceKind = "signature",
    predicate_type: str = "",
    statement: bytes = b"",
) -> VerifiedSignature:
    """The result of a verified layer, signature or attestation: who signed it (an empty identity
    when key-signed), where it was logged, and the relaxations that took effect."""
    return VerifiedSignature(
        subject=identity.subject,
        issuer=identity.issuer,
        claims=identity.claims,
        digest=digest,
        log_index=logged.log_index,
        integrated_time=logged.integrated_time,
        annotations=annotations,
        log_id=logged.log_id,
        trust_root=trust_root.name,
        source=sig.source,
        warnings=tuple(warnings),
        kind=kind,
        predicate_type=predicate_type,
        statement=statement,
        key_id=key_id,
    )
