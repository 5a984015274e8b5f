"""Sigstore bundles (v0.1 to v0.3) made at test time with the kit's PKI, shaped like the real ones.

What is reproduced, and from where (``../shared/testdata/sigstore-real/bundles`` and
``../shared/testdata/sigstore-conformance/bundle-verify``):

* the protobuf-specs ``Bundle`` in proto3 JSON: camelCase, int64 as decimal strings, bytes as
  standard base64, fields in declaration order (``mediaType``, ``verificationMaterial``
  {material, ``tlogEntries``, ``timestampVerificationData``}, then the content); three layouts:
  ``"cosign"`` (compact, UTF-8, a final newline: cosign's file byte for byte), ``"python"``
  (sigstore-python's ``indent=4``) and ``"conformance"`` (Python's default separators);
* media types ``...bundle+json;version=0.1|0.2|0.3`` and ``...bundle.v0.3+json``; a v0.1/v0.2
  bundle carries an ``x509CertificateChain`` (the leaf, optionally the intermediate), a v0.3 one a
  single ``certificate``, a key-signed one a ``publicKey`` hint (base64 SHA-256 of the SPKI DER);
* Rekor v1 entries (``tlog="v1"``): the kit's Rekor key (:attr:`SigstoreKit.rekor`) signs the SET
  and the checkpoint of a :class:`MerkleLog` that shares the key (origin ``<host> - <tree id>``);
  the entry's ``logIndex`` is global, the proof's is the shard's; bodies ``hashedrekord`` 0.0.1,
  ``dsse`` 0.0.1 or ``intoto`` 0.0.2;
* Rekor v2 entries (``tlog="v2"``): an Ed25519 log (origin = host), no integrated time and no SET,
  an RFC 3161 timestamp from the kit's :class:`TestTSA` over the signature; bodies ``hashedrekord``
  0.0.2 (for a DSSE envelope, over the digest of its PAE, as the conformance cases do) or ``dsse``
  0.0.2;
* the contents: a message signature over an artifact digest, a DSSE in-toto statement (cosign v3's
  image signature, predicate ``https://sigstore.dev/cosign/sign/v1``; an attestation of any
  predicate, Statement v0.1 as cosign writes it or v1).

Public API (each returns the bundle's bytes): :func:`make_blob_bundle`,
:func:`make_image_signature_bundle`, :func:`make_attestation_bundle`. :func:`build_bundle` returns
the document as a dict (for tamper tests), :func:`dump` serializes one, and
:func:`trusted_root_json` publishes a trust root that also holds the Rekor v2 log and the TSA. The
logs and TSA of a kit are made once, on first use (:func:`infrastructure`).

Knobs for tamper tests re-sign what is downstream of the change, so that one check fails:
``mutate_body`` edits the entry body before it is logged (the SET and the proof then cover it),
``statement`` replaces the DSSE payload before signing, ``sign_time``/``timestamp_time`` move
the signing and TSA instants.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from controller.model import COSIGN_SIGNATURE_PREDICATE, Digest
from tests.kit.attest import (
    COSIGN_CUSTOM_PREDICATE,
    envelope_bytes,
    pae,
    statement_bytes,
)
from tests.kit.bundle_bodies import (
    STATEMENT_V1,
    Content,
    DsseContent,
    EntryKind,
    MessageContent,
    entry_body,
    key_details,
    sign_digest,
    sign_message,
    spki,
    statement_v1,
)
from tests.kit.gojson import JSONValue, go_json
from tests.kit.sigstore import (
    DEFAULT_IDENTITY,
    LEAF_AGE_AT_SIGNING,
    Identity,
    KeyType,
    Leaf,
    SigningKey,
    SigstoreKit,
    b64,
)
from tests.kit.transparency import MerkleLog, TestTSA

__all__ = [
    "MEDIA_TYPES",
    "MEDIA_TYPE_V03_ALT",
    "STATEMENT_V1",
    "BundleVersion",
    "Content",
    "DsseContent",
    "EntryKind",
    "Infrastructure",
    "Layout",
    "MessageContent",
    "TlogStyle",
    "build_bundle",
    "der_of",
    "dump",
    "entry_body",
    "infrastructure",
    "key_details",
    "leaf_der",
    "make_attestation_bundle",
    "make_blob_bundle",
    "make_image_signature_bundle",
    "sign_checkpoint",
    "sign_digest",
    "sign_message",
    "spki",
    "statement_v1",
    "trusted_root",
    "trusted_root_json",
]

BundleVersion = Literal["0.1", "0.2", "0.3"]
TlogStyle = Literal["v1", "v2", "none"]
Layout = Literal["cosign", "python", "conformance"]
StatementVersion = Literal["v0.1", "v1"]

MEDIA_TYPES: dict[str, str] = {
    "0.1": "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "0.2": "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "0.3": "application/vnd.dev.sigstore.bundle.v0.3+json",
}
MEDIA_TYPE_V03_ALT = "application/vnd.dev.sigstore.bundle+json;version=0.3"  # the older 0.3 spelling
REKOR_V1_HOST = "rekor.sigstore.test"
REKOR_V2_HOST = "log2026-1.rekor.sigstore.test"
_FILLER_ENTRIES = 6  # bodies logged before ours, so that proofs have several hashes
_SHARD_OFFSET = 4_000_000  # global logIndex = shard offset + index in the tree (as Rekor v1 shards)


@dataclass
class Infrastructure:
    """The logs and TSA that a kit's bundles use (one per kit)."""

    rekor_v1: MerkleLog  # shares the kit's Rekor key: its SETs and checkpoints verify with it
    rekor_v2: MerkleLog
    tsa: TestTSA
    log_from: datetime  # the trust-root validFor start of the v2 log and the TSA


