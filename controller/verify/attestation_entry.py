"""The Rekor entry of a legacy cosign ``.att`` layer: ``intoto`` 0.0.2 or ``dsse`` 0.0.1.

``cosign attest`` (≤ 2) logs the DSSE envelope it pushes as an ``intoto`` 0.0.2 entry
(``--rekor-entry-type intoto``, the default for years) or a ``dsse`` 0.0.1 entry. Rekor stores them
canonicalized (``pkg/types/intoto/v0.0.2``, ``pkg/types/dsse/v0.0.1``)::

    {"apiVersion":"0.0.2","kind":"intoto","spec":{"content":{
        "envelope":{"payloadType":"...","signatures":[{"publicKey":"<b64 PEM>","sig":"<b64 of the b64 sig>"}]},
        "hash":{"algorithm":"sha256","value":"<sha256 of the envelope bytes>"},
        "payloadHash":{"algorithm":"sha256","value":"<sha256 of the statement>"}}}}

    {"apiVersion":"0.0.1","kind":"dsse","spec":{
        "envelopeHash":{"algorithm":"sha256","value":"<sha256 of the envelope bytes>"},
        "payloadHash":{"algorithm":"sha256","value":"<sha256 of the statement>"},
        "signatures":[{"signature":"<b64 sig>","verifier":"<b64 PEM>"}]}}

(the ``intoto`` signature is base64 twice: Rekor stores the envelope's base64 text as bytes.)

:func:`parse_attestation_body` reads either (malformed or another kind -> ``TlogEntryInvalid``);
:func:`check_attestation_body` requires it to describe *this* layer: its exact envelope bytes, its
statement, its one signature, and the signer (certificate or key), else ``TlogBodyMismatch``. cosign
itself skips the signature comparison for attestations (``compareSigs`` returns early on an empty
``Base64Signature``); we do not.
"""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass
from typing import Final

from controller.errors import EvidenceError, Reason
from controller.verify import jsonstrict
from controller.verify.certificate import Leaf, pem_to_der
from controller.verify.dsse import Envelope
from controller.verify.jsonstrict import StrictJsonError
from controller.verify.keyed import VerificationKey, check_logged_key
from controller.verify.tlog import RekorEntry

_BODY_FIELDS: Final = frozenset({"apiVersion", "kind", "spec"})
_INTOTO_SPEC: Final = frozenset({"content"})
_INTOTO_CONTENT: Final = frozenset({"envelope", "hash", "payloadHash"})
_INTOTO_ENVELOPE_REQUIRED: Final = frozenset({"payloadType", "signatures"})
_INTOTO_ENVELOPE_OPTIONAL: Final = frozenset({"payload"})
_INTOTO_SIGNATURE_REQUIRED: Final = frozenset({"publicKey", "sig"})
_INTOTO_SIGNATURE_OPTIONAL: Final = frozenset({"keyid"})
_DSSE_SPEC_REQUIRED: Final = frozenset({"envelopeHash", "payloadHash", "signatures"})
_DSSE_SPEC_OPTIONAL: Final = frozenset({"proposedContent"})
_DSSE_SIGNATURE: Final = frozenset({"signature", "verifier"})
_HASH_FIELDS: Final = frozenset({"algorithm", "value"})
_MAX_BODY_SIGNATURES: Final = 8
_KINDS: Final = {("intoto", "0.0.2"), ("dsse", "0.0.1")}


@dataclass(frozen=True, slots=True)
class AttestationBody:
    """What an ``intoto`` 0.0.2 / ``dsse`` 0.0.1 body records (strings as logged, not yet compared)."""

    kind: str
    payload_type: str | None  # intoto records it; dsse does not
    envelope_hash: tuple[str, str]  # (algorithm, hex)
    payload_hash: tuple[str, str]
    signatures: tuple[tuple[str, str], ...]  # (signature as logged, public key / certificate b64)
    payload_b64: str | None  # an intoto body may keep the payload (not canonical, but readable)


def _hash(obj: jsonstrict.JsonObject, key: str, what: str) -> tuple[str, str]:
    value = jsonstrict.fields(obj[key], f"{what}.{key}", required=_HASH_FIELDS)
    return (
        jsonstrict.get_str(value, "algorithm", f"{what}.{key}"),
        jsonstrict.get_str(value, "value", f"{what}.{key}"),
    )


