"""What a Sigstore bundle's parts are made of: signatures, in-toto statements and Rekor entry bodies.

The pieces :mod:`tests.kit.bundles` assembles, each shaped as the real ones: message signatures
(prehashed SHA-256, or over the bytes), in-toto Statement v1 as protojson writes it, and the
canonicalized bodies of Rekor v1 (``hashedrekord`` 0.0.1, ``dsse`` 0.0.1, ``intoto`` 0.0.2) and
Rekor v2 (``hashedrekord``/``dsse`` 0.0.2, verifiers as ``{keyDetails, x509Certificate|publicKey}``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from controller.model import Digest
from tests.kit.attest import IN_TOTO_PAYLOAD_TYPE, intoto_v002_body, pae, public_key_pem
from tests.kit.gojson import JSONValue, go_json
from tests.kit.sigstore import Leaf, SigningKey, b64

EntryKind = Literal["hashedrekord", "dsse", "intoto"]
STATEMENT_V1 = "https://in-toto.io/Statement/v1"


# --- keys


def spki(key: SigningKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_details(key: SigningKey) -> str:
    """protobuf-specs ``PublicKeyDetails`` of a signing key, as Rekor v2 bodies record it."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "PKIX_ED25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"PKIX_RSA_PKCS1V15_{key.key_size}_SHA256"
    return {256: "PKIX_ECDSA_P256_SHA_256", 384: "PKIX_ECDSA_P384_SHA_384", 521: "PKIX_ECDSA_P521_SHA_512"}[
        key.curve.key_size
    ]


def sign_message(key: SigningKey, data: bytes) -> bytes:
    """A signature over ``data`` as Sigstore clients make it: ECDSA/RSA PKCS#1 v1.5 with SHA-256,
    pure Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def sign_digest(key: SigningKey, digest: bytes) -> bytes:
    """A signature over a SHA-256 ``digest`` (prehashed): what a message signature over a blob is."""
    prehashed = utils.Prehashed(hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(digest, ec.ECDSA(prehashed))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(digest, padding.PKCS1v15(), prehashed)
    raise TypeError("Ed25519 cannot sign a prehashed digest; pass the artifact bytes")


# --- what was signed


@dataclass(frozen=True)
class MessageContent:
    """A message signature: over the artifact's bytes when known, else over its SHA-256 digest."""

    digest: Digest
    artifact: bytes | None = None


@dataclass(frozen=True)
class DsseContent:
    """A DSSE envelope over ``payload`` (an in-toto statement's bytes)."""

    payload: bytes
    payload_type: str = IN_TOTO_PAYLOAD_TYPE


Content = MessageContent | DsseContent


def statement_v1(digest: Digest | str, predicate_type: str, predicate: JSONValue, *, name: str = "") -> bytes:
    """An in-toto Statement v1 as protojson marshals it: ``_type``, ``subject``, ``predicateType``,
    ``predicate`` (a subject ``name`` only when given)."""
    algorithm, _, value = str(digest).partition(":")
    subject: dict[str, JSONValue] = {"name": name} if name else {}
    subject["digest"] = {algorithm: value}
    return go_json(
        {"_type": STATEMENT_V1, "subject": [subject], "predicateType": predicate_type, "predicate": predicate}
    )


# --- entry bodies


def _verifier_pem(signer: Leaf | SigningKey) -> str:
    return signer.pem if isinstance(signer, Leaf) else public_key_pem(signer)


def _v2_verifier(signer: Leaf | SigningKey) -> dict[str, JSONValue]:
    if isinstance(signer, Leaf):
        der = signer.certificate.public_bytes(serialization.Encoding.DER)
        return {"keyDetails": key_details(signer.private_key), "x509Certificate": {"rawBytes": b64(der)}}
    return {"keyDetails": key_details(signer), "publicKey": {"rawBytes": b64(spki(signer))}}


def entry_body(
    kind: EntryKind,
    version: str,
    *,
    content: Content,
    signature: bytes,
    signer: Leaf | SigningKey,
    envelope_json: bytes = b"",
) -> dict[str, Any]:
    """The canonicalized body Rekor records, as a dict (serialize with :func:`go_json`)."""
    if kind == "hashedrekord" and version == "0.0.1":
        if not isinstance(content, MessageContent):
            raise TypeError("hashedrekord 0.0.1 records a message signature")
        return {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": content.digest.algorithm, "value": content.digest.hex}},
                "signature": {
                    "content": b64(signature),
                    "publicKey": {"content": b64(_verifier_pem(signer).encode("ascii"))},
                },
            },
        }
    if kind == "hashedrekord" and version == "0.0.2":
        if isinstance(content, MessageContent):
            digest = bytes.fromhex(content.digest.hex)
        else:  # rekor-v2-spec 6.1.4: a DSSE envelope is logged by the digest of its PAE
            digest = hashlib.sha256(pae(content.payload_type, content.payload)).digest()
        return {
            "apiVersion": "0.0.2",
            "kind": "hashedrekord",
            "spec": {
                "hashedRekordV002": {
                    "data": {"algorithm": "SHA2_256", "digest": b64(digest)},
                    "signature": {"content": b64(signature), "verifier": _v2_verifier(signer)},
                }
            },
        }
    if not isinstance(content, DsseContent):
        raise TypeError(f"{kind} {version} records a DSSE envelope")
    if kind == "dsse" and version == "0.0.1":
        return {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(envelope_json).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(content.payload).hexdigest()},
                "signatures": [
                    {
                        "signature": b64(signature),
                        "verifier": b64(_verifier_pem(signer).encode("ascii")),
                    }
                ],
            },
        }
    if kind == "dsse" and version == "0.0.2":
        return {
            "apiVersion": "0.0.2",
            "kind": "dsse",
            "spec": {
                "dsseV002": {
                    "payloadHash": {
                        "algorithm": "SHA2_256",
                        "digest": b64(hashlib.sha256(content.payload).digest()),
                    },
                    "signatures": [{"content": b64(signature), "verifier": _v2_verifier(signer)}],
                }
            },
        }
    if kind == "intoto" and version == "0.0.2":
        parsed = json.loads(intoto_v002_body(envelope_json, _verifier_pem(signer)))
        assert isinstance(parsed, dict)
        return parsed
    raise ValueError(f"no {kind} {version} body")
