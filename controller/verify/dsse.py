"""DSSE envelopes and the in-toto statements they carry.

A DSSE envelope (https://github.com/secure-systems-lab/dsse/blob/master/envelope.md) is::

    {"payloadType": "<type>", "payload": "<base64>", "signatures": [{"keyid": "...", "sig": "<base64>"}]}

Its signatures are over the Pre-Authentication Encoding (:func:`pae`), never over the bare payload.
Sigstore bundles and cosign's legacy ``.att`` layers both carry one, with payload type
``application/vnd.in-toto+json`` and an in-toto Statement v0.1 or v1 as payload
(https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md).

What a caller gets, and the reasons it may meet:

* :func:`parse_envelope` (bytes) / :func:`envelope_from_json` (an already parsed object): the
  envelope's shape, strict base64, bounded sizes and counts          -> PayloadInvalid / LimitExceeded
* :func:`verify_envelope`: a signature of the envelope verifies over the PAE -> SignatureInvalid
* :func:`parse_statement`: an in-toto Statement v0.1/v1                  -> PayloadInvalid
* :func:`check_subject`: one of the statement's subjects carries the digest -> PayloadDigestMismatch
* :func:`evidence_kind`: cosign's signature predicate is a ``"signature"``, anything else is an
  ``"attestation"``.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Final

from controller.errors import EvidenceError, Reason
from controller.model import COSIGN_SIGNATURE_PREDICATE, Digest, EvidenceKind
from controller.verify import jsonstrict
from controller.verify.jsonstrict import StrictJsonError
from controller.verify.keys import PublicKey
from controller.verify.limits import (
    MAX_DSSE_PAYLOAD_BYTES,
    MAX_DSSE_SIGNATURE_BYTES,
    MAX_DSSE_SIGNATURES,
    MAX_STATEMENT_DEPTH,
    MAX_STATEMENT_SUBJECTS,
)

IN_TOTO_PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
IN_TOTO_STATEMENT_TYPES: Final = frozenset(
    {"https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1"}
)
_MAX_PAYLOAD_TYPE_CHARS: Final = 256
_MAX_KEYID_CHARS: Final = 256
_ENVELOPE_FIELDS: Final = frozenset({"payload", "payloadType", "signatures"})
_SIGNATURE_REQUIRED: Final = frozenset({"sig"})
_SIGNATURE_OPTIONAL: Final = frozenset({"keyid"})
_STATEMENT_REQUIRED: Final = frozenset({"_type", "subject", "predicateType"})
_STATEMENT_OPTIONAL: Final = frozenset({"predicate"})
_SUBJECT_REQUIRED: Final = frozenset({"digest"})
# in-toto v1 subjects are ResourceDescriptors; v0.1 subjects have name and digest.
_SUBJECT_OPTIONAL: Final = frozenset(
    {"name", "uri", "content", "downloadLocation", "mediaType", "annotations"}
)


@dataclass(frozen=True, slots=True)
class EnvelopeSignature:
    """One signature of an envelope: the raw signature bytes and its (unauthenticated) key hint."""

    sig: bytes
    keyid: str


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed DSSE envelope (not yet verified)."""

    payload_type: str
    payload: bytes
    signatures: tuple[EnvelopeSignature, ...]

    def pae(self) -> bytes:
        """The bytes its signatures are over."""
        return pae(self.payload_type, self.payload)


@dataclass(frozen=True, slots=True)
class Statement:
    """An in-toto statement: its predicate type, its subjects' digests, and its exact JSON bytes."""

    statement_type: str
    predicate_type: str
    subjects: tuple[tuple[tuple[str, str], ...], ...]  # per subject: (algorithm, value) pairs
    raw: bytes


def _invalid(detail: str) -> EvidenceError:
    return EvidenceError(Reason.PAYLOAD_INVALID, detail)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding: ``"DSSEv1" SP len(type) SP type SP len(body) SP body``."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def decode_base64(text: str, what: str) -> bytes:
    """Standard base64 with padding, strictly; the error is PayloadInvalid."""
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except ValueError as e:  # binascii.Error, or non-ASCII text
        raise _invalid(f"{what} is not base64") from e