_INFRA: weakref.WeakKeyDictionary[SigstoreKit, Infrastructure] = weakref.WeakKeyDictionary()


def infrastructure(kit: SigstoreKit) -> Infrastructure:
    """The kit's Rekor v1 and v2 logs and TSA, made on first use."""
    found = _INFRA.get(kit)
    if found is None:
        rekor_key = kit.rekor.private_key
        if not isinstance(rekor_key, ec.EllipticCurvePrivateKey):
            raise TypeError("the kit's Rekor key must be ECDSA (Rekor v1)")
        v1 = MerkleLog(rekor_key, REKOR_V1_HOST)
        v2 = MerkleLog.v2(REKOR_V2_HOST)
        for n in range(_FILLER_ENTRIES):
            v1.append(b"filler %d" % n)
            v2.append(b"filler %d" % n)
        found = Infrastructure(v1, v2, TestTSA.create(kit.now), kit.now - timedelta(days=365))
        _INFRA[kit] = found
    return found


def trusted_root(
    kit: SigstoreKit,
    *,
    rekor_v1_window: tuple[datetime, datetime | None] | None = None,
    rekor_v2_window: tuple[datetime, datetime | None] | None = None,
    tsa_window: tuple[datetime, datetime | None] | None = None,
    tsa: TestTSA | None = None,
) -> dict[str, JSONValue]:
    """The kit's trusted root plus the Rekor v2 log and the TSA; windows (start, end) override
    the trust-root ``validFor`` of each."""
    infra = infrastructure(kit)
    rekor = kit.rekor
    if rekor_v1_window is not None:
        rekor = replace(rekor, valid_from=rekor_v1_window[0], valid_until=rekor_v1_window[1])
    v2_start, v2_end = rekor_v2_window or (infra.log_from, None)
    tsa_start, tsa_end = tsa_window or (infra.log_from, None)
    doc = kit.trusted_root(tlogs=[rekor])
    tlogs = doc["tlogs"]
    assert isinstance(tlogs, list)
    tlogs.append(infra.rekor_v2.trusted_root_entry(start=v2_start, end=v2_end))
    doc["timestampAuthorities"] = [(tsa or infra.tsa).trusted_root_entry(start=tsa_start, end=tsa_end)]
    return doc


