"""Step 5b of the bundle checklist: the Rekor body describes this signature, key and artifact.

The body kinds a bundle may carry (what cosign, sigstore-go and sigstore-js write):

* ``hashedrekord`` 0.0.1 (Rekor v1): ``spec.data.hash`` {sha256, hex} and ``spec.signature``
  {content, publicKey.content = base64 of a PEM certificate or key};
* ``hashedrekord`` 0.0.2 (Rekor v2): ``spec.hashedRekordV002`` {data {algorithm, digest}, signature
  {content, verifier {x509Certificate|publicKey {rawBytes}, keyDetails}}}; for a DSSE bundle the
  digest is SHA-256 of the envelope's PAE (rekor-v2 spec 6.1.4);
* ``dsse`` 0.0.1 / 0.0.2: the payload's hash and the envelope's signatures with their verifiers;
* ``intoto`` 0.0.2 (``cosign attest``, sigstore-js): the envelope itself, whose payload and
  signatures are base64 of the base64 text, with ``payloadHash`` of the payload.

A body that is not one of these, or whose ``kind``/``apiVersion`` differs from the entry's
``kindVersion``, is TlogEntryInvalid; a body that describes another signature, key, certificate or
artifact is TlogBodyMismatch. The body is authenticated by the SET or the inclusion proof (step 5c-d).
"""

from __future__ import annotations

import binascii
import hashlib
from typing import Final

from controller.errors import EvidenceError, Reason
from controller.model import Digest
from controller.verify import jsonstrict
from controller.verify.bundle_model import Bundle, TlogEntry, proto_base64
from controller.verify.certificate import Leaf, PemError, pem_to_der
from controller.verify.dsse import Envelope
from controller.verify.jsonstrict import JsonObject, StrictJsonError
from controller.verify.keyed import VerificationKey, check_logged_key
from controller.verify.limits import MAX_DSSE_SIGNATURES

_SHA256: Final = "sha256"
_PROTO_SHA256: Final = "SHA2_256"


def _mismatch(detail: str) -> EvidenceError:
    return EvidenceError(Reason.TLOG_BODY_MISMATCH, detail)


def _get(doc: object, *path: str) -> object:
    node = doc
    for key in path:
        node = jsonstrict.as_object(node, ".".join(path)).get(key)
        if node is None:
            raise StrictJsonError(f"body: {'.'.join(path)} missing")
    return node


def _text(doc: object, *path: str) -> str:
    value = _get(doc, *path)
    if not isinstance(value, str):
        raise StrictJsonError(f"body: {'.'.join(path)} is not a string")
    return value


def _b64(doc: object, *path: str) -> bytes:
    try:
        return proto_base64(_text(doc, *path))
    except ValueError as e:
        raise StrictJsonError(f"body: {'.'.join(path)} is not base64") from e


def _check_pem_verifier(pem: bytes, leaf: Leaf | None, key: VerificationKey | None) -> None:
    """A v1 verifier: base64-decoded, a PEM certificate (keyless) or PEM public key."""
    if leaf is not None:
        try:
            (der,) = pem_to_der(pem, max_certificates=1)
        except PemError as e:
            raise _mismatch("entry verifier is not one PEM certificate") from e
        if der != leaf.der:
            raise _mismatch("entry certificate is not the signing certificate")
        return
    if key is not None:
        check_logged_key(binascii.b2a_base64(pem, newline=False).decode("ascii"), key)


def _check_v2_verifier(verifier: object, leaf: Leaf | None, key: VerificationKey | None) -> None:
    obj = jsonstrict.as_object(verifier, "verifier")
    if leaf is not None:
        if "x509Certificate" not in obj or _b64(obj, "x509Certificate", "rawBytes") != leaf.der:
            raise _mismatch("entry certificate is not the signing certificate")
        return
    if key is not None and ("publicKey" not in obj or _b64(obj, "publicKey", "rawBytes") != key.spki_der):
        raise _mismatch("entry public key is not the verifying key")


def _hashedrekord(
    body: JsonObject,
    version: str,
    bundle: Bundle,
    *,
    digest: Digest,
    leaf: Leaf | None,
    key: VerificationKey | None,
) -> None:
    signature = bundle.signature
    if version == "0.0.1":
        if bundle.envelope is not None:
            raise StrictJsonError("a hashedrekord 0.0.1 entry for a DSSE bundle")
        if _text(body, "spec", "data", "hash", "algorithm") != digest.algorithm:
            raise _mismatch("entry hash algorithm is not the artifact's")
        if _text(body, "spec", "data", "hash", "value") != digest.hex:
            raise _mismatch("entry hash is not the artifact digest")
        if _b64(body, "spec", "signature", "content") != signature:
            raise _mismatch("entry signature is not this signature")
        _check_pem_verifier(_b64(body, "spec", "signature", "publicKey", "content"), leaf, key)
        return
    spec = _get(body, "spec", "hashedRekordV002")
    if _text(spec, "data", "algorithm") != _PROTO_SHA256:
        raise _mismatch("entry digest is not a SHA2_256")
    if bundle.envelope is not None:
        expected = hashlib.sha256(bundle.envelope.pae()).digest()
    elif digest.algorithm == _SHA256:
        expected = bytes.fromhex(digest.hex)
    else:
        raise _mismatch("entry digest algorithm is not the artifact's")
    if _b64(spec, "data", "digest") != expected:
        raise _mismatch("entry digest is not the artifact's (or the envelope's PAE)")
    if _b64(spec, "signature", "content") != signature:
        raise _mismatch("entry signature is not this signature")
    _check_v2_verifier(_get(spec, "signature", "verifier"), leaf, key)


