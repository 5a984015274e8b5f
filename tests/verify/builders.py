"""A miniature Sigstore for unit tests: Fulcio CA, CT log, Rekor, all generated at test time.

Everything is relative to an injected ``now``. Keys are generated per test session and never
written to disk. The certificates follow Fulcio's profile, including a real embedded SCT (built the
RFC 6962 way: sign the precertificate TBS, then add the SCT list as the last extension), and the
Rekor SET is a real signature over the canonical entry JSON.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.model import Digest, Signature
from controller.verify import TrustRoot

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)  # the injected "now" of the unit tests

SCT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
ISSUER_V1_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
USERNAME_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def der_utf8(text: str) -> bytes:
    """A DER UTF8String."""
    raw = text.encode()
    if len(raw) < 0x80:
        return bytes([0x0C, len(raw)]) + raw
    length = len(raw).to_bytes((len(raw).bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(length)]) + length + raw


def spki(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sign(key: PrivateKey, data: bytes, hash_algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    """Sign the way cosign does for each key type (ECDSA/RSA: SHA-256 unless given)."""
    algorithm = hash_algorithm or hashes.SHA256()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(algorithm))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), algorithm)
    return key.sign(data)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "imprimatur.test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def ca_certificate(
    subject: str,
    key: PrivateKey,
    *,
    issuer: tuple[x509.Certificate, PrivateKey] | None = None,
    not_before: datetime,
    not_after: datetime,
    path_length: int | None = None,
    ca: bool = True,
    key_cert_sign: bool = True,
) -> x509.Certificate:
    """A CA certificate, self-signed unless ``issuer`` is given."""
    issuer_name = name(subject) if issuer is None else issuer[0].subject
    signing_key = key if issuer is None else issuer[1]
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=key_cert_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(signing_key, hashes.SHA384())


def sct_list_extension(scts: Sequence[bytes]) -> x509.UnrecognizedExtension:
    """The SCT-list extension value: an OCTET STRING around the TLS SignedCertificateTimestampList."""
    serialized = b"".join(len(s).to_bytes(2, "big") + s for s in scts)
    tls_list = len(serialized).to_bytes(2, "big") + serialized
    if len(tls_list) < 0x80:
        octets = bytes([0x04, len(tls_list)]) + tls_list
    else:
        length = len(tls_list).to_bytes((len(tls_list).bit_length() + 7) // 8, "big")
        octets = bytes([0x04, 0x80 | len(length)]) + length + tls_list
    return x509.UnrecognizedExtension(SCT_OID, octets)


@dataclass
class LeafSpec:
    """What to put in a leaf certificate. Defaults give a valid GitHub-Actions-like Fulcio leaf."""

    key: PrivateKey | None = None
    san: x509.GeneralName | list[x509.GeneralName] = field(
        default_factory=lambda: x509.RFC822Name("alice@example.com")
    )
    issuer_v2: str | None = "https://issuer.example"
    issuer_v1: str | None = "https://issuer.example"
    raw_claims: Mapping[str, bytes] = field(default_factory=dict)  # dotted OID -> raw extension value
    not_before: datetime | None = None
    lifetime: timedelta = timedelta(minutes=10)
    sct: bool = True
    sct_timestamp: datetime | None = None
    sct_log_key: ec.EllipticCurvePrivateKey | None = None  # default: the trusted CT log key
    sct_log_id: bytes | None = None
    sct_tamper: Callable[[bytes], bytes] | None = None  # rewrites the serialized SCT after signing
    key_usage_digital_signature: bool = True
    eku: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.CODE_SIGNING,)
    basic_constraints_ca: bool | None = None  # None: no basicConstraints extension
    extra_extensions: Sequence[tuple[x509.ExtensionType, bool]] = ()
    issuer: tuple[x509.Certificate, PrivateKey] | None = None  # default: the intermediate


@dataclass
class Sigstore:
    """A test Fulcio (root + intermediate), CT log and Rekor with its trusted_root.json."""

    now: datetime = NOW
    root_key: PrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    intermediate_key: PrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    ctlog_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    rekor_key: PrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    leaf_keys: dict[str, PrivateKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = ca_certificate(
            "test-root",
            self.root_key,
            not_before=self.now - timedelta(days=365),
            not_after=self.now + timedelta(days=3650),
            path_length=1,
        )
        self.intermediate = ca_certificate(
            "test-intermediate",
            self.intermediate_key,
            issuer=(self.root, self.root_key),
            not_before=self.now - timedelta(days=300),
            not_after=self.now + timedelta(days=3000),
            path_length=0,
        )

    # --- trust root
    @property
    def rekor_log_id(self) -> bytes:
        return hashlib.sha256(spki(self.rekor_key)).digest()

    @property
    def ctlog_id(self) -> bytes:
        return hashlib.sha256(spki(self.ctlog_key)).digest()

    def trusted_root_dict(self) -> dict[str, Any]:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        def stamp(when: datetime) -> str:
            return when.strftime("%Y-%m-%dT%H:%M:%SZ")

        def key_details(key: PrivateKey) -> str:
            if isinstance(key, ed25519.Ed25519PrivateKey):
                return "PKIX_ED25519"
            return "PKIX_ECDSA_P256_SHA_256"

        start = stamp(self.now - timedelta(days=365))
        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [
                {
                    "baseUrl": "https://rekor.test",
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": {
                        "rawBytes": b64(spki(self.rekor_key)),
                        "keyDetails": key_details(self.rekor_key),
                        "validFor": {"start": start},
                    },
                    "logId": {"keyId": b64(self.rekor_log_id)},
                }
            ],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "imprimatur.test", "commonName": "test-root"},
                    "uri": "https://fulcio.test",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": b64(self.intermediate.public_bytes(serialization.Encoding.DER))},
                            {"rawBytes": b64(self.root.public_bytes(serialization.Encoding.DER))},
                        ]
                    },
                    "validFor": {"start": start},
                }
            ],
            "ctlogs": [
                {
                    "baseUrl": "https://ctfe.test",
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": {
                        "rawBytes": b64(spki(self.ctlog_key)),
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        "validFor": {"start": start},
                    },
                    "logId": {"keyId": b64(self.ctlog_id)},
                }
            ],
            "timestampAuthorities": [],
        }

    def trusted_root_json(self, mutate: Callable[[dict[str, Any]], None] | None = None) -> bytes:
        doc = self.trusted_root_dict()
        if mutate is not None:
            mutate(doc)
        return json.dumps(doc).encode()

    def trust_root(self, mutate: Callable[[dict[str, Any]], None] | None = None) -> TrustRoot:
        return TrustRoot.from_json(self.trusted_root_json(mutate), "test")

    # --- Fulcio
    def leaf_key(self, kind: str = "p256") -> PrivateKey:
        if kind not in self.leaf_keys:
            self.leaf_keys[kind] = {
                "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
                "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
                "p521": lambda: ec.generate_private_key(ec.SECP521R1()),
                "rsa2048": lambda: rsa.generate_private_key(65537, 2048),
                "ed25519": ed25519.Ed25519PrivateKey.generate,
            }[kind]()
        return self.leaf_keys[kind]

    def issue_leaf(self, spec: LeafSpec | None = None) -> tuple[PrivateKey, x509.Certificate]:
        spec = spec or LeafSpec()
        key = spec.key or self.leaf_key()
        issuer_cert, issuer_key = spec.issuer or (self.intermediate, self.intermediate_key)
        not_before = spec.not_before or (self.now - timedelta(minutes=1))
        sans = spec.san if isinstance(spec.san, list) else [spec.san]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(issuer_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + spec.lifetime)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=spec.key_usage_digital_signature,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=not spec.key_usage_digital_signature,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(list(spec.eku)), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=True)
        )
        if spec.basic_constraints_ca is not None:
            builder = builder.add_extension(
                x509.BasicConstraints(ca=spec.basic_constraints_ca, path_length=None), critical=True
            )
        if spec.issuer_v1 is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(ISSUER_V1_OID, spec.issuer_v1.encode()), critical=False
            )
        if spec.issuer_v2 is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(ISSUER_V2_OID, der_utf8(spec.issuer_v2)), critical=False
            )
        for oid, value in spec.raw_claims.items():
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), critical=False
            )
        for extension, critical in spec.extra_extensions:
            builder = builder.add_extension(extension, critical=critical)
        if not spec.sct:
            return key, builder.sign(issuer_key, hashes.SHA384())

        precert = builder.sign(issuer_key, hashes.SHA384())
        tbs = precert.tbs_certificate_bytes
        log_key = spec.sct_log_key or self.ctlog_key
        log_id = spec.sct_log_id or hashlib.sha256(spki(log_key)).digest()
        when = spec.sct_timestamp or not_before
        milliseconds = int(when.timestamp() * 1000)
        issuer_key_hash = hashlib.sha256(spki(issuer_key)).digest()
        signed = (
            struct.pack(">BBQH", 0, 0, milliseconds, 1)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + b"\x00\x00"
        )
        signature = log_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (
            b"\x00"
            + log_id
            + struct.pack(">Q", milliseconds)
            + b"\x00\x00"
            + bytes([4, 3])  # sha256, ecdsa
            + len(signature).to_bytes(2, "big")
            + signature
        )
        if spec.sct_tamper is not None:
            sct = spec.sct_tamper(sct)
        cert = builder.add_extension(sct_list_extension([sct]), critical=False).sign(
            issuer_key, hashes.SHA384()
        )
        if cert.tbs_precertificate_bytes != tbs:
            raise AssertionError("precertificate TBS does not round-trip")
        return key, cert

    # --- Rekor
    def rekor_bundle(
        self,
        *,
        payload: bytes,
        signature: bytes,
        cert: x509.Certificate,
        integrated_time: int | None = None,
        log_index: int = 42,
        kind: str = "hashedrekord",
        body: dict[str, Any] | None = None,
        log_key: PrivateKey | None = None,
        log_id: bytes | None = None,
    ) -> str:
        """The ``dev.sigstore.cosign/bundle`` annotation for this signature (a real SET)."""
        if body is None:
            signature_field: dict[str, Any] = {
                "content": base64.b64encode(signature).decode(),
                "publicKey": {"content": base64.b64encode(pem(cert).encode()).decode()},
            }
            if kind == "rekord":
                signature_field["format"] = "x509"
            body = {
                "apiVersion": "0.0.1",
                "kind": kind,
                "spec": {
                    "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
                    "signature": signature_field,
                },
            }
        body_b64 = base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()
        when = integrated_time if integrated_time is not None else int(self.now.timestamp())
        log_id_hex = (log_id or self.rekor_log_id).hex()
        canonical = (
            f'{{"body":"{body_b64}","integratedTime":{when},"logID":"{log_id_hex}","logIndex":{log_index}}}'
        ).encode()
        set_signature = sign(log_key or self.rekor_key, canonical)
        return json.dumps(
            {
                "SignedEntryTimestamp": base64.b64encode(set_signature).decode(),
                "Payload": {
                    "body": body_b64,
                    "integratedTime": when,
                    "logIndex": log_index,
                    "logID": log_id_hex,
                },
            }
        )

    # --- cosign
    def sign_image(
        self,
        digest: Digest,
        *,
        leaf: tuple[PrivateKey, x509.Certificate] | None = None,
        payload: bytes | None = None,
        optional: Any = None,
        chain: bool = True,
        tlog: bool = True,
        integrated_time: int | None = None,
        hash_algorithm: hashes.HashAlgorithm | None = None,
    ) -> Signature:
        """A cosign ``.sig`` layer signing ``digest``, keyless, with SCT, chain and Rekor bundle."""
        key, cert = leaf or self.issue_leaf()
        if payload is None:
            payload = json.dumps(
                {
                    "critical": {
                        "identity": {"docker-reference": "registry.test/app"},
                        "image": {"docker-manifest-digest": str(digest)},
                        "type": "cosign container image signature",
                    },
                    "optional": optional,
                },
                separators=(",", ":"),
            ).encode()
        signature = sign(key, payload, hash_algorithm)
        annotations = {
            "dev.cosignproject.cosign/signature": base64.b64encode(signature).decode(),
            "dev.sigstore.cosign/certificate": pem(cert),
        }
        if chain:
            annotations["dev.sigstore.cosign/chain"] = pem(self.intermediate) + pem(self.root)
        if tlog:
            annotations["dev.sigstore.cosign/bundle"] = self.rekor_bundle(
                payload=payload, signature=signature, cert=cert, integrated_time=integrated_time
            )
        return Signature(
            kind="simplesigning",
            payload=payload,
            annotations=annotations,
            layer_digest=Digest.of(payload),
            source="registry.test/app:sha256-test.sig layer 0",
        )


def with_annotations(sig: Signature, **changes: str | None) -> Signature:
    """``sig`` with annotations replaced (``None`` removes one). Keys use ``_`` for ``/`` and ``.``."""
    keys = {
        "signature": "dev.cosignproject.cosign/signature",
        "certificate": "dev.sigstore.cosign/certificate",
        "chain": "dev.sigstore.cosign/chain",
        "bundle": "dev.sigstore.cosign/bundle",
    }
    annotations = dict(sig.annotations)
    for short, value in changes.items():
        if value is None:
            annotations.pop(keys[short], None)
        else:
            annotations[keys[short]] = value
    return replace(sig, annotations=annotations)


IMAGE = Digest.parse("sha256:" + "ab" * 32)