def trusted_root_json(kit: SigstoreKit, **windows: Any) -> bytes:
    """:func:`trusted_root` as ``trusted_root.json`` bytes (two-space indent, as production's)."""
    return (json.dumps(trusted_root(kit, **windows), indent=2) + "\n").encode("utf-8")


# --- the bundle


def _checkpoint(log: MerkleLog, size: int) -> str:
    text = log.checkpoint_text(size, other=[])
    return text + "\n" + log.signature_line(text)


def _proof(log: MerkleLog, index: int, *, checkpoint: bool) -> dict[str, JSONValue]:
    size = len(log.leaves)
    proof: dict[str, JSONValue] = {
        "logIndex": str(index),
        "rootHash": b64(log.root(size)),
        "treeSize": str(size),
        "hashes": [b64(h) for h in log.proof(index, size)],
    }
    if checkpoint:
        proof["checkpoint"] = {"envelope": _checkpoint(log, size)}
    return proof


def _tlog_entry(
    kit: SigstoreKit,
    style: TlogStyle,
    *,
    kind: str,
    version: str,
    body: bytes,
    integrated_time: int,
    promise: bool,
    proof: bool,
    checkpoint: bool,
) -> dict[str, JSONValue]:
    infra = infrastructure(kit)
    log = infra.rekor_v1 if style == "v1" else infra.rekor_v2
    index = log.append(body)
    entry: dict[str, JSONValue] = {
        "logIndex": str(index + _SHARD_OFFSET if style == "v1" else index),
        "logId": {"keyId": b64(log.log_id)},
        "kindVersion": {"kind": kind, "version": version},
    }
    if style == "v1":
        entry["integratedTime"] = str(integrated_time)
        if promise:
            signed = kit.make_set(body, integrated_time, index + _SHARD_OFFSET)
            entry["inclusionPromise"] = {"signedEntryTimestamp": signed}
    if proof:
        entry["inclusionProof"] = _proof(log, index, checkpoint=checkpoint)
    entry["canonicalizedBody"] = b64(body)
    return entry


def _default_kind(content: Content, style: TlogStyle) -> EntryKind:
    return "hashedrekord" if isinstance(content, MessageContent) else "dsse"


