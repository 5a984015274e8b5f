"""Verification of one legacy cosign ``.att`` layer (a DSSE envelope), as a numbered checklist.

cosign ≤ 2 stores each attestation as one layer of the ``sha256-<hex>.att`` image: the blob is the
DSSE envelope JSON (media type ``application/vnd.dsse.envelope.v1+json``) whose payload is an in-toto
statement; the annotations are those of a ``.sig`` layer (:mod:`.layer`), with an empty signature
annotation and a ``predicateType``. Inputs are bytes, a trust root and a time; the output is a
:class:`VerifiedSignature` of kind ``"attestation"`` (or ``"signature"`` for cosign's signature
predicate), or a reasoned :class:`EvidenceError`. The checks, in order (tests pin it):

1. **Layer**: not an ``attestation`` of media type DSSE                        -> PayloadInvalid;
   no certificate and no trusted keys (``options.keys``)                       -> NotKeylessSignature;
   an annotation or the blob over its bound                                      -> LimitExceeded
2. **Envelope** (:mod:`.dsse`): strict shape and base64, payload type in-toto  -> PayloadInvalid
3. **Statement**: an in-toto Statement v0.1/v1                                   -> PayloadInvalid;
   the ``predicateType`` annotation, when present, is not the statement's         -> PayloadInvalid;
   no subject carries the image digest                                           -> PayloadDigestMismatch
4. **Signature** over the DSSE PAE: keyless, with the certificate (profile as for ``.sig``:
   CertificateInvalid) -> SignatureInvalid; key-signed, with one of ``options.keys`` -> KeyMismatch
5. **Transparency log** (``dev.sigstore.cosign/bundle``): absent -> TlogEntryMissing (or a warning
   when allowed); malformed / unknown log / bad SET / not an ``intoto`` 0.0.2 or ``dsse`` 0.0.1 body
   -> TlogEntryInvalid; a body not about this envelope (its exact bytes for intoto), statement,
   signatures and signer
   (:mod:`.entries`) -> TlogBodyMismatch; keyless, logged outside the certificate's
   validity -> CertificateNotValidAtSigningTime
6-8. keyless only: **chain**, **SCT** and **identity** at the integrated time, exactly as for a
   ``.sig`` layer (:func:`.layer.verify_keyless_certificate`).

A layer with a certificate is keyless whatever keys are given; a key-signed one never carries a
subject or issuer, only ``key_id``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Final

from controller.errors import EvidenceError, Reason
from controller.model import Digest, Signature, VerifiedSignature
from controller.verify import jsonstrict
from controller.verify.certificate import Leaf, parse_leaf
from controller.verify.dsse import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    check_subject,
    evidence_kind,
    parse_envelope,
    parse_statement,
    verify_envelope,
)
from controller.verify.entries import check_entry_body
from controller.verify.identity import Identity
from controller.verify.jsonstrict import StrictJsonError
from controller.verify.keyed import VerificationKey, find_key
from controller.verify.layer import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    LoggedAt,
    annotation,
    as_utc,
    logged_at,
    missing_tlog,
    verify_keyless_certificate,
)
from controller.verify.limits import (
    MAX_CERTIFICATE_PEM_BYTES,
    MAX_CHAIN_PEM_BYTES,
    MAX_TLOG_BUNDLE_BYTES,
)
from controller.verify.options import VerifyOptions
from controller.verify.simplesigning import verified_signature
from controller.verify.tlog import check_integrated_time, parse_rekor_entry, verify_set
from controller.verify.trustroot import TrustRoot

DSSE_MEDIA_TYPE: Final = "application/vnd.dsse.envelope.v1+json"
PREDICATE_TYPE_ANNOTATION: Final = "predicateType"
_MAX_PREDICATE_TYPE_BYTES: Final = 1024
_HASH_FIELDS: Final = frozenset({"algorithm", "value"})
_ATTESTATION_ENTRIES: Final = frozenset({("intoto", "0.0.2"), ("dsse", "0.0.1")})  # what cosign ≤ 2 logs


def _check_layer(sig: Signature, options: VerifyOptions) -> tuple[bytes | None, bytes | None, bytes | None]:
    """Step 1: the certificate, chain and bundle annotations (bounded); None when absent."""
    if sig.kind != "attestation" or sig.media_type != DSSE_MEDIA_TYPE:
        raise EvidenceError(
            Reason.PAYLOAD_INVALID, f"not a DSSE attestation layer ({sig.kind}, {sig.media_type[:80]})"
        )
    certificate_pem = annotation(sig, CERTIFICATE_ANNOTATION, MAX_CERTIFICATE_PEM_BYTES)
    if certificate_pem is None and not options.keys:
        raise EvidenceError(
            Reason.NOT_KEYLESS, "attestation has no certificate: key-signed, and the policy trusts no key"
        )
    chain_pem = annotation(sig, CHAIN_ANNOTATION, MAX_CHAIN_PEM_BYTES)
    bundle_json = annotation(sig, BUNDLE_ANNOTATION, MAX_TLOG_BUNDLE_BYTES)
    return certificate_pem, chain_pem, bundle_json


def _envelope_hash(doc: jsonstrict.JsonObject) -> tuple[str, str] | None:
    spec = jsonstrict.as_object(doc.get("spec"), "body.spec")
    if "envelopeHash" not in spec:
        return None
    pair = jsonstrict.fields(spec["envelopeHash"], "spec.envelopeHash", required=_HASH_FIELDS)
    return (
        jsonstrict.get_str(pair, "algorithm", "spec.envelopeHash"),
        jsonstrict.get_str(pair, "value", "spec.envelopeHash"),
    )


def _entry_kind(body: bytes, envelope_json: bytes) -> tuple[str, str]:
    """Step 5: the (SET-authenticated) body's kind and version. The body is then checked by
    :func:`.entries.check_entry_body`; here, for ``dsse`` 0.0.1, also its ``envelopeHash`` against the
    layer's exact bytes, as cosign's ``bundleHash`` does (a bundle cannot: it has no envelope bytes)."""
    try:
        doc = jsonstrict.as_object(jsonstrict.loads(body), "body")
        kind, version = jsonstrict.get_str(doc, "kind", "body"), jsonstrict.get_str(doc, "apiVersion", "body")
        logged = _envelope_hash(doc) if kind == "dsse" else None
    except StrictJsonError as e:
        raise EvidenceError(Reason.TLOG_ENTRY_INVALID, f"attestation entry body: {e}") from e
    if (kind, version) not in _ATTESTATION_ENTRIES:
        raise EvidenceError(
            Reason.TLOG_ENTRY_INVALID,
            f"entry {kind[:40]!r} {version[:20]!r} is not intoto 0.0.2 or dsse 0.0.1",
        )
    if logged is not None and logged != ("sha256", hashlib.sha256(envelope_json).hexdigest()):
        raise EvidenceError(Reason.TLOG_BODY_MISMATCH, "entry envelopeHash is not this layer's sha256")
    return kind, version


def _key_signer(envelope: Envelope, options: VerifyOptions) -> VerificationKey:
    """Step 4, key-signed: the first envelope signature that one of the keys verifies over the PAE."""
    data = envelope.pae()
    for candidate in envelope.signatures:
        try:
            return find_key(options.keys, candidate.sig, data)
        except EvidenceError as e:
            if e.reason != Reason.KEY_MISMATCH:
                raise
    raise EvidenceError(Reason.KEY_MISMATCH, "no envelope signature verifies with a trusted key")


def verify_attestation_layer(
    sig: Signature,
    *,
    digest: Digest,
    trust_root: TrustRoot,
    options: VerifyOptions,
    now: datetime,
) -> VerifiedSignature:
    """Verify one cosign ``.att`` layer for the image ``digest`` (checklist in the module docstring)."""
    now = as_utc(now)
    warnings: list[str] = []

    # 1. layer and annotations
    certificate_pem, chain_pem, bundle_json = _check_layer(sig, options)
    predicate_annotation = annotation(sig, PREDICATE_TYPE_ANNOTATION, _MAX_PREDICATE_TYPE_BYTES)

    # 2. envelope
    envelope = parse_envelope(sig.payload)
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise EvidenceError(Reason.PAYLOAD_INVALID, f"envelope payloadType is {envelope.payload_type[:80]!r}")

    # 3. statement, for this image
    statement = parse_statement(envelope.payload)
    if predicate_annotation is not None and predicate_annotation.decode("utf-8") != statement.predicate_type:
        raise EvidenceError(Reason.PAYLOAD_INVALID, "predicateType annotation is not the statement's")
    check_subject(statement, digest)

    # 4. signature over the PAE
    signer: Leaf | VerificationKey
    if certificate_pem is not None:
        leaf = parse_leaf(certificate_pem)
        verify_envelope(envelope, leaf.key)
        signer = leaf
    else:
        signer = _key_signer(envelope, options)

    # 5. transparency log
    logged: LoggedAt
    if bundle_json is not None:
        entry = parse_rekor_entry(bundle_json)
        verify_set(entry, trust_root)
        kind, version = _entry_kind(entry.body_bytes, sig.payload)
        check_entry_body(
            kind,
            version,
            entry.body_bytes,
            verifier=signer.der if isinstance(signer, Leaf) else signer.spki_der,
            envelope=envelope,
            envelope_json=sig.payload,
        )
        if isinstance(signer, Leaf):
            check_integrated_time(entry, signer)
        logged = logged_at(entry)
    else:
        logged = missing_tlog(sig, options, warnings)

    # 6-8. keyless: chain, SCT, identity at the integrated time (else now)
    identity = Identity(subject="", issuer="", claims={})
    if isinstance(signer, Leaf):
        identity = verify_keyless_certificate(
            signer,
            at=logged.integrated_time or now,
            chain_pem=chain_pem,
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
        annotations={},
        kind=evidence_kind(statement.predicate_type),
        predicate_type=statement.predicate_type,
        statement=statement.raw,
        key_id=signer.key_id if isinstance(signer, VerificationKey) else "",
    )
