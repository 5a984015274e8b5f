"""The Sigstore bundle's wire format, parsed strictly into typed values (nothing verified yet).

A bundle is protobuf-specs' ``Bundle`` message in proto3 JSON
(https://github.com/sigstore/protobuf-specs/blob/main/protos/sigstore_bundle.proto). Media types:

* ``application/vnd.dev.sigstore.bundle+json;version=0.1`` / ``0.2`` / ``0.3``
* ``application/vnd.dev.sigstore.bundle.v0.3+json`` (the newer form of 0.3)

The rules, as sigstore-go's ``Bundle.validate`` and sigstore-python apply them:

* v0.1: every tlog entry carries an inclusion promise (SET); an inclusion proof is optional;
* v0.2 and later: every tlog entry carries an inclusion proof (with a checkpoint);
* v0.3 and later: the verification material is one ``certificate`` or a ``publicKey`` hint, never an
  ``x509CertificateChain``;
* the content is exactly one of ``messageSignature`` and ``dsseEnvelope``.

proto3 JSON semantics: a ``null`` field is the field unset; int64 fields are decimal strings (numbers
are accepted too) and must not be negative; bytes are standard base64. Unknown fields are refused, as
protojson does. Every failure here is ``BundleInvalid`` (or ``LimitExceeded`` for a bound).
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Final, Literal

from controller.errors import EvidenceError, Reason
from controller.verify import jsonstrict
from controller.verify.dsse import Envelope, envelope_from_json
from controller.verify.jsonstrict import JsonObject, StrictJsonError
from controller.verify.limits import (
    MAX_BUNDLE_BODY_BYTES,
    MAX_BUNDLE_CERTIFICATE_BYTES,
    MAX_BUNDLE_CHAIN_CERTIFICATES,
    MAX_BUNDLE_TIMESTAMP_BYTES,
    MAX_BUNDLE_TIMESTAMPS,
    MAX_BUNDLE_TLOG_ENTRIES,
    MAX_CHECKPOINT_BYTES,
    MAX_DSSE_SIGNATURE_BYTES,
    MAX_INCLUSION_PROOF_HASHES,
    MAX_SIGSTORE_BUNDLE_BYTES,
)

BundleVersion = Literal["0.1", "0.2", "0.3"]
MEDIA_TYPES: Final[dict[str, BundleVersion]] = {
    "application/vnd.dev.sigstore.bundle+json;version=0.1": "0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2": "0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3": "0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json": "0.3",
}
# protobuf-specs HashAlgorithm names -> our digest algorithm names
HASH_ALGORITHMS: Final = {"SHA2_256": "sha256", "SHA2_384": "sha384", "SHA2_512": "sha512"}
_MAX_INT64: Final = 2**63 - 1
_MAX_UNIX_SECONDS: Final = 253402300799  # 9999-12-31T23:59:59Z, the last second datetime holds
_MAX_HINT_CHARS: Final = 256
_MAX_KIND_CHARS: Final = 64


@dataclass(frozen=True, slots=True)
class MessageSignature:
    """A signature over an artifact's digest. ``digest`` is an unauthenticated hint (may be absent)."""

    signature: bytes
    digest_algorithm: str | None  # "sha256" ...
    digest: bytes | None


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """A Merkle inclusion proof of the entry, with the signed checkpoint it ends at."""

    log_index: int  # the index in this log shard (not the global logIndex)
    root_hash: bytes
    tree_size: int
    hashes: tuple[bytes, ...]
    checkpoint: str | None  # the signed note, as text (only a v0.1 bundle may leave it out)


@dataclass(frozen=True, slots=True)
class TlogEntry:
    """One transparency-log entry of a bundle."""

    log_index: int
    log_id: bytes
    kind: str
    version: str
    integrated_time: int  # 0 when unset (Rekor v2)
    signed_entry_timestamp: bytes | None
    inclusion_proof: InclusionProof | None
    body: bytes  # canonicalizedBody, decoded
    body_b64: str  # exactly as given, for the SET's canonical payload