def build_bundle(
    kit: SigstoreKit,
    content: Content,
    signer: Leaf | SigningKey,
    *,
    version: BundleVersion = "0.3",
    media_type: str | None = None,
    tlog: TlogStyle = "v1",
    entry_kind: EntryKind | None = None,
    inclusion_promise: bool | None = None,
    inclusion_proof: bool = True,
    checkpoint: bool = True,
    timestamps: int | None = None,
    timestamp_time: datetime | None = None,
    tsa: TestTSA | None = None,
    embed_tsa_chain: bool = False,
    chain: bool = False,
    sign_time: datetime | None = None,
    mutate_body: Callable[[dict[str, Any]], None] | None = None,
    signature: bytes | None = None,
    body_signer: Leaf | SigningKey | None = None,
) -> dict[str, JSONValue]:
    """A bundle for ``content`` signed by ``signer`` (a Fulcio leaf, or a key for a key-signed one).

    ``tlog`` picks the log style (``"none"``: no entry); ``entry_kind`` the body kind (defaults:
    hashedrekord for a message, dsse for an envelope; ``"intoto"`` 0.0.2 with Rekor v1;
    ``"hashedrekord"`` over the PAE with Rekor v2). ``inclusion_promise`` defaults to Rekor v1;
    ``timestamps`` (RFC 3161 tokens) defaults to 1 with Rekor v2, else 0, from ``tsa`` (default the
    kit's), with its certificates embedded when ``embed_tsa_chain``. ``chain`` adds the
    intermediate to a v0.1/v0.2 chain. ``signature`` replaces the computed signature;
    ``body_signer`` is the verifier the entry body records (default ``signer``).
    """
    when = sign_time or kit.default_sign_time()
    key = signer.private_key if isinstance(signer, Leaf) else signer
    envelope_json = b""
    if isinstance(content, MessageContent):
        if signature is None:
            signature = (
                sign_message(key, content.artifact)
                if content.artifact is not None
                else sign_digest(key, bytes.fromhex(content.digest.hex))
            )
        body_content: dict[str, JSONValue] = {
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": b64(bytes.fromhex(content.digest.hex))},
                "signature": b64(signature),
            }
        }
    else:
        if signature is None:
            signature = sign_message(key, pae(content.payload_type, content.payload))
        envelope_json = envelope_bytes(content.payload_type, content.payload, [signature])
        body_content = {
            "dsseEnvelope": {
                "payload": b64(content.payload),
                "payloadType": content.payload_type,
                "signatures": [{"sig": b64(signature)}],
            }
        }
    material: dict[str, JSONValue] = {}
    if isinstance(signer, Leaf):
        der = signer.certificate.public_bytes(serialization.Encoding.DER)
        if version == "0.3":
            material["certificate"] = {"rawBytes": b64(der)}
        else:
            certs = [der]
            if chain:
                certs += [c.public_bytes(serialization.Encoding.DER) for c in signer.ca.chain[:-1]]
            material["x509CertificateChain"] = {"certificates": [{"rawBytes": b64(c)} for c in certs]}
    else:
        material["publicKey"] = {"hint": b64(hashlib.sha256(spki(signer)).digest())}
    entries: list[JSONValue] = []
    if tlog != "none":
        kind = entry_kind or _default_kind(content, tlog)
        version_of_kind = "0.0.2" if tlog == "v2" or kind == "intoto" else "0.0.1"
        body_doc = entry_body(
            kind,
            version_of_kind,
            content=content,
            signature=signature,
            signer=body_signer or signer,
            envelope_json=envelope_json,
        )
        if mutate_body is not None:
            mutate_body(body_doc)
        entries.append(
            _tlog_entry(
                kit,
                tlog,
                kind=kind,
                version=version_of_kind,
                body=go_json(body_doc),
                integrated_time=int(when.timestamp()),
                promise=(tlog == "v1") if inclusion_promise is None else inclusion_promise,
                proof=inclusion_proof,
                checkpoint=checkpoint,
            )
        )
    material["tlogEntries"] = entries
    count = (1 if tlog == "v2" else 0) if timestamps is None else timestamps
    if count:
        authority = tsa or infrastructure(kit).tsa
        stamp = timestamp_time or when
        material["timestampVerificationData"] = {
            "rfc3161Timestamps": [
                {
                    "signedTimestamp": b64(
                        authority.response(data=signature, when=stamp, embed=embed_tsa_chain)
                    )
                }
                for _ in range(count)
            ]
        }
    return {
        "mediaType": media_type or MEDIA_TYPES[version],
        "verificationMaterial": material,
        **body_content,
    }


