"""cosign ≤ 2's legacy ``.att`` layers and key-signed ``.sig`` layers, byte for byte.

* **Key-signed ``.sig``** (``cosign sign --key``): the same simple-signing payload as keyless, the
  signature annotation, and (with the tlog, cosign's default) a ``dev.sigstore.cosign/bundle`` whose
  ``hashedrekord`` body holds the base64 of the *public key* PEM instead of a certificate. No
  certificate or chain annotation. cosign ≤ 2 signs with SHA-256 whatever the curve
  (``LoadSignerVerifier(pk, crypto.SHA256)``); RSA keys sign PKCS#1 v1.5.
* **``.att``** (``cosign attest``): the layer blob is the DSSE envelope JSON that sigstore's
  ``dsse.WrapSigner`` marshals (``{"payloadType":...,"payload":...,"signatures":[{"keyid":"","sig":...}]}``),
  its media type ``application/vnd.dsse.envelope.v1+json``; the payload is the in-toto Statement v0.1
  of ``attestation.GenerateStatement``. The annotations (``static.NewAttestation``): ``predicateType``,
  an *empty* ``dev.cosignproject.cosign/signature``, and, keyless, the certificate and chain; with the
  tlog, a bundle over an ``intoto`` 0.0.2 entry, as Rekor canonicalizes it (``pkg/types/intoto/v0.0.2``):
  the envelope without its payload, each signature's ``sig`` base64-encoded *again*, the signer's
  PEM as ``publicKey``, ``hash`` the sha256 of the envelope bytes and ``payloadHash`` of the statement.

Every stage is a small function, so that a tamper test changes one thing and re-signs only what is
downstream of it (:func:`resign_envelope`, :func:`rebundle_layer`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from controller.model import Digest, Signature, SignatureKind, TrustedKey
from tests.kit.gojson import JSONValue, go_json
from tests.kit.sigstore import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    ANNOTATION_CHAIN,
    ANNOTATION_SIGNATURE,
    DEFAULT_IDENTITY,
    LEAF_AGE_AT_SIGNING,
    Identity,
    KeyType,
    Leaf,
    LogKey,
    RekorKind,
    SigningKey,
    SigstoreKit,
    annotations_with,
    b64,
    payload_bytes,
    rekor_body,
)

DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
PREDICATE_TYPE_ANNOTATION = "predicateType"
COSIGN_CUSTOM_PREDICATE = "https://cosign.sigstore.dev/attestation/v1"
SLSA_PROVENANCE_V02 = "https://slsa.dev/provenance/v0.2"


# --- keys


def public_key_pem(key: SigningKey) -> str:
    """The PEM ``PUBLIC KEY`` block cosign writes (``cryptoutils.MarshalPublicKeyToPEM``)."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def trusted_key(key: SigningKey, source: str = "kit key") -> TrustedKey:
    """The policy's view of ``key``: its public PEM."""
    return TrustedKey(pem=public_key_pem(key).encode("ascii"), source=source)