@dataclass(frozen=True, slots=True)
class Bundle:
    """A parsed bundle: its material (a certificate chain or a key hint), its log entries and
    timestamps, and its content (a message signature or a DSSE envelope)."""

    media_type: str
    version: BundleVersion
    certificates: tuple[bytes, ...]  # DER, leaf first; empty for a public-key bundle
    public_key_hint: str | None  # set for a public-key bundle ("" when the hint is empty)
    tlog_entries: tuple[TlogEntry, ...]
    timestamps: tuple[bytes, ...]  # RFC 3161 tokens, DER
    message: MessageSignature | None
    envelope: Envelope | None

    @property
    def signature(self) -> bytes:
        """The signature bytes that the log and the timestamps cover."""
        if self.message is not None:
            return self.message.signature
        if self.envelope is None:  # one of the two is set by construction
            raise _invalid("bundle has no content")
        return self.envelope.signatures[0].sig


def _invalid(detail: str) -> EvidenceError:
    return EvidenceError(Reason.BUNDLE_INVALID, detail)


def _obj(
    value: object, what: str, *, required: frozenset[str], optional: frozenset[str] = frozenset()
) -> JsonObject:
    """An object with proto3 ``null`` fields dropped, then checked for exactly these fields."""
    obj = jsonstrict.as_object(value, what)
    if any(v is None for v in obj.values()):
        obj = {k: v for k, v in obj.items() if v is not None}
    return jsonstrict.fields(obj, what, required=required, optional=optional)


def _bytes(obj: JsonObject, key: str, what: str, *, limit: int) -> bytes:
    text = jsonstrict.get_str(obj, key, what)
    if len(text) > (limit * 4) // 3 + 4:
        raise EvidenceError(Reason.LIMIT_EXCEEDED, f"{what}.{key} is larger than {limit} bytes")
    try:
        out = proto_base64(text)
    except ValueError as e:
        raise StrictJsonError(f"{what}.{key}: not base64") from e
    if not out:
        raise StrictJsonError(f"{what}.{key}: empty")
    return out


def proto_base64(text: str) -> bytes:
    """Decode a proto3 JSON ``bytes`` value as protojson (Go) does: standard or URL-safe alphabet,
    padding optional, line breaks ignored. Anything else raises ValueError (binascii.Error)."""
    if "\n" in text or "\r" in text:
        text = text.replace("\r", "").replace("\n", "")
    if "-" in text or "_" in text:
        if "+" in text or "/" in text:
            raise ValueError("mixed base64 alphabets")
        text = text.replace("-", "+").replace("_", "/")
    if len(text) % 4:
        text += "=" * (-len(text) % 4)
    return binascii.a2b_base64(text, strict_mode=True)


def _int64(obj: JsonObject, key: str, what: str) -> int:
    """A proto3 JSON int64: a decimal string or an integral number; negative is refused here."""
    value = obj.get(key, 0)
    if isinstance(value, str):
        if not (value.isascii() and value.lstrip("-").isdigit() and len(value) <= 20):
            raise StrictJsonError(f"{what}.{key}: not an int64")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise StrictJsonError(f"{what}.{key}: not an int64")
    if not 0 <= value <= _MAX_INT64:
        raise StrictJsonError(f"{what}.{key}: out of range ({value})")
    return value


def _proof(value: object, what: str) -> InclusionProof:
    obj = _obj(
        value,
        what,
        required=frozenset({"logIndex", "rootHash", "treeSize", "hashes"}),
        optional=frozenset({"checkpoint"}),
    )
    items = jsonstrict.get_list(obj, "hashes", what, max_items=MAX_INCLUSION_PROOF_HASHES)
    hashes = tuple(_bytes({"h": item}, "h", f"{what}.hashes[]", limit=64) for item in items)
    envelope: str | None = None
    if "checkpoint" in obj:
        checkpoint = _obj(obj["checkpoint"], f"{what}.checkpoint", required=frozenset({"envelope"}))
        envelope = jsonstrict.get_str(checkpoint, "envelope", f"{what}.checkpoint")
    if envelope is not None and len(envelope) > MAX_CHECKPOINT_BYTES:
        raise EvidenceError(Reason.LIMIT_EXCEEDED, f"checkpoint is larger than {MAX_CHECKPOINT_BYTES} bytes")
    return InclusionProof(
        log_index=_int64(obj, "logIndex", what),
        root_hash=_bytes(obj, "rootHash", what, limit=64),
        tree_size=_int64(obj, "treeSize", what),
        hashes=hashes,
        checkpoint=envelope,
    )


