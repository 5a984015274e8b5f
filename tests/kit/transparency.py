"""A test transparency log and a test timestamp authority, real down to the bytes.

* :class:`MerkleLog`: an RFC 6962 tree of entry bodies that gives inclusion proofs (computed
  independently of ``controller.verify.merkle``: by recursion over the tree, RFC 6962 2.1.1) and
  signed checkpoints, Rekor v1 style (ECDSA P-256, key hint = log ID, origin
  ``"<host> - <tree id>"``, a ``Timestamp:`` extension line) or Rekor v2 style (Ed25519, C2SP key
  hint over name and key, origin = host).
* :class:`TestTSA`: a timestamp authority with a root, an optional intermediate and a leaf
  (critical EKU ``timeStamping``), that issues RFC 3161 ``TimeStampResp`` DER (a CMS SignedData
  over a TSTInfo, with signed attributes and ESS signingCertificateV2), and its
  ``timestampAuthorities`` entry for trusted_root.json.

DER is written by hand here: small, explicit, and with SET OF sorted as DER requires.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Merkle log


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (RFC 6962 2.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 Merkle Tree Hash of leaf hashes (recursive, for n >= 1)."""
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(mth(leaves[:k]), mth(leaves[k:]))


def audit_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 2.1.1 PATH(m, D[n]), leaf first."""
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*audit_path(index, leaves[:k]), mth(leaves[k:])]
    return [*audit_path(index - k, leaves[k:]), mth(leaves[:k])]


@dataclass
class MerkleLog:
    """A transparency log: append bodies, get proofs and signed checkpoints."""

    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    host: str = "rekor.test"
    tree_id: int = 1193050959916656506
    leaves: list[bytes] = field(default_factory=list)

    @classmethod
    def v1(cls, host: str = "rekor.test") -> MerkleLog:
        return cls(ec.generate_private_key(ec.SECP256R1()), host)

    @classmethod
    def v2(cls, host: str = "log2026-1.rekor.test") -> MerkleLog:
        return cls(ed25519.Ed25519PrivateKey.generate(), host)

    @property
    def is_v2(self) -> bool:
        return isinstance(self.key, ed25519.Ed25519PrivateKey)

    @property
    def spki(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def origin(self) -> str:
        return self.host if self.is_v2 else f"{self.host} - {self.tree_id}"

    def key_hint(self, name: str | None = None) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            raw = self.key.public_key().public_bytes_raw()
            return hashlib.sha256((name or self.host).encode() + b"\n\x01" + raw).digest()[:4]
        return self.log_id[:4]

    @property
    def log_id(self) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return hashlib.sha256(
                self.host.encode() + b"\n\x01" + self.key.public_key().public_bytes_raw()
            ).digest()
        return hashlib.sha256(self.spki).digest()

    def append(self, body: bytes) -> int:
        self.leaves.append(_leaf(body))
        return len(self.leaves) - 1

    def root(self, size: int | None = None) -> bytes:
        return mth(self.leaves[: size or len(self.leaves)])

    def proof(self, index: int, size: int | None = None) -> list[bytes]:
        return audit_path(index, self.leaves[: size or len(self.leaves)])

    def sign_note(self, text: str) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(text.encode())
        return self.key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))

    def checkpoint_text(self, size: int | None = None, *, other: Sequence[str] | None = None) -> str:
        size = size or len(self.leaves)
        extra = (
            list(other) if other is not None else ([] if self.is_v2 else ["Timestamp: 1689177396617352539"])
        )
        return "".join(f"{line}\n" for line in [self.origin, str(size), _b64(self.root(size)), *extra])

    def signature_line(self, text: str, *, name: str | None = None) -> str:
        name = name or self.host
        return f"\u2014 {name} {_b64(self.key_hint(name) + self.sign_note(text))}\n"

    def checkpoint(self, size: int | None = None, *, cosigners: Sequence[MerkleLog] = ()) -> str:
        """A signed checkpoint: the log's line first, then any cosigners' lines."""
        text = self.checkpoint_text(size)
        lines = [self.signature_line(text), *(w.signature_line(text) for w in cosigners)]
        return text + "\n" + "".join(lines)

    def trusted_root_entry(self, *, start: datetime, end: datetime | None = None) -> dict[str, Any]:
        valid_for = {"start": _stamp(start)} | ({"end": _stamp(end)} if end is not None else {})
        return {
            "baseUrl": f"https://{self.host}",
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": _b64(self.spki),
                "keyDetails": "PKIX_ED25519" if self.is_v2 else "PKIX_ECDSA_P256_SHA_256",
                "validFor": valid_for,
            },
            "logId": {"keyId": _b64(self.log_id)},
        }


# --- DER


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _len(len(content)) + content


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def set_of(*items: bytes) -> bytes:
    return tlv(0x31, b"".join(sorted(items)))


def integer(value: int) -> bytes:
    raw = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)
    return tlv(0x02, raw)


def _oid_der(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([parts[0] * 40 + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        rest = part >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body.extend(reversed(chunk))
    return tlv(0x06, bytes(body))


def octets(data: bytes) -> bytes:
    return tlv(0x04, data)


def explicit(n: int, content: bytes) -> bytes:
    return tlv(0xA0 | n, content)


def generalized_time(when: datetime) -> bytes:
    return tlv(0x18, when.astimezone(UTC).strftime("%Y%m%d%H%M%SZ").encode())


SHA256_OID = "2.16.840.1.101.3.4.2.1"
SHA512_OID = "2.16.840.1.101.3.4.2.3"
_SIGNED_DATA = "1.2.840.113549.1.7.2"
_TST_INFO = "1.2.840.113549.1.9.16.1.4"
_ECDSA_SHA256 = "1.2.840.10045.4.3.2"


# --- timestamp authority


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "imprimatur.test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    *,
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    not_after: datetime,
    ca: bool,
    eku_critical: bool = True,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    usage = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    if ca:
        usage.update(key_cert_sign=True, crl_sign=True)
    else:
        usage.update(digital_signature=True)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=eku_critical
        )
    builder = builder.add_extension(x509.KeyUsage(**usage), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class TestTSA:
    """A TSA: root -> (intermediate) -> leaf, all ECDSA P-256."""

    __test__ = False  # not a pytest class

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...] = ()

    @classmethod
    def create(
        cls,
        now: datetime,
        *,
        intermediate: bool = False,
        leaf_not_before: datetime | None = None,
        leaf_not_after: datetime | None = None,
        eku_critical: bool = True,
        name: str = "test-tsa",
    ) -> TestTSA:
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = _certificate(
            subject=f"{name}-root",
            key=root_key,
            issuer=None,
            issuer_key=root_key,
            not_before=now - timedelta(days=3650),
            not_after=now + timedelta(days=3650),
            ca=True,
        )
        chain: tuple[x509.Certificate, ...] = ()
        issuer, issuer_key = root, root_key
        if intermediate:
            mid_key = ec.generate_private_key(ec.SECP256R1())
            mid = _certificate(
                subject=f"{name}-intermediate",
                key=mid_key,
                issuer=root,
                issuer_key=root_key,
                not_before=now - timedelta(days=3000),
                not_after=now + timedelta(days=3000),
                ca=True,
            )
            issuer, issuer_key, chain = mid, mid_key, (mid,)
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        leaf = _certificate(
            subject=name,
            key=leaf_key,
            issuer=issuer,
            issuer_key=issuer_key,
            not_before=leaf_not_before or now - timedelta(days=365),
            not_after=leaf_not_after or now + timedelta(days=365),
            ca=False,
            eku_critical=eku_critical,
        )
        return cls(root_key, root, leaf_key, leaf, chain)

    @property
    def chain(self) -> list[x509.Certificate]:
        return [self.leaf, *self.intermediates, self.root]

    def trusted_root_entry(self, *, start: datetime, end: datetime | None = None) -> dict[str, Any]:
        valid_for = {"start": _stamp(start)} | ({"end": _stamp(end)} if end is not None else {})
        return {
            "subject": {"organization": "imprimatur.test", "commonName": "test-tsa"},
            "uri": "https://tsa.test/api/v1/timestamp",
            "certChain": {
                "certificates": [
                    {"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))} for c in self.chain
                ]
            },
            "validFor": valid_for,
        }

    def tst_info(
        self, *, data: bytes, when: datetime, serial: int = 1, imprint_oid: str = SHA256_OID
    ) -> bytes:
        digest = hashlib.sha512(data).digest() if imprint_oid == SHA512_OID else hashlib.sha256(data).digest()
        return seq(
            integer(1),
            _oid_der("1.3.6.1.4.1.57264.2"),
            seq(seq(_oid_der(imprint_oid)), octets(digest)),
            integer(serial),
            generalized_time(when),
        )

    def response(
        self,
        *,
        data: bytes,
        when: datetime,
        embed: bool = True,
        status: int = 0,
        tst_info: bytes | None = None,
        signer: ec.EllipticCurvePrivateKey | None = None,
        imprint_oid: str = SHA256_OID,
    ) -> bytes:
        """A TimeStampResp DER over ``data`` at ``when`` (embedding the chain when ``embed``)."""
        info = (
            tst_info if tst_info is not None else self.tst_info(data=data, when=when, imprint_oid=imprint_oid)
        )
        leaf_der = self.leaf.public_bytes(serialization.Encoding.DER)
        ess = seq(seq(seq(octets(hashlib.sha256(leaf_der).digest()))))
        attributes = [
            seq(_oid_der("1.2.840.113549.1.9.3"), set_of(_oid_der(_TST_INFO))),
            seq(_oid_der("1.2.840.113549.1.9.5"), set_of(generalized_time(when))),
            seq(_oid_der("1.2.840.113549.1.9.4"), set_of(octets(hashlib.sha256(info).digest()))),
            seq(_oid_der("1.2.840.113549.1.9.16.2.47"), set_of(ess)),
        ]
        signed_attrs = set_of(*attributes)
        signature = (signer or self.leaf_key).sign(signed_attrs, ec.ECDSA(hashes.SHA256()))
        issuer_and_serial = seq(self.leaf.issuer.public_bytes(), integer(self.leaf.serial_number))
        signer_info = seq(
            integer(1),
            issuer_and_serial,
            seq(_oid_der(SHA256_OID)),
            b"\xa0" + signed_attrs[1:],  # [0] IMPLICIT: the SET's bytes under another tag
            seq(_oid_der(_ECDSA_SHA256)),
            octets(signature),
        )
        certificates = b""
        if embed:
            ders = sorted(c.public_bytes(serialization.Encoding.DER) for c in self.chain)
            certificates = tlv(0xA0, b"".join(ders))
        signed_data = seq(
            integer(3),
            set_of(seq(_oid_der(SHA256_OID))),
            seq(_oid_der(_TST_INFO), explicit(0, octets(info))),
            certificates,
            set_of(signer_info),
        )
        token = seq(_oid_der(_SIGNED_DATA), explicit(0, signed_data))
        return seq(seq(integer(status)), token)
