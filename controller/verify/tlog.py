"""The Rekor entry of a legacy cosign signature (checklist step 5).

cosign stores the entry in the ``dev.sigstore.cosign/bundle`` annotation::

    {"SignedEntryTimestamp": "<base64 signature>",
     "Payload": {"body": "<base64 entry body>", "integratedTime": <unix seconds>,
                 "logIndex": <int>, "logID": "<hex log ID>"}}

The Signed Entry Timestamp (SET) is Rekor's signature over the RFC 8785 canonical JSON of
``Payload`` with lower-case keys: ``{"body":...,"integratedTime":...,"logID":...,"logIndex":...}``.
We rebuild those exact bytes from validated fields (base64 body, lower-case hex log ID, integers
below 2**53: none needs escaping or number formatting), and verify them with the trust-root key
chosen by log ID and valid at ``integratedTime``.

The body must be a ``hashedrekord`` or ``rekord`` entry, version 0.0.1, that describes *this*
signature: sha256 of the payload, the same signature bytes, and the same leaf certificate (DER).
Sub-steps, in order, with their reasons:

5a. parse the annotation                                   -> TlogEntryInvalid
5b. the log ID is a trust-root Rekor key valid at that time -> TlogEntryInvalid
5c. the SET verifies                                       -> TlogEntryInvalid
5d. the body parses as hashedrekord/rekord 0.0.1            -> TlogEntryInvalid
5e. the body describes this payload, signature, certificate -> TlogBodyMismatch
5f. integratedTime lies within the leaf's validity          -> CertificateNotValidAtSigningTime
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from controller.errors import EvidenceError, Reason
from controller.verify import jsonstrict
from controller.verify.certificate import Leaf, pem_to_der
from controller.verify.jsonstrict import StrictJsonError
from controller.verify.trustroot import TransparencyLog, TrustRoot

_LOG_ID_HEX: Final = re.compile(r"^[0-9a-f]{64}$")
_SHA256_HEX: Final = re.compile(r"^[0-9a-f]{64}$")
_BODY_KINDS: Final = frozenset({"hashedrekord", "rekord"})
_BODY_VERSION: Final = "0.0.1"
_MAX_UNIX_SECONDS: Final = 253402300799  # 9999-12-31T23:59:59Z, the last second datetime holds
# The fields of each JSON object read here (built once, not per signature).
_BUNDLE_FIELDS: Final = frozenset({"SignedEntryTimestamp", "Payload"})
_BUNDLE_PAYLOAD_FIELDS: Final = frozenset({"body", "integratedTime", "logIndex", "logID"})
_BODY_FIELDS: Final = frozenset({"apiVersion", "kind", "spec"})
_SPEC_FIELDS: Final = frozenset({"data", "signature"})
_DATA_FIELDS: Final = frozenset({"hash"})
_HASH_FIELDS: Final = frozenset({"algorithm", "value"})
_HASHEDREKORD_SIGNATURE_FIELDS: Final = frozenset({"content", "publicKey"})
_REKORD_SIGNATURE_FIELDS: Final = frozenset({"content", "format", "publicKey"})
_PUBLIC_KEY_FIELDS: Final = frozenset({"content"})


@dataclass(frozen=True, slots=True)
class RekorEntry:
    """A parsed ``dev.sigstore.cosign/bundle`` annotation (not yet verified)."""

    signed_entry_timestamp: bytes
    body: str  # base64, exactly as logged (strictly validated, so safe to embed in JSON as is)
    body_bytes: bytes  # the decoded body
    integrated_time: int
    log_index: int
    log_id_hex: str
    integrated_at: datetime = field(init=False, repr=False, compare=False)  # as an aware UTC datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "integrated_at", datetime.fromtimestamp(self.integrated_time, tz=UTC))

    def canonical_payload(self) -> bytes:
        """The RFC 8785 bytes the SET signs (all fields validated, so no escaping is needed)."""
        return (
            f'{{"body":"{self.body}","integratedTime":{self.integrated_time},'
            f'"logID":"{self.log_id_hex}","logIndex":{self.log_index}}}'
        ).encode("ascii")


@dataclass(frozen=True, slots=True)
class RekorBody:
    """What a hashedrekord/rekord 0.0.1 body records."""

    kind: str
    hash_algorithm: str
    hash_value: str
    signature_b64: str
    public_key_b64: str


def _invalid(detail: str) -> EvidenceError:
    return EvidenceError(Reason.TLOG_ENTRY_INVALID, detail)


def _mismatch(detail: str) -> EvidenceError:
    return EvidenceError(Reason.TLOG_BODY_MISMATCH, detail)


def _b64decode(text: str) -> bytes:
    """Strict standard base64 (alphabet and padding); raises ValueError (binascii.Error).

    What ``base64.b64decode(text, validate=True)`` does, without its Python layers.
    """
    return binascii.a2b_base64(text, strict_mode=True)


def parse_rekor_entry(data: bytes) -> RekorEntry:
    """5a: parse the bundle annotation. Malformed -> ``TlogEntryInvalid``."""
    try:
        doc = jsonstrict.fields(
            jsonstrict.loads(data),
            "bundle",
            required=_BUNDLE_FIELDS,
        )
        payload = jsonstrict.fields(
            doc["Payload"],
            "bundle.Payload",
            required=_BUNDLE_PAYLOAD_FIELDS,
        )
        set_b64 = jsonstrict.get_str(doc, "SignedEntryTimestamp", "bundle")
        body = jsonstrict.get_str(payload, "body", "bundle.Payload")
        integrated_time = jsonstrict.get_int(payload, "integratedTime", "bundle.Payload")
        log_index = jsonstrict.get_int(payload, "logIndex", "bundle.Payload")
        log_id_hex = jsonstrict.get_str(payload, "logID", "bundle.Payload")
    except StrictJsonError as e:
        raise _invalid(f"bundle annotation: {e}") from e
    try:
        body_bytes = _b64decode(body)
    except ValueError as e:
        raise _invalid("bundle body is not base64") from e
    if not body_bytes:
        raise _invalid("bundle body is empty")
    if integrated_time > _MAX_UNIX_SECONDS:
        raise _invalid("bundle integratedTime is out of range")
    if not _LOG_ID_HEX.match(log_id_hex):
        raise _invalid("bundle logID is not 64 lower-case hex digits")
    try:
        signed_entry_timestamp = _b64decode(set_b64)
    except ValueError as e:
        raise _invalid("SignedEntryTimestamp is not base64") from e
    if not signed_entry_timestamp:
        raise _invalid("SignedEntryTimestamp is empty")
    return RekorEntry(
        signed_entry_timestamp=signed_entry_timestamp,
        body=body,
        body_bytes=body_bytes,
        integrated_time=integrated_time,
        log_index=log_index,
        log_id_hex=log_id_hex,
    )


def verify_set(entry: RekorEntry, trust_root: TrustRoot) -> TransparencyLog:
    """5b-5c: find the Rekor key by log ID, valid at integratedTime, and verify the SET with it."""
    logs = trust_root.tlog(bytes.fromhex(entry.log_id_hex))
    if not logs:
        raise _invalid(f"log {entry.log_id_hex[:16]}... is not in trust root {trust_root.name}")
    when = entry.integrated_at
    current = [log for log in logs if log.valid_for.contains(when)]
    if not current:
        raise _invalid(f"log key {entry.log_id_hex[:16]}... is not valid at {when.isoformat()}")
    data = entry.canonical_payload()
    for log in current:
        if log.key is not None and log.key.verify(entry.signed_entry_timestamp, data):
            return log
    raise _invalid("SignedEntryTimestamp does not verify")


def parse_body(entry: RekorEntry) -> RekorBody:
    """5d: decode the (SET-authenticated) body. Malformed -> ``TlogEntryInvalid``."""
    return parse_body_bytes(entry.body_bytes)


def parse_body_bytes(body_bytes: bytes) -> RekorBody:
    """A hashedrekord/rekord 0.0.1 body (decoded JSON bytes). Malformed -> ``TlogEntryInvalid``."""
    try:
        doc = jsonstrict.fields(
            jsonstrict.loads(body_bytes),
            "body",
            required=_BODY_FIELDS,
        )
        kind = jsonstrict.get_str(doc, "kind", "body")
        if kind not in _BODY_KINDS or jsonstrict.get_str(doc, "apiVersion", "body") != _BODY_VERSION:
            raise StrictJsonError(f"unsupported entry {kind[:40]!r}, expected hashedrekord/rekord 0.0.1")
        spec = jsonstrict.fields(doc["spec"], "spec", required=_SPEC_FIELDS)
        data = jsonstrict.fields(spec["data"], "spec.data", required=_DATA_FIELDS)
        hashed = jsonstrict.fields(data["hash"], "spec.data.hash", required=_HASH_FIELDS)
        signature_fields = (
            _HASHEDREKORD_SIGNATURE_FIELDS if kind == "hashedrekord" else _REKORD_SIGNATURE_FIELDS
        )
        signature = jsonstrict.fields(spec["signature"], "spec.signature", required=signature_fields)
        if kind == "rekord" and jsonstrict.get_str(signature, "format", "spec.signature") != "x509":
            raise StrictJsonError("rekord signature format is not x509")
        public_key = jsonstrict.fields(
            signature["publicKey"], "spec.signature.publicKey", required=_PUBLIC_KEY_FIELDS
        )
        return RekorBody(
            kind=kind,
            hash_algorithm=jsonstrict.get_str(hashed, "algorithm", "spec.data.hash"),
            hash_value=jsonstrict.get_str(hashed, "value", "spec.data.hash"),
            signature_b64=jsonstrict.get_str(signature, "content", "spec.signature"),
            public_key_b64=jsonstrict.get_str(public_key, "content", "spec.signature.publicKey"),
        )
    except ValueError as e:  # StrictJsonError, binascii.Error included
        raise _invalid(f"entry body: {e}") from e


def check_body(body: RekorBody, *, payload_sha256: str, signature: bytes, leaf: Leaf) -> None:
    """5e: the body must describe this payload, signature and certificate -> ``TlogBodyMismatch``."""
    if body.hash_algorithm != "sha256" or not _SHA256_HEX.match(body.hash_value):
        raise _mismatch(f"entry hash is not a sha256 ({body.hash_algorithm[:20]!r})")
    if body.hash_value != payload_sha256:
        raise _mismatch("entry hash is not the payload's sha256")
    try:
        logged_signature = _b64decode(body.signature_b64)
    except ValueError as e:
        raise _mismatch("entry signature is not base64") from e
    if logged_signature != signature:
        raise _mismatch("entry signature is not this signature")
    if leaf.pem is not None and body.public_key_b64 == binascii.b2a_base64(leaf.pem, newline=False).decode():
        return  # the base64 of the very PEM the leaf was decoded from (to exactly leaf.der)
    try:
        (logged_der,) = pem_to_der(_b64decode(body.public_key_b64), max_certificates=1)
    except ValueError as e:  # PemError, binascii.Error included
        raise _mismatch("entry public key is not a PEM certificate") from e
    if logged_der != leaf.der:
        raise _mismatch("entry certificate is not the signing certificate")


def check_integrated_time(entry: RekorEntry, leaf: Leaf) -> None:
    """5f: the entry was logged while the leaf was valid -> else ``CertificateNotValidAtSigningTime``."""
    when = entry.integrated_at
    if not leaf.not_before <= when <= leaf.not_after:
        raise EvidenceError(
            Reason.CERTIFICATE_EXPIRED,
            f"logged at {when.isoformat()}, outside the certificate's "
            f"{leaf.not_before.isoformat()}..{leaf.not_after.isoformat()}",
        )
