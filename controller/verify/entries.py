"""Rekor entry bodies: does a (log-authenticated) body describe *this* signature?

A transparency-log entry proves something only about what its body records. Each check below
parses a canonicalized body (the decoded bytes) strictly and compares it with the evidence in hand.
A body that does not parse, or is not the kind and version claimed, raises
``EvidenceError(TLOG_ENTRY_INVALID)``; a body that parses but records other material raises
``EvidenceError(TLOG_BODY_MISMATCH)``.

``verifier`` is always the DER of what verified the signature: the leaf certificate (keyless) or
the public key's SubjectPublicKeyInfo (key-signed). Bodies record it as base64 PEM (Rekor v1) or
base64 DER (Rekor v2); either way the DER must be equal.

================  =======  ===================================================================
kind              version  what must match
================  =======  ===================================================================
hashedrekord      0.0.1    hash (sha256/384/512, hex) = the artifact's digest; signature;
                           ``publicKey.content`` = PEM of ``verifier`` (:mod:`.tlog` parses it)
hashedrekord      0.0.2    ``hashedRekordV002``: digest (SHA2_*, base64) = the artifact's digest,
                           or for a DSSE envelope the digest of its PAE (rekor-v2-spec 6.1.4);
                           signature; ``verifier`` with ``keyDetails`` that fit the key
dsse              0.0.1    ``payloadHash`` = sha256(payload); ``signatures`` = exactly the
                           envelope's signatures, each with ``verifier`` (PEM). ``envelopeHash`` is
                           over an uncanonicalized envelope and cannot be recomputed (as in
                           sigstore-python and sigstore-go)
dsse              0.0.2    ``dsseV002``: ``payloadHash`` (SHA2_256, base64) = sha256(payload);
                           ``signatures`` = the envelope's, each ``{content, verifier}``
intoto            0.0.2    ``content.payloadHash`` = sha256(payload); ``content.envelope``:
                           same ``payloadType``, ``payload`` = base64(base64(payload)), signatures
                           ``sig`` = base64(base64(sig)) with ``publicKey`` = PEM of ``verifier``;
                           ``content.hash`` = sha256 of the envelope JSON *when those bytes are
                           known* (a cosign ``.att`` layer: cosign's ``bundleHash`` rule)
================  =======  ===================================================================
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from controller.errors import EvidenceError, Reason
from controller.verify import jsonstrict
from controller.verify.dsse import Envelope, pae
from controller.verify.jsonstrict import JsonObject, StrictJsonError
from controller.verify.keys import UnsupportedKeyError, trust_root_key
from controller.verify.limits import MAX_BUNDLE_BODY_BYTES, MAX_DSSE_SIGNATURES
from controller.verify.tlog import parse_body_bytes

# Hash names as bodies spell them: Rekor v1 (lower-case) and protobuf-specs HashAlgorithm (v2).
_V1_HASHES: Final = frozenset({"sha256", "sha384", "sha512"})
_V2_HASHES: Final = {"SHA2_256": "sha256", "SHA2_384": "sha384", "SHA2_512": "sha512"}
_DIGEST_SIZES: Final = {"sha256": 32, "sha384": 48, "sha512": 64}
_HEX: Final = re.compile(r"^[0-9a-f]+$")
_PEM: Final = re.compile(
    rb"\A\s*-----BEGIN (CERTIFICATE|PUBLIC KEY)-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END \1-----\s*\Z"
)
SUPPORTED: Final = frozenset(
    {
        ("hashedrekord", "0.0.1"),
        ("hashedrekord", "0.0.2"),
        ("dsse", "0.0.1"),
        ("dsse", "0.0.2"),
        ("intoto", "0.0.2"),
    }
)


def _invalid(detail: str) -> EvidenceError:
    return EvidenceError(Reason.TLOG_ENTRY_INVALID, f"entry body: {detail}")


def _mismatch(detail: str) -> EvidenceError:
    return EvidenceError(Reason.TLOG_BODY_MISMATCH, detail)


def _b64(text: str, what: str) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError) as e:
        raise _invalid(f"{what} is not base64") from e


def _inner_b64(data: bytes, what: str) -> bytes:
    """The inner layer of a double-base64 field (intoto 0.0.2): a bad one records other bytes."""
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError) as e:
        raise _mismatch(f"entry {what} is not the envelope's") from e


def _pem_der(data: bytes) -> bytes | None:
    """The DER inside one PEM CERTIFICATE or PUBLIC KEY block, or None when ``data`` is not one."""
    match = _PEM.match(data)
    if match is None:
        return None
    try:
        return binascii.a2b_base64(re.sub(rb"\r?\n", b"", match.group(2)), strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def _check_pem_verifier(text: str, verifier: bytes, what: str) -> None:
    """``text`` (base64 of a PEM block, as Rekor v1 records keys) holds exactly ``verifier``'s DER."""
    try:
        pem = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError) as e:
        raise _mismatch(f"{what} is not base64") from e
    if _pem_der(pem) != verifier:
        raise _mismatch(f"{what} is not the signing certificate or key")