def _tlog_entry(value: object, what: str) -> TlogEntry:
    obj = _obj(
        value,
        what,
        required=frozenset({"logIndex", "logId", "kindVersion", "canonicalizedBody"}),
        optional=frozenset({"integratedTime", "inclusionPromise", "inclusionProof"}),
    )
    log_id = _obj(obj["logId"], f"{what}.logId", required=frozenset({"keyId"}))
    kind_version = _obj(obj["kindVersion"], f"{what}.kindVersion", required=frozenset({"kind", "version"}))
    kind = jsonstrict.get_str(kind_version, "kind", f"{what}.kindVersion")
    version = jsonstrict.get_str(kind_version, "version", f"{what}.kindVersion")
    if not 0 < len(kind) <= _MAX_KIND_CHARS or not 0 < len(version) <= _MAX_KIND_CHARS:
        raise StrictJsonError(f"{what}.kindVersion: empty or too long")
    promise: bytes | None = None
    if "inclusionPromise" in obj:
        promise_obj = _obj(
            obj["inclusionPromise"], f"{what}.inclusionPromise", required=frozenset({"signedEntryTimestamp"})
        )
        promise = _bytes(
            promise_obj, "signedEntryTimestamp", f"{what}.inclusionPromise", limit=MAX_DSSE_SIGNATURE_BYTES
        )
    integrated_time = _int64(obj, "integratedTime", what)
    if integrated_time > _MAX_UNIX_SECONDS:
        raise StrictJsonError(f"{what}.integratedTime: out of range")
    return TlogEntry(
        log_index=_int64(obj, "logIndex", what),
        log_id=_bytes(log_id, "keyId", f"{what}.logId", limit=64),
        kind=kind,
        version=version,
        integrated_time=integrated_time,
        signed_entry_timestamp=promise,
        inclusion_proof=None
        if "inclusionProof" not in obj
        else _proof(obj["inclusionProof"], f"{what}.inclusionProof"),
        body=_bytes(obj, "canonicalizedBody", what, limit=MAX_BUNDLE_BODY_BYTES),
        body_b64=jsonstrict.get_str(obj, "canonicalizedBody", what),
    )


def _certificates(material: JsonObject, version: BundleVersion) -> tuple[tuple[bytes, ...], str | None]:
    """The material: a chain (v0.1/v0.2), one certificate, or a public-key hint: exactly one."""
    present = [key for key in ("x509CertificateChain", "certificate", "publicKey") if key in material]
    if len(present) != 1:
        raise StrictJsonError(
            "verificationMaterial: exactly one of x509CertificateChain, certificate, publicKey"
        )
    (which,) = present
    where = f"verificationMaterial.{which}"
    if which == "publicKey":
        hint_obj = _obj(material[which], where, required=frozenset(), optional=frozenset({"hint"}))
        hint = jsonstrict.get_optional_str(hint_obj, "hint", where) or ""
        if len(hint) > _MAX_HINT_CHARS:
            raise StrictJsonError(f"{where}.hint: too long")
        return (), hint
    if which == "certificate":
        cert = _obj(material[which], where, required=frozenset({"rawBytes"}))
        return (_bytes(cert, "rawBytes", where, limit=MAX_BUNDLE_CERTIFICATE_BYTES),), None
    if version == "0.3":
        raise StrictJsonError("a v0.3 bundle carries one certificate, not an x509CertificateChain")
    chain = _obj(material[which], where, required=frozenset({"certificates"}))
    items = jsonstrict.get_list(chain, "certificates", where, max_items=MAX_BUNDLE_CHAIN_CERTIFICATES)
    if not items:
        raise StrictJsonError(f"{where}: empty certificate chain")
    certificates = []
    for item in items:
        cert = _obj(item, f"{where}.certificates[]", required=frozenset({"rawBytes"}))
        certificates.append(
            _bytes(cert, "rawBytes", f"{where}.certificates[]", limit=MAX_BUNDLE_CERTIFICATE_BYTES)
        )
    return tuple(certificates), None