def dump(doc: dict[str, JSONValue], layout: Layout = "cosign") -> bytes:
    """Serialize a bundle as cosign (compact UTF-8 + newline), sigstore-python (indent 4) or the
    conformance suite (Python's default separators) write it."""
    if layout == "cosign":
        return (json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")
    if layout == "python":
        return (json.dumps(doc, indent=4) + "\n").encode("utf-8")
    return json.dumps(doc).encode("utf-8")


def _signer(
    kit: SigstoreKit,
    identity: Identity,
    *,
    key: SigningKey | None,
    leaf: Leaf | None,
    sign_time: datetime | None,
    key_type: KeyType,
) -> Leaf | SigningKey:
    if key is not None:
        return key
    if leaf is not None:
        return leaf
    when = sign_time or kit.default_sign_time()
    return kit.issue_leaf(identity, issued_at=when - LEAF_AGE_AT_SIGNING, key_type=key_type)


def make_blob_bundle(
    kit: SigstoreKit,
    artifact: bytes | Digest,
    identity: Identity = DEFAULT_IDENTITY,
    *,
    key: SigningKey | None = None,
    leaf: Leaf | None = None,
    key_type: KeyType = KeyType.ECDSA_P256,
    layout: Layout = "cosign",
    **options: Any,
) -> bytes:
    """``cosign sign-blob --bundle``: a message signature over ``artifact`` (bytes, or its digest).

    Keyless by ``identity`` unless ``key`` (key-signed, ``publicKey`` hint) or ``leaf`` is given;
    ``options`` go to :func:`build_bundle` (``version``, ``tlog``, ``timestamps`` ...).
    """
    content = (
        MessageContent(artifact)
        if isinstance(artifact, Digest)
        else MessageContent(Digest.of(artifact), artifact)
    )
    signer = _signer(kit, identity, key=key, leaf=leaf, sign_time=options.get("sign_time"), key_type=key_type)
    return dump(build_bundle(kit, content, signer, **options), layout)


def make_image_signature_bundle(
    kit: SigstoreKit,
    digest: Digest | str,
    identity: Identity = DEFAULT_IDENTITY,
    *,
    repository: str = "",
    key: SigningKey | None = None,
    leaf: Leaf | None = None,
    key_type: KeyType = KeyType.ECDSA_P256,
    statement: bytes | None = None,
    layout: Layout = "cosign",
    **options: Any,
) -> bytes:
    """cosign v3's image signature (an OCI referrer): a DSSE in-toto Statement v1 with predicate
    ``https://sigstore.dev/cosign/sign/v1`` and an empty predicate, subject the image digest."""
    payload = statement or statement_v1(digest, COSIGN_SIGNATURE_PREDICATE, {}, name=repository)
    signer = _signer(kit, identity, key=key, leaf=leaf, sign_time=options.get("sign_time"), key_type=key_type)
    return dump(build_bundle(kit, DsseContent(payload), signer, **options), layout)


def make_attestation_bundle(
    kit: SigstoreKit,
    digest: Digest | str,
    predicate_type: str = COSIGN_CUSTOM_PREDICATE,
    predicate: JSONValue | None = None,
    identity: Identity = DEFAULT_IDENTITY,
    *,
    repository: str = "registry.test/repo",
    statement_version: StatementVersion = "v0.1",
    key: SigningKey | None = None,
    leaf: Leaf | None = None,
    key_type: KeyType = KeyType.ECDSA_P256,
    statement: bytes | None = None,
    layout: Layout = "cosign",
    **options: Any,
) -> bytes:
    """``cosign attest --new-bundle-format``: a DSSE envelope over an in-toto statement of
    ``predicate_type`` about ``digest`` (Statement v0.1 in cosign's field order, or v1)."""
    if statement is None:
        if statement_version == "v0.1":
            statement = statement_bytes(
                str(digest), repository, predicate_type=predicate_type, predicate=predicate
            )
        else:
            statement = statement_v1(digest, predicate_type, predicate or {}, name=repository)
    signer = _signer(kit, identity, key=key, leaf=leaf, sign_time=options.get("sign_time"), key_type=key_type)
    return dump(build_bundle(kit, DsseContent(statement), signer, **options), layout)


def sign_checkpoint(log: MerkleLog, text: str, *, names: Sequence[str] | None = None) -> str:
    """A signed note over ``text`` by ``log`` (once per name in ``names``, default its host)."""
    lines = [log.signature_line(text, name=name) for name in (names or [log.host])]
    return text + "\n" + "".join(lines)


def leaf_der(leaf: Leaf) -> bytes:
    """The DER of a leaf certificate."""
    return leaf.certificate.public_bytes(serialization.Encoding.DER)


def der_of(cert: x509.Certificate) -> bytes:
    """The DER of any certificate (a CA's, to put in a chain)."""
    return cert.public_bytes(serialization.Encoding.DER)