def _envelope(bundle: Bundle) -> Envelope:
    if bundle.envelope is None:
        raise StrictJsonError("a DSSE entry for a message-signature bundle")
    return bundle.envelope


def _dsse(
    body: JsonObject, version: str, bundle: Bundle, leaf: Leaf | None, key: VerificationKey | None
) -> None:
    envelope = _envelope(bundle)
    payload_sha256 = hashlib.sha256(envelope.payload).digest()
    spec = _get(body, "spec") if version == "0.0.1" else _get(body, "spec", "dsseV002")
    if version == "0.0.1":
        if (
            _text(spec, "payloadHash", "algorithm") != _SHA256
            or _text(spec, "payloadHash", "value") != payload_sha256.hex()
        ):
            raise _mismatch("entry payload hash is not the envelope payload's")
    elif (
        _text(spec, "payloadHash", "algorithm") != _PROTO_SHA256
        or _b64(spec, "payloadHash", "digest") != payload_sha256
    ):
        raise _mismatch("entry payload hash is not the envelope payload's")
    logged = jsonstrict.get_list(
        jsonstrict.as_object(spec, "spec"), "signatures", "spec", max_items=MAX_DSSE_SIGNATURES
    )
    if len(logged) != len(envelope.signatures):
        raise _mismatch("entry signatures are not the envelope's")
    for item, signature in zip(logged, envelope.signatures, strict=True):
        if version == "0.0.1":
            if _b64(item, "signature") != signature.sig:
                raise _mismatch("entry signature is not the envelope's")
            _check_pem_verifier(_b64(item, "verifier"), leaf, key)
        else:
            if _b64(item, "content") != signature.sig:
                raise _mismatch("entry signature is not the envelope's")
            _check_v2_verifier(_get(item, "verifier"), leaf, key)


def _intoto(body: JsonObject, bundle: Bundle, leaf: Leaf | None, key: VerificationKey | None) -> None:
    envelope = _envelope(bundle)
    logged = _get(body, "spec", "content", "envelope")
    if _text(logged, "payloadType") != envelope.payload_type:
        raise _mismatch("entry payload type is not the envelope's")
    try:
        payload = proto_base64(_b64(logged, "payload").decode("ascii"))
    except (ValueError, UnicodeDecodeError) as e:
        raise _mismatch("entry payload is not base64 of base64") from e
    if payload != envelope.payload:
        raise _mismatch("entry payload is not the envelope's")
    payload_hash = _text(body, "spec", "content", "payloadHash", "value")
    if payload_hash != hashlib.sha256(envelope.payload).hexdigest():
        raise _mismatch("entry payload hash is not the envelope payload's")
    items = jsonstrict.get_list(
        jsonstrict.as_object(logged, "envelope"), "signatures", "envelope", max_items=MAX_DSSE_SIGNATURES
    )
    if len(items) != len(envelope.signatures):
        raise _mismatch("entry signatures are not the envelope's")
    for item, signature in zip(items, envelope.signatures, strict=True):
        try:
            sig = proto_base64(_b64(item, "sig").decode("ascii"))
        except (ValueError, UnicodeDecodeError) as e:
            raise _mismatch("entry signature is not base64 of base64") from e
        if sig != signature.sig:
            raise _mismatch("entry signature is not the envelope's")
        _check_pem_verifier(_b64(item, "publicKey"), leaf, key)


def check_bundle_entry(
    entry: TlogEntry, bundle: Bundle, *, digest: Digest, leaf: Leaf | None, key: VerificationKey | None
) -> None:
    """5b (see the module docstring)."""
    try:
        _check(entry, bundle, digest=digest, leaf=leaf, key=key)
    except StrictJsonError as e:
        raise EvidenceError(Reason.TLOG_ENTRY_INVALID, str(e)) from e


def _check(
    entry: TlogEntry, bundle: Bundle, *, digest: Digest, leaf: Leaf | None, key: VerificationKey | None
) -> None:
    body = jsonstrict.as_object(jsonstrict.loads(entry.body, max_depth=16), "body")
    kind, version = _text(body, "kind"), _text(body, "apiVersion")
    if (kind, version) != (entry.kind, entry.version):
        raise StrictJsonError(
            f"body is {kind[:40]} {version[:20]}, kindVersion says {entry.kind} {entry.version}"
        )
    if kind == "hashedrekord" and version in ("0.0.1", "0.0.2"):
        _hashedrekord(body, version, bundle, digest=digest, leaf=leaf, key=key)
    elif kind == "dsse" and version in ("0.0.1", "0.0.2"):
        _dsse(body, version, bundle, leaf, key)
    elif kind == "intoto" and version == "0.0.2":
        _intoto(body, bundle, leaf, key)
    else:
        raise StrictJsonError(f"unsupported entry kind {kind[:40]!r} {version[:20]!r}")