def _timestamps(material: JsonObject) -> tuple[bytes, ...]:
    if "timestampVerificationData" not in material:
        return ()
    data = _obj(
        material["timestampVerificationData"],
        "timestampVerificationData",
        required=frozenset(),
        optional=frozenset({"rfc3161Timestamps"}),
    )
    if "rfc3161Timestamps" not in data:
        return ()
    items = jsonstrict.get_list(
        data, "rfc3161Timestamps", "timestampVerificationData", max_items=MAX_BUNDLE_TIMESTAMPS
    )
    out = []
    for item in items:
        token = _obj(item, "rfc3161Timestamps[]", required=frozenset({"signedTimestamp"}))
        out.append(_bytes(token, "signedTimestamp", "rfc3161Timestamps[]", limit=MAX_BUNDLE_TIMESTAMP_BYTES))
    return tuple(out)


def _message(value: object) -> MessageSignature:
    obj = _obj(
        value, "messageSignature", required=frozenset({"signature"}), optional=frozenset({"messageDigest"})
    )
    signature = _bytes(obj, "signature", "messageSignature", limit=MAX_DSSE_SIGNATURE_BYTES)
    if "messageDigest" not in obj:
        return MessageSignature(signature, None, None)
    recorded = _obj(obj["messageDigest"], "messageDigest", required=frozenset({"algorithm", "digest"}))
    algorithm = HASH_ALGORITHMS.get(jsonstrict.get_str(recorded, "algorithm", "messageDigest"))
    if algorithm is None:
        raise StrictJsonError("messageDigest.algorithm: unsupported")
    return MessageSignature(signature, algorithm, _bytes(recorded, "digest", "messageDigest", limit=64))


def _parse(data: bytes) -> Bundle:
    doc = _obj(
        jsonstrict.loads(data),
        "bundle",
        required=frozenset({"mediaType", "verificationMaterial"}),
        optional=frozenset({"messageSignature", "dsseEnvelope"}),
    )
    media_type = jsonstrict.get_str(doc, "mediaType", "bundle")
    version = MEDIA_TYPES.get(media_type)
    if version is None:
        raise StrictJsonError(f"unsupported mediaType {media_type[:100]!r}")
    material = _obj(
        doc["verificationMaterial"],
        "verificationMaterial",
        required=frozenset(),
        optional=frozenset(
            {"x509CertificateChain", "certificate", "publicKey", "tlogEntries", "timestampVerificationData"}
        ),
    )
    certificates, hint = _certificates(material, version)
    items: list[object] = []
    if "tlogEntries" in material:
        items = jsonstrict.get_list(
            material, "tlogEntries", "verificationMaterial", max_items=MAX_BUNDLE_TLOG_ENTRIES
        )
    entries = tuple(_tlog_entry(item, f"tlogEntries[{i}]") for i, item in enumerate(items))
    for entry in entries:
        if version == "0.1" and entry.signed_entry_timestamp is None:
            raise StrictJsonError("a v0.1 bundle's tlog entry must carry an inclusion promise")
        if version != "0.1" and (entry.inclusion_proof is None or entry.inclusion_proof.checkpoint is None):
            raise StrictJsonError(
                f"a v{version} bundle's tlog entry must carry an inclusion proof and checkpoint"
            )
    if ("messageSignature" in doc) == ("dsseEnvelope" in doc):
        raise StrictJsonError("bundle: exactly one of messageSignature and dsseEnvelope")
    message = _message(doc["messageSignature"]) if "messageSignature" in doc else None
    envelope: Envelope | None = None
    if "dsseEnvelope" in doc:
        envelope = envelope_from_json(doc["dsseEnvelope"])
        if len(envelope.signatures) != 1:
            raise StrictJsonError("a bundle's DSSE envelope carries exactly one signature")
    return Bundle(
        media_type=media_type,
        version=version,
        certificates=certificates,
        public_key_hint=hint,
        tlog_entries=entries,
        timestamps=_timestamps(material),
        message=message,
        envelope=envelope,
    )


def parse_bundle(data: bytes) -> Bundle:
    """Parse bundle JSON bytes (see the module docstring) -> else BundleInvalid / LimitExceeded."""
    if len(data) > MAX_SIGSTORE_BUNDLE_BYTES:
        raise EvidenceError(Reason.LIMIT_EXCEEDED, f"bundle is larger than {MAX_SIGSTORE_BUNDLE_BYTES} bytes")
    try:
        return _parse(data)
    except StrictJsonError as e:
        raise _invalid(f"bundle: {e}") from e
    except EvidenceError as e:
        if e.reason is Reason.LIMIT_EXCEEDED:
            raise
        raise _invalid(f"bundle: {e.detail}") from e