def _spki_of(verifier: bytes) -> bytes:
    """The SPKI DER of a verifier (a certificate's, or the key itself)."""
    try:
        key = x509.load_der_x509_certificate(verifier).public_key()
    except ValueError:
        return verifier
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _load(body: bytes, kind: str, version: str) -> JsonObject:
    """Parse the body envelope ``{"apiVersion", "kind", "spec"}`` and check kind and version."""
    if len(body) > MAX_BUNDLE_BODY_BYTES:
        raise _invalid(f"larger than {MAX_BUNDLE_BODY_BYTES} bytes")
    try:
        doc = jsonstrict.fields(
            jsonstrict.loads(body), "body", required=frozenset({"apiVersion", "kind", "spec"})
        )
        body_kind = jsonstrict.get_str(doc, "kind", "body")
        body_version = jsonstrict.get_str(doc, "apiVersion", "body")
    except StrictJsonError as e:
        raise _invalid(str(e)) from e
    if (body_kind, body_version) != (kind, version):
        raise _invalid(f"is {body_kind[:40]!r} {body_version[:20]!r}, the entry says {kind!r} {version!r}")
    return jsonstrict.as_object(doc["spec"], "spec")


def _v2_verifier(value: object, verifier: bytes, what: str) -> None:
    """A Rekor v2 ``Verifier``: ``{keyDetails, x509Certificate | publicKey: {rawBytes}}``."""
    obj = jsonstrict.fields(
        value, what, required=frozenset({"keyDetails"}), optional=frozenset({"x509Certificate", "publicKey"})
    )
    details = jsonstrict.get_str(obj, "keyDetails", what)
    holders = [name for name in ("x509Certificate", "publicKey") if name in obj]
    if len(holders) != 1:
        raise StrictJsonError(f"{what}: expected one of x509Certificate, publicKey")
    holder = jsonstrict.fields(obj[holders[0]], f"{what}.{holders[0]}", required=frozenset({"rawBytes"}))
    raw = _b64(jsonstrict.get_str(holder, "rawBytes", what), f"{what}.rawBytes")
    if raw != verifier:
        raise _mismatch(f"{what} is not the signing certificate or key")
    try:
        trust_root_key(details, _spki_of(verifier))
    except UnsupportedKeyError as e:
        raise _mismatch(f"{what}.keyDetails {details[:40]!r} do not fit the key") from e


def _v2_signature(value: object, *, signature: bytes, verifier: bytes, what: str) -> None:
    obj = jsonstrict.fields(value, what, required=frozenset({"content", "verifier"}))
    if _b64(jsonstrict.get_str(obj, "content", what), f"{what}.content") != signature:
        raise _mismatch(f"{what} is not this signature")
    _v2_verifier(obj["verifier"], verifier, f"{what}.verifier")