def envelope_from_json(value: object) -> Envelope:
    """An envelope from a parsed JSON value (a bundle's ``dsseEnvelope``, an ``.att`` layer)."""
    try:
        obj = jsonstrict.fields(value, "DSSE envelope", required=_ENVELOPE_FIELDS)
        payload_type = jsonstrict.get_str(obj, "payloadType", "DSSE envelope")
        payload_b64 = jsonstrict.get_str(obj, "payload", "DSSE envelope")
        items = jsonstrict.get_list(obj, "signatures", "DSSE envelope", max_items=MAX_DSSE_SIGNATURES)
        raw_signatures: list[tuple[str, str]] = []
        for item in items:
            entry = jsonstrict.fields(
                item, "DSSE signature", required=_SIGNATURE_REQUIRED, optional=_SIGNATURE_OPTIONAL
            )
            keyid = jsonstrict.get_optional_str(entry, "keyid", "DSSE signature") or ""
            raw_signatures.append((jsonstrict.get_str(entry, "sig", "DSSE signature"), keyid))
    except StrictJsonError as e:
        raise _invalid(f"DSSE envelope: {e}") from e
    if len(payload_b64) > (MAX_DSSE_PAYLOAD_BYTES * 4) // 3 + 4:
        raise EvidenceError(
            Reason.LIMIT_EXCEEDED, f"DSSE payload is larger than {MAX_DSSE_PAYLOAD_BYTES} bytes"
        )
    if not payload_type or len(payload_type) > _MAX_PAYLOAD_TYPE_CHARS:
        raise _invalid("DSSE payloadType is empty or too long")
    payload = decode_base64(payload_b64, "DSSE payload")
    if not payload:
        raise _invalid("DSSE payload is empty")
    signatures: list[EnvelopeSignature] = []
    for sig_b64, keyid in raw_signatures:
        if len(sig_b64) > MAX_DSSE_SIGNATURE_BYTES or len(keyid) > _MAX_KEYID_CHARS:
            raise EvidenceError(Reason.LIMIT_EXCEEDED, "DSSE signature or keyid too long")
        sig = decode_base64(sig_b64, "DSSE signature")
        if not sig:
            raise _invalid("DSSE signature is empty")
        signatures.append(EnvelopeSignature(sig, keyid))
    if not signatures:
        raise _invalid("DSSE envelope has no signature")
    return Envelope(payload_type, payload, tuple(signatures))


def parse_envelope(data: bytes) -> Envelope:
    """An envelope from its JSON bytes (bounded: at most the payload bound plus signatures)."""
    if len(data) > 2 * MAX_DSSE_PAYLOAD_BYTES:
        raise EvidenceError(Reason.LIMIT_EXCEEDED, "DSSE envelope is too large")
    try:
        value = jsonstrict.loads(data)
    except StrictJsonError as e:
        raise _invalid(f"DSSE envelope: {e}") from e
    return envelope_from_json(value)


def verify_envelope(envelope: Envelope, key: PublicKey) -> EnvelopeSignature:
    """The first signature of ``envelope`` that verifies over its PAE with ``key`` -> else SignatureInvalid."""
    data = envelope.pae()
    for signature in envelope.signatures:
        if key.verify(signature.sig, data):
            return signature
    raise EvidenceError(Reason.SIGNATURE_INVALID, "no DSSE signature verifies over the envelope")


def _subject_digests(item: object) -> tuple[tuple[str, str], ...]:
    subject = jsonstrict.fields(
        item, "statement.subject[]", required=_SUBJECT_REQUIRED, optional=_SUBJECT_OPTIONAL
    )
    digests = jsonstrict.as_object(subject["digest"], "statement.subject[].digest")
    pairs: list[tuple[str, str]] = []
    for algorithm, value in digests.items():
        if not isinstance(value, str):
            raise StrictJsonError("statement.subject[].digest: values must be strings")
        pairs.append((algorithm, value))
    return tuple(pairs)


def parse_statement(payload: bytes) -> Statement:
    """An in-toto Statement v0.1 or v1 from the envelope's payload bytes -> else PayloadInvalid."""
    if len(payload) > MAX_DSSE_PAYLOAD_BYTES:
        raise EvidenceError(Reason.LIMIT_EXCEEDED, f"statement is larger than {MAX_DSSE_PAYLOAD_BYTES} bytes")
    try:
        obj = jsonstrict.fields(
            jsonstrict.loads(payload, max_depth=MAX_STATEMENT_DEPTH),
            "statement",
            required=_STATEMENT_REQUIRED,
            optional=_STATEMENT_OPTIONAL,
        )
        statement_type = jsonstrict.get_str(obj, "_type", "statement")
        predicate_type = jsonstrict.get_str(obj, "predicateType", "statement")
        items = jsonstrict.get_list(obj, "subject", "statement", max_items=MAX_STATEMENT_SUBJECTS)
        predicate = obj.get("predicate")
        if predicate is not None:
            jsonstrict.as_object(predicate, "statement.predicate")
        subjects = [_subject_digests(item) for item in items]
    except StrictJsonError as e:
        raise _invalid(f"in-toto statement: {e}") from e
    if statement_type not in IN_TOTO_STATEMENT_TYPES:
        raise _invalid(f"not an in-toto Statement ({statement_type[:80]!r})")
    if not predicate_type:
        raise _invalid("in-toto statement has an empty predicateType")
    if not subjects:
        raise _invalid("in-toto statement has no subject")
    return Statement(statement_type, predicate_type, tuple(subjects), payload)


def check_subject(statement: Statement, digest: Digest) -> None:
    """One subject of ``statement`` carries ``digest`` -> else PayloadDigestMismatch."""
    for pairs in statement.subjects:
        for algorithm, value in pairs:
            if algorithm == digest.algorithm and value.lower() == digest.hex:
                return
    raise EvidenceError(Reason.PAYLOAD_DIGEST_MISMATCH, f"no statement subject has digest {digest}")


def evidence_kind(predicate_type: str) -> EvidenceKind:
    """cosign's signature predicate makes a DSSE envelope a signature; any other, an attestation."""
    return "signature" if predicate_type == COSIGN_SIGNATURE_PREDICATE else "attestation"