def _intoto(spec_value: object) -> AttestationBody:
    spec = jsonstrict.fields(spec_value, "spec", required=_INTOTO_SPEC)
    content = jsonstrict.fields(spec["content"], "spec.content", required=_INTOTO_CONTENT)
    envelope = jsonstrict.fields(
        content["envelope"],
        "spec.content.envelope",
        required=_INTOTO_ENVELOPE_REQUIRED,
        optional=_INTOTO_ENVELOPE_OPTIONAL,
    )
    items = jsonstrict.get_list(
        envelope, "signatures", "spec.content.envelope", max_items=_MAX_BODY_SIGNATURES
    )
    signatures = []
    for item in items:
        entry = jsonstrict.fields(
            item,
            "spec.content.envelope.signatures[]",
            required=_INTOTO_SIGNATURE_REQUIRED,
            optional=_INTOTO_SIGNATURE_OPTIONAL,
        )
        signatures.append(
            (
                jsonstrict.get_str(entry, "sig", "signature"),
                jsonstrict.get_str(entry, "publicKey", "signature"),
            )
        )
    return AttestationBody(
        kind="intoto",
        payload_type=jsonstrict.get_str(envelope, "payloadType", "spec.content.envelope"),
        envelope_hash=_hash(content, "hash", "spec.content"),
        payload_hash=_hash(content, "payloadHash", "spec.content"),
        signatures=tuple(signatures),
        payload_b64=jsonstrict.get_optional_str(envelope, "payload", "spec.content.envelope"),
    )


def _dsse(spec_value: object) -> AttestationBody:
    spec = jsonstrict.fields(spec_value, "spec", required=_DSSE_SPEC_REQUIRED, optional=_DSSE_SPEC_OPTIONAL)
    items = jsonstrict.get_list(spec, "signatures", "spec", max_items=_MAX_BODY_SIGNATURES)
    signatures = []
    for item in items:
        entry = jsonstrict.fields(item, "spec.signatures[]", required=_DSSE_SIGNATURE)
        signatures.append(
            (
                jsonstrict.get_str(entry, "signature", "signature"),
                jsonstrict.get_str(entry, "verifier", "signature"),
            )
        )
    return AttestationBody(
        kind="dsse",
        payload_type=None,
        envelope_hash=_hash(spec, "envelopeHash", "spec"),
        payload_hash=_hash(spec, "payloadHash", "spec"),
        signatures=tuple(signatures),
        payload_b64=None,
    )


def _kind(doc: jsonstrict.JsonObject) -> str:
    kind = jsonstrict.get_str(doc, "kind", "body")
    version = jsonstrict.get_str(doc, "apiVersion", "body")
    if (kind, version) not in _KINDS:
        raise StrictJsonError(f"entry {kind[:40]!r} {version[:20]!r} is not intoto 0.0.2 or dsse 0.0.1")
    return kind


def parse_attestation_body(entry: RekorEntry) -> AttestationBody:
    """The (SET-authenticated) body as an ``intoto`` 0.0.2 or ``dsse`` 0.0.1 entry -> else ``TlogEntryInvalid``."""
    try:
        doc = jsonstrict.fields(jsonstrict.loads(entry.body_bytes), "body", required=_BODY_FIELDS)
        return _intoto(doc["spec"]) if _kind(doc) == "intoto" else _dsse(doc["spec"])
    except StrictJsonError as e:
        raise EvidenceError(Reason.TLOG_ENTRY_INVALID, f"attestation entry body: {e}") from e


def _mismatch(detail: str) -> EvidenceError:
    return EvidenceError(Reason.TLOG_BODY_MISMATCH, detail)


def _b64decode(text: str, what: str) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error as e:
        raise _mismatch(f"entry {what} is not base64") from e


def check_attestation_body(
    body: AttestationBody,
    *,
    envelope_bytes: bytes,
    envelope: Envelope,
    signature: bytes,
    signer: Leaf | VerificationKey,
) -> None:
    """The body records this envelope (bytes and statement), its one signature and its signer."""
    if body.envelope_hash != ("sha256", hashlib.sha256(envelope_bytes).hexdigest()):
        raise _mismatch("entry envelope hash is not this layer's sha256")
    if body.payload_hash != ("sha256", hashlib.sha256(envelope.payload).hexdigest()):
        raise _mismatch("entry payload hash is not this statement's sha256")
    if body.payload_type is not None and body.payload_type != envelope.payload_type:
        raise _mismatch("entry payloadType is not this envelope's")
    if body.payload_b64 is not None and _b64decode(body.payload_b64, "payload") != envelope.payload:
        raise _mismatch("entry payload is not this statement")
    if len(body.signatures) != 1:
        raise _mismatch(f"entry has {len(body.signatures)} signatures, expected exactly one")
    ((logged_sig, logged_key),) = body.signatures
    logged = _b64decode(logged_sig, "signature")
    if body.kind == "intoto":  # the envelope's base64 text, base64-encoded again
        logged = _b64decode(logged.decode("ascii", errors="replace"), "signature")
    if logged != signature:
        raise _mismatch("entry signature is not this envelope's signature")
    if isinstance(signer, VerificationKey):
        check_logged_key(logged_key, signer)
        return
    try:
        (logged_der,) = pem_to_der(_b64decode(logged_key, "public key"), max_certificates=1)
    except ValueError as e:  # PemError
        raise _mismatch("entry public key is not one PEM certificate") from e
    if logged_der != signer.der:
        raise _mismatch("entry certificate is not the signing certificate")