def _hashedrekord_v1(body: bytes, *, digests: Mapping[str, bytes], signature: bytes, verifier: bytes) -> None:
    parsed = parse_body_bytes(body)  # strict shape: TlogEntryInvalid when malformed
    if parsed.kind != "hashedrekord":
        raise _invalid(f"is {parsed.kind!r}, the entry says 'hashedrekord'")
    algorithm = parsed.hash_algorithm
    if algorithm not in _V1_HASHES or not _HEX.match(parsed.hash_value):
        raise _mismatch(f"entry hash is not a hex {'/'.join(sorted(_V1_HASHES))} ({algorithm[:20]!r})")
    expected = digests.get(algorithm)
    if expected is None or parsed.hash_value != expected.hex():
        raise _mismatch(f"entry {algorithm} is not the artifact's")
    try:
        logged = binascii.a2b_base64(parsed.signature_b64, strict_mode=True)
    except (binascii.Error, ValueError) as e:
        raise _mismatch("entry signature is not base64") from e
    if logged != signature:
        raise _mismatch("entry signature is not this signature")
    _check_pem_verifier(parsed.public_key_b64, verifier, "entry public key")


def _hashedrekord_v2(
    spec: JsonObject, *, digests: Mapping[str, bytes], signature: bytes, verifier: bytes
) -> None:
    inner = jsonstrict.fields(spec, "spec", required=frozenset({"hashedRekordV002"}))
    entry = jsonstrict.fields(
        inner["hashedRekordV002"], "hashedRekordV002", required=frozenset({"data", "signature"})
    )
    data = jsonstrict.fields(entry["data"], "data", required=frozenset({"algorithm", "digest"}))
    algorithm = _V2_HASHES.get(jsonstrict.get_str(data, "algorithm", "data"))
    digest = _b64(jsonstrict.get_str(data, "digest", "data"), "data.digest")
    if algorithm is None or len(digest) != _DIGEST_SIZES[algorithm]:
        raise _mismatch("entry digest is not a SHA-2 digest")
    if digests.get(algorithm) != digest:
        raise _mismatch(f"entry {algorithm} is not the artifact's")
    _v2_signature(entry["signature"], signature=signature, verifier=verifier, what="signature")


def check_hashedrekord(
    body: bytes,
    *,
    version: str,
    digests: Mapping[str, bytes],
    signature: bytes,
    verifier: bytes,
) -> None:
    """A hashedrekord 0.0.1 or 0.0.2 body records this digest, signature and verifier.

    ``digests`` maps "sha256"/"sha384"/"sha512" to the signed artifact's digest in that hash (at
    least the one the body uses); for a Rekor v2 DSSE entry, pass :func:`dsse_digests`.
    """
    try:
        if version == "0.0.1":
            _hashedrekord_v1(body, digests=digests, signature=signature, verifier=verifier)
            return
        spec = _load(body, "hashedrekord", version)
        if version != "0.0.2":
            raise _invalid(f"hashedrekord {version[:20]!r} is not supported")
        _hashedrekord_v2(spec, digests=digests, signature=signature, verifier=verifier)
    except StrictJsonError as e:
        raise _invalid(str(e)) from e


def dsse_digests(envelope: Envelope) -> dict[str, bytes]:
    """What a Rekor v2 hashedrekord entry for a DSSE envelope hashes: its PAE (rekor-v2-spec 6.1.4)."""
    encoded = pae(envelope.payload_type, envelope.payload)
    return {name: hashlib.new(name, encoded).digest() for name in _DIGEST_SIZES}


def _one_signature_per_envelope_signature(items: list[object], envelope: Envelope) -> None:
    if len(items) != len(envelope.signatures):
        raise _mismatch(f"entry holds {len(items)} signatures, the envelope {len(envelope.signatures)}")