def key_id_of(key: SigningKey) -> str:
    """``sha256:<hex of the SPKI DER>``, what ``VerifiedSignature.key_id`` reports."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def sign_with_key(
    key: SigningKey, data: bytes, *, hash_algorithm: hashes.HashAlgorithm | None = None, pss: bool = False
) -> bytes:
    """Sign ``data`` as ``cosign sign --key`` does: SHA-256 (any curve), RSA PKCS#1 v1.5, pure Ed25519.

    ``hash_algorithm`` picks another hash (P-384 with SHA-384, as sigstore-go signs); ``pss`` signs
    RSA-PSS (SHA-256, MGF1-SHA-256, salt of the digest's length, as Go's ``rsa.SignPSS`` with
    ``PSSSaltLengthEqualsHash``).
    """
    algorithm = hash_algorithm or hashes.SHA256()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(algorithm))
    if isinstance(key, rsa.RSAPrivateKey):
        if pss:
            scheme = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.DIGEST_LENGTH)
            return key.sign(data, scheme, algorithm)
        return key.sign(data, padding.PKCS1v15(), algorithm)
    return key.sign(data)


# --- layers


@dataclass(frozen=True)
class KitLayer:
    """One legacy layer as a registry holds it: blob, annotations, media type; immutable.

    ``signer`` is the private key that signed it (the leaf's, or the trusted key), ``leaf`` the Fulcio
    leaf when keyless; ``rekor`` the log that signed its SET, if any.
    """

    payload: bytes
    annotations: dict[str, str]
    media_type: str
    kind: SignatureKind
    signer: SigningKey
    leaf: Leaf | None = None
    rekor: LogKey | None = None

    @property
    def digest(self) -> Digest:
        """The layer digest (sha256 of the blob)."""
        return Digest.of(self.payload)

    def with_annotation(self, key: str, value: str | None) -> KitLayer:
        """A copy with one annotation set (or removed, for ``None``); nothing re-signed."""
        return replace(self, annotations=annotations_with(self.annotations, key, value))

    def with_payload(self, payload: bytes) -> KitLayer:
        """A copy with other blob bytes; nothing re-signed."""
        return replace(self, payload=payload)

    def to_signature(self, source: str = "kit") -> Signature:
        """The layer as the registry layer hands it to the verifier."""
        return Signature(
            kind=self.kind,
            payload=self.payload,
            annotations=dict(self.annotations),
            layer_digest=self.digest,
            source=source,
            media_type=self.media_type,
        )


def _logged_seconds(kit: SigstoreKit, when: datetime | None) -> int:
    return int((when or kit.default_sign_time()).timestamp())


def key_sign_image(
    kit: SigstoreKit,
    digest: str,
    docker_reference: str,
    key: SigningKey,
    *,
    annotations: Mapping[str, JSONValue] | None = None,
    tlog: bool = True,
    rekor_kind: RekorKind = "hashedrekord",
    sign_time: datetime | None = None,
    hash_algorithm: hashes.HashAlgorithm | None = None,
    pss: bool = False,
    payload: bytes | None = None,
) -> KitLayer:
    """``cosign sign --key`` of ``digest``: the key-signed ``.sig`` layer it pushes."""
    blob = payload if payload is not None else payload_bytes(digest, docker_reference, annotations)
    signature = sign_with_key(key, blob, hash_algorithm=hash_algorithm, pss=pss)
    values = {ANNOTATION_SIGNATURE: b64(signature)}
    if tlog:
        body = rekor_body(
            rekor_kind, payload=blob, signature=signature, certificate_pem_text=public_key_pem(key)
        )
        bundle = kit.make_bundle(body, integrated_time=_logged_seconds(kit, sign_time))
        values[ANNOTATION_BUNDLE] = bundle.to_json()
    return KitLayer(
        blob,
        dict(sorted(values.items())),
        SIMPLESIGNING_MEDIA_TYPE,
        "simplesigning",
        key,
        None,
        kit.rekor if tlog else None,
    )


# --- in-toto statements, DSSE envelopes, intoto 0.0.2 bodies


def statement_bytes(
    digest: str,
    repository: str,
    *,
    predicate_type: str = COSIGN_CUSTOM_PREDICATE,
    predicate: JSONValue | None = None,
    statement_type: str = STATEMENT_V01,
) -> bytes:
    """``attestation.GenerateStatement`` marshalled: ``_type``, ``predicateType``, ``subject``, ``predicate``.

    ``digest`` is ``sha256:<hex>``; the subject is ``{"name": repository, "digest": {"sha256": hex}}``.
    The default predicate is cosign's ``custom`` one (``{"Data": ..., "Timestamp": ...}``).
    """
    algorithm, _, hexpart = digest.partition(":")
    return go_json(
        {
            "_type": statement_type,
            "predicateType": predicate_type,
            "subject": [{"name": repository, "digest": {algorithm: hexpart}}],
            "predicate": predicate
            if predicate is not None
            else {"Data": "hello", "Timestamp": "2026-02-28T11:59:00Z"},
        }
    )


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def envelope_bytes(payload_type: str, payload: bytes, signatures: Sequence[bytes], keyid: str = "") -> bytes:
    """A DSSE envelope as go-securesystemslib's ``dsse.Envelope`` marshals it (struct field order)."""
    return go_json(
        {
            "payloadType": payload_type,
            "payload": b64(payload),
            "signatures": [{"keyid": keyid, "sig": b64(sig)} for sig in signatures],
        }
    )


def dsse_sign(
    key: SigningKey,
    statement: bytes,
    *,
    payload_type: str = IN_TOTO_PAYLOAD_TYPE,
    hash_algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    """``dsse.WrapSigner(sv, payloadType).SignMessage(statement)``: the envelope bytes."""
    signature = sign_with_key(key, pae(payload_type, statement), hash_algorithm=hash_algorithm)
    return envelope_bytes(payload_type, statement, [signature])


def intoto_v002_body(envelope: bytes, public_pem_text: str) -> bytes:
    """The canonical ``intoto`` 0.0.2 entry Rekor stores for ``envelope`` signed by ``public_pem_text``.

    ``Canonicalize`` keeps ``payloadType`` and the signatures (``keyid`` omitted when empty, ``sig`` the
    base64 of the envelope's base64 text, ``publicKey`` the base64 of the PEM), drops the payload,
    and records ``hash`` (sha256 of the envelope bytes) and ``payloadHash`` (sha256 of the statement).
    """
    parsed = json.loads(envelope)
    statement = base64.b64decode(parsed["payload"])
    signatures: list[JSONValue] = []
    for item in parsed["signatures"]:
        entry: dict[str, JSONValue] = {}
        if item.get("keyid"):
            entry["keyid"] = item["keyid"]
        entry["publicKey"] = b64(public_pem_text.encode("ascii"))
        entry["sig"] = b64(item["sig"].encode("ascii"))
        signatures.append(entry)
    return go_json(
        {
            "apiVersion": "0.0.2",
            "kind": "intoto",
            "spec": {
                "content": {
                    "envelope": {"payloadType": parsed["payloadType"], "signatures": signatures},
                    "hash": {"algorithm": "sha256", "value": hashlib.sha256(envelope).hexdigest()},
                    "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(statement).hexdigest()},
                }
            },
        }
    )


def attest_image(
    kit: SigstoreKit,
    digest: str,
    repository: str,
    *,
    predicate_type: str = COSIGN_CUSTOM_PREDICATE,
    predicate: JSONValue | None = None,
    statement: bytes | None = None,
    identity: Identity = DEFAULT_IDENTITY,
    key: SigningKey | None = None,
    leaf: Leaf | None = None,
    key_type: KeyType = KeyType.ECDSA_P256,
    sign_time: datetime | None = None,
    chain: bool = True,
    tlog: bool = True,
    payload_type: str = IN_TOTO_PAYLOAD_TYPE,
) -> KitLayer:
    """``cosign attest`` of ``digest`` (keyless, or with ``key``): the ``.att`` layer it pushes.

    ``statement`` replaces the generated statement bytes; the ``predicateType`` annotation is
    ``predicate_type`` either way (so a test can make them disagree).
    """
    when = sign_time or kit.default_sign_time()
    body = (
        statement
        if statement is not None
        else statement_bytes(digest, repository, predicate_type=predicate_type, predicate=predicate)
    )
    values = {PREDICATE_TYPE_ANNOTATION: predicate_type, ANNOTATION_SIGNATURE: ""}
    the_leaf: Leaf | None = None
    if key is None:
        the_leaf = leaf or kit.issue_leaf(identity, issued_at=when - LEAF_AGE_AT_SIGNING, key_type=key_type)
        signer: SigningKey = the_leaf.private_key
        signer_pem = the_leaf.pem
        values[ANNOTATION_CERTIFICATE] = the_leaf.pem
        if chain:
            values[ANNOTATION_CHAIN] = the_leaf.ca.chain_pem()
    else:
        signer, signer_pem = key, public_key_pem(key)
    envelope = dsse_sign(signer, body, payload_type=payload_type)
    if tlog:
        bundle = kit.make_bundle(
            intoto_v002_body(envelope, signer_pem), integrated_time=int(when.timestamp())
        )
        values[ANNOTATION_BUNDLE] = bundle.to_json()
    return KitLayer(
        envelope,
        dict(sorted(values.items())),
        DSSE_MEDIA_TYPE,
        "attestation",
        signer,
        the_leaf,
        kit.rekor if tlog else None,
    )


def signer_pem(layer: KitLayer) -> str:
    """The PEM Rekor records for ``layer``'s signer: its certificate, or its public key."""
    return layer.leaf.pem if layer.leaf is not None else public_key_pem(layer.signer)


def rebundle_layer(
    kit: SigstoreKit, layer: KitLayer, body: bytes, *, integrated_time: int | None = None
) -> KitLayer:
    """``layer`` with a fresh bundle (valid SET) over ``body``."""
    current = (
        json.loads(layer.annotations[ANNOTATION_BUNDLE])["Payload"]
        if ANNOTATION_BUNDLE in layer.annotations
        else {}
    )
    when = integrated_time if integrated_time is not None else current.get("integratedTime")
    if when is None:
        when = int(kit.default_sign_time().timestamp())
    bundle = kit.make_bundle(body, integrated_time=when)
    return layer.with_annotation(ANNOTATION_BUNDLE, bundle.to_json())


def resign_envelope(
    kit: SigstoreKit,
    layer: KitLayer,
    statement: bytes,
    *,
    payload_type: str = IN_TOTO_PAYLOAD_TYPE,
    tlog: bool = True,
) -> KitLayer:
    """An ``.att`` layer with ``statement`` (and ``payload_type``), re-signed, and its entry re-logged."""
    envelope = dsse_sign(layer.signer, statement, payload_type=payload_type)
    out = layer.with_payload(envelope)
    if tlog and ANNOTATION_BUNDLE in layer.annotations:
        out = rebundle_layer(kit, out, intoto_v002_body(envelope, signer_pem(layer)))
    return out