def _dsse_v1(spec: JsonObject, *, envelope: Envelope, verifier: bytes) -> None:
    obj = jsonstrict.fields(
        spec,
        "spec",
        required=frozenset({"payloadHash", "signatures"}),
        optional=frozenset({"envelopeHash"}),
    )
    if "envelopeHash" in obj:
        _hash_field(obj, "envelopeHash", "spec")  # shape only: the envelope JSON is not canonical
    if _hash_field(obj, "payloadHash", "spec") != hashlib.sha256(envelope.payload).hexdigest():
        raise _mismatch("entry payloadHash is not the envelope payload's")
    items = jsonstrict.get_list(obj, "signatures", "spec", max_items=MAX_DSSE_SIGNATURES)
    _one_signature_per_envelope_signature(items, envelope)
    for index, (item, expected) in enumerate(zip(items, envelope.signatures, strict=True)):
        where = f"signatures[{index}]"
        sig = jsonstrict.fields(item, where, required=frozenset({"signature", "verifier"}))
        if _b64(jsonstrict.get_str(sig, "signature", where), f"{where}.signature") != expected.sig:
            raise _mismatch(f"entry {where} is not the envelope's signature")
        _check_pem_verifier(jsonstrict.get_str(sig, "verifier", where), verifier, f"entry {where}.verifier")


def _dsse_v2(spec: JsonObject, *, envelope: Envelope, verifier: bytes) -> None:
    inner = jsonstrict.fields(spec, "spec", required=frozenset({"dsseV002"}))
    obj = jsonstrict.fields(inner["dsseV002"], "dsseV002", required=frozenset({"payloadHash", "signatures"}))
    payload_hash = jsonstrict.fields(
        obj["payloadHash"], "payloadHash", required=frozenset({"algorithm", "digest"})
    )
    algorithm = _V2_HASHES.get(jsonstrict.get_str(payload_hash, "algorithm", "payloadHash"))
    digest = _b64(jsonstrict.get_str(payload_hash, "digest", "payloadHash"), "payloadHash.digest")
    if algorithm is None or hashlib.new(algorithm, envelope.payload).digest() != digest:
        raise _mismatch("entry payloadHash is not the envelope payload's")
    items = jsonstrict.get_list(obj, "signatures", "dsseV002", max_items=MAX_DSSE_SIGNATURES)
    _one_signature_per_envelope_signature(items, envelope)
    for index, (item, expected) in enumerate(zip(items, envelope.signatures, strict=True)):
        _v2_signature(item, signature=expected.sig, verifier=verifier, what=f"signatures[{index}]")


def check_dsse(body: bytes, *, version: str, envelope: Envelope, verifier: bytes) -> None:
    """A dsse 0.0.1 or 0.0.2 body records this envelope's payload and signatures, by ``verifier``."""
    try:
        spec = _load(body, "dsse", version)
        if version == "0.0.1":
            _dsse_v1(spec, envelope=envelope, verifier=verifier)
        elif version == "0.0.2":
            _dsse_v2(spec, envelope=envelope, verifier=verifier)
        else:
            raise _invalid(f"dsse {version[:20]!r} is not supported")
    except StrictJsonError as e:
        raise _invalid(str(e)) from e


def _hash_field(obj: JsonObject, key: str, what: str) -> str:
    """A Rekor v1 ``{"algorithm": "sha256", "value": <64 hex>}``, even where it is not compared."""
    value = jsonstrict.fields(obj[key], f"{what}.{key}", required=frozenset({"algorithm", "value"}))
    if jsonstrict.get_str(value, "algorithm", f"{what}.{key}") != "sha256":
        raise _mismatch(f"entry {key} is not a sha256")
    text = jsonstrict.get_str(value, "value", f"{what}.{key}")
    if len(text) != 64 or not _HEX.match(text):
        raise _invalid(f"{what}.{key}.value is not 64 lower-case hex digits")
    return text


def check_intoto(
    body: bytes, *, envelope: Envelope, verifier: bytes, envelope_json: bytes | None = None
) -> None:
    """An intoto 0.0.2 body records this envelope, signed by ``verifier``.

    ``envelope_json`` is the envelope exactly as submitted (a cosign ``.att`` layer's bytes); when
    given, the body's ``content.hash`` must be its sha256, as cosign checks.
    """
    try:
        spec = _load(body, "intoto", "0.0.2")
        content = jsonstrict.fields(
            jsonstrict.fields(spec, "spec", required=frozenset({"content"}))["content"],
            "content",
            required=frozenset({"envelope", "hash", "payloadHash"}),
        )
        if _hash_field(content, "payloadHash", "content") != hashlib.sha256(envelope.payload).hexdigest():
            raise _mismatch("entry payloadHash is not the envelope payload's")
        logged_hash = _hash_field(content, "hash", "content")
        if envelope_json is not None and logged_hash != hashlib.sha256(envelope_json).hexdigest():
            raise _mismatch("entry hash is not the sha256 of the envelope")
        logged = jsonstrict.fields(
            content["envelope"],
            "envelope",
            required=frozenset({"payloadType", "signatures"}),
            optional=frozenset({"payload"}),
        )
        if jsonstrict.get_str(logged, "payloadType", "envelope") != envelope.payload_type:
            raise _mismatch("entry payloadType is not the envelope's")
        if "payload" in logged:  # Rekor may drop the payload from stored entries
            inner = _b64(jsonstrict.get_str(logged, "payload", "envelope"), "envelope.payload")
            if _inner_b64(inner, "envelope.payload") != envelope.payload:
                raise _mismatch("entry payload is not the envelope's")
        items = jsonstrict.get_list(logged, "signatures", "envelope", max_items=MAX_DSSE_SIGNATURES)
        _one_signature_per_envelope_signature(items, envelope)
        for index, (item, expected) in enumerate(zip(items, envelope.signatures, strict=True)):
            where = f"envelope.signatures[{index}]"
            sig = jsonstrict.fields(
                item, where, required=frozenset({"sig", "publicKey"}), optional=frozenset({"keyid"})
            )
            inner_sig = _b64(jsonstrict.get_str(sig, "sig", where), f"{where}.sig")
            if _inner_b64(inner_sig, f"{where}.sig") != expected.sig:
                raise _mismatch(f"entry {where} is not the envelope's signature")
            _check_pem_verifier(
                jsonstrict.get_str(sig, "publicKey", where), verifier, f"entry {where}.publicKey"
            )
    except StrictJsonError as e:
        raise _invalid(str(e)) from e


def check_entry_body(
    kind: str,
    version: str,
    body: bytes,
    *,
    verifier: bytes,
    signature: bytes | None = None,
    digests: Mapping[str, bytes] | None = None,
    envelope: Envelope | None = None,
    envelope_json: bytes | None = None,
) -> None:
    """Dispatch on the entry's ``kindVersion``: a message signature needs ``signature`` and
    ``digests``; an envelope needs ``envelope`` (and, for a Rekor v2 hashedrekord entry, nothing
    else: the digest is the PAE's and the signature the envelope's only one)."""
    if (kind, version) not in SUPPORTED:
        raise _invalid(f"unsupported entry kind {kind[:40]!r} {version[:20]!r}")
    if envelope is not None:
        if kind == "hashedrekord" and version == "0.0.2":
            if len(envelope.signatures) != 1:
                raise _mismatch("a hashedrekord entry records one signature; the envelope has several")
            check_hashedrekord(
                body,
                version=version,
                digests=dsse_digests(envelope),
                signature=envelope.signatures[0].sig,
                verifier=verifier,
            )
        elif kind == "dsse":
            check_dsse(body, version=version, envelope=envelope, verifier=verifier)
        elif kind == "intoto":
            check_intoto(body, envelope=envelope, verifier=verifier, envelope_json=envelope_json)
        else:
            raise _mismatch(f"a {kind} {version} entry cannot record a DSSE envelope")
        return
    if kind != "hashedrekord" or signature is None or digests is None:
        raise _mismatch(f"a {kind} {version} entry cannot record a message signature")
    check_hashedrekord(body, version=version, digests=digests, signature=signature, verifier=verifier)
