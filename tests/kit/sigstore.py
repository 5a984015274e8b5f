"""A private Sigstore PKI for tests: Fulcio CA, CT log, Rekor, and cosign keyless ``.sig`` layers.

:class:`SigstoreKit` generates, relative to an injected ``now``, a Fulcio-like root and intermediate CA,
a CT log key and a Rekor key, and publishes them as a ``trusted_root.json`` laid out exactly like the
production one. It then issues Fulcio leaves (with a real RFC 6962 precertificate SCT) and produces
cosign's legacy simple-signing layers: payload bytes plus the four annotations, byte-compatible with
what production cosign pushes.

Every stage is exposed as a small function or method with knobs, so that a tamper test can change one
field and re-sign only what is downstream of it (:meth:`SigstoreKit.resign_payload`,
:meth:`SigstoreKit.rebundle`, :meth:`SigstoreKit.make_set`, :func:`hashedrekord_body`), and so hit
exactly one verification check.

Shapes copied from the real data in ``../shared/testdata/sigstore-real`` and from the sources of
Fulcio (``pkg/certificate/extensions.go``), cosign and Rekor.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from controller.model import Digest, Signature
from tests.kit.gojson import JSONValue, go_json, sorted_map

# --- cosign's layer annotations and payload (sigstore/cosign pkg/oci/static, sigstore/sigstore payload)
ANNOTATION_SIGNATURE = "dev.cosignproject.cosign/signature"
ANNOTATION_CERTIFICATE = "dev.sigstore.cosign/certificate"
ANNOTATION_CHAIN = "dev.sigstore.cosign/chain"
ANNOTATION_BUNDLE = "dev.sigstore.cosign/bundle"
SIMPLESIGNING_TYPE = "cosign container image signature"

# --- OIDC issuers seen in production certificates
GITHUB_OAUTH_ISSUER = "https://github.com/login/oauth"
GITHUB_ACTIONS_ISSUER = "https://token.actions.githubusercontent.com"
GOOGLE_ISSUER = "https://accounts.google.com"

# --- Fulcio OIDs (https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md)
OID_FULCIO_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw bytes (deprecated encoding)
OID_FULCIO_USERNAME = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")  # SAN otherName type-id
OID_FULCIO_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String
OID_SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")  # RFC 6962 embedded SCT list

#: Fulcio claim name (as sigstore-go names them) -> (OID arc under 1.3.6.1.4.1.57264.1, DER-encoded?).
#: Arcs 2-6 are the deprecated GitHub claims, written as raw bytes; 9 and up are DER UTF8Strings.
FULCIO_CLAIMS: Mapping[str, tuple[int, bool]] = {
    "githubWorkflowTrigger": (2, False),
    "githubWorkflowSHA": (3, False),
    "githubWorkflowName": (4, False),
    "githubWorkflowRepository": (5, False),
    "githubWorkflowRef": (6, False),
    "buildSignerURI": (9, True),
    "buildSignerDigest": (10, True),
    "runnerEnvironment": (11, True),
    "sourceRepositoryURI": (12, True),
    "sourceRepositoryDigest": (13, True),
    "sourceRepositoryRef": (14, True),
    "sourceRepositoryIdentifier": (15, True),
    "sourceRepositoryOwnerURI": (16, True),
    "sourceRepositoryOwnerIdentifier": (17, True),
    "buildConfigURI": (18, True),
    "buildConfigDigest": (19, True),
    "buildTrigger": (20, True),
    "runInvocationURI": (21, True),
    "sourceRepositoryVisibilityAtSigning": (22, True),
}

# --- times, relative to the signing instant, as production shows them
LEAF_VALIDITY = timedelta(minutes=10)  # Fulcio leaves: notAfter = notBefore + 10 min
LEAF_AGE_AT_SIGNING = timedelta(seconds=7)  # cert issued, then signed and logged a few seconds later
SCT_DELAY = timedelta(milliseconds=907)  # the CT log stamps the precert just after notBefore
DEFAULT_SIGNING_AGE = timedelta(minutes=1)  # default sign time is this long before `now`

# --- trust-root metadata (the URLs are shaped like production's but can never be mistaken for them)
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
FULCIO_URL = "https://fulcio.sigstore.test"
REKOR_URL = "https://rekor.sigstore.test"
CTFE_URL = "https://ctfe.sigstore.test/2022"

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
LogSigningKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
RekorKind = Literal["hashedrekord", "rekord"]
SanKind = Literal["email", "uri", "username"]
IssuerExtensions = Literal["both", "v1", "v2", "none"]


class KeyType(StrEnum):
    """Key types Fulcio accepts for the ephemeral signing key."""

    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    ECDSA_P521 = "ecdsa-p521"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    ED25519 = "ed25519"


_CURVES: Mapping[KeyType, ec.EllipticCurve] = {
    KeyType.ECDSA_P256: ec.SECP256R1(),
    KeyType.ECDSA_P384: ec.SECP384R1(),
    KeyType.ECDSA_P521: ec.SECP521R1(),
}
_RSA_BITS: Mapping[KeyType, int] = {KeyType.RSA_2048: 2048, KeyType.RSA_3072: 3072, KeyType.RSA_4096: 4096}


def generate_key(key_type: KeyType) -> SigningKey:
    """A fresh private key of ``key_type``."""
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type])
    if key_type in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[key_type])
    return ed25519.Ed25519PrivateKey.generate()


def sign_bytes(key: SigningKey, data: bytes, *, hash_algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    """Sign ``data`` as cosign does for a legacy ``.sig`` layer.

    cosign loads the leaf's verifier with ``signature.LoadVerifier(pub, crypto.SHA256)``: ECDSA on any
    curve with SHA-256 (ASN.1 DER signature), RSA PKCS#1 v1.5 with SHA-256, and pure Ed25519.
    ``hash_algorithm`` overrides SHA-256 (to build a signature cosign would reject).
    """
    algorithm = hash_algorithm or hashes.SHA256()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(algorithm))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), algorithm)
    return key.sign(data)


def spki_der(key: SigningKey | x509.Certificate) -> bytes:
    """The DER SubjectPublicKeyInfo of a private key's public half, or of a certificate's key."""
    public = key.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def certificate_pem(certificate: x509.Certificate) -> str:
    """PEM text, with the trailing newline Go's ``pem.Encode`` writes."""
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def b64(data: bytes) -> str:
    """Standard base64 with padding (Go's ``base64.StdEncoding``)."""
    return base64.b64encode(data).decode("ascii")


def _protobuf_time(moment: datetime) -> str:
    """A protobuf-JSON timestamp: ``2021-01-12T11:53:27Z`` or ``2022-12-31T23:59:59.999Z``."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond % 1000 == 0 and moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    elif moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def _require_utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() != timedelta(0):
        raise ValueError(f"{what} must be a timezone-aware UTC datetime, got {moment!r}")
    return moment


def _whole_seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _unix_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


# --- DER and TLS encodings written by hand (small and exact)


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def der_octet_string(data: bytes) -> bytes:
    """DER ``OCTET STRING``."""
    return b"\x04" + _der_length(len(data)) + data


def der_utf8_string(text: str) -> bytes:
    """DER ``UTF8String``, as Go's ``asn1.MarshalWithParams(s, "utf8")`` writes it."""
    raw = text.encode("utf-8")
    return b"\x0c" + _der_length(len(raw)) + raw


def _tls_vector(data: bytes, length_bytes: int) -> bytes:
    if len(data) >= 1 << (8 * length_bytes):
        raise ValueError(f"TLS vector of {len(data)} bytes does not fit a {length_bytes}-byte length")
    return len(data).to_bytes(length_bytes, "big") + data


# --- keys of the logs


@dataclass(frozen=True)
class LogKey:
    """A transparency log (CT or Rekor): its signing key, URL and trust-root validity window.

    The log ID is the SHA-256 of the DER SubjectPublicKeyInfo, as for production logs.
    """

    private_key: LogSigningKey
    base_url: str
    valid_from: datetime
    valid_until: datetime | None = None

    @property
    def public_der(self) -> bytes:
        """DER SubjectPublicKeyInfo of the log key."""
        return spki_der(self.private_key)

    @property
    def log_id(self) -> bytes:
        """SHA-256 of the DER SPKI (32 bytes)."""
        return hashlib.sha256(self.public_der).digest()

    @property
    def log_id_hex(self) -> str:
        """The log ID as the cosign bundle's ``logID`` writes it."""
        return self.log_id.hex()

    @property
    def log_id_b64(self) -> str:
        """The log ID as the trusted root's ``logId.keyId`` writes it."""
        return b64(self.log_id)

    @property
    def key_details(self) -> str:
        """The trusted root's ``keyDetails`` for this key."""
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return "PKIX_ED25519"
        size = self.private_key.curve.key_size
        return {256: "PKIX_ECDSA_P256_SHA_256", 384: "PKIX_ECDSA_P384_SHA_384"}[size]

    def sign(self, data: bytes) -> bytes:
        """Sign as the log does: ECDSA with SHA-256 (P-256), SHA-384 (P-384), or pure Ed25519."""
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(data)
        algorithm: hashes.HashAlgorithm = (
            hashes.SHA384() if self.private_key.curve.key_size == 384 else hashes.SHA256()
        )
        return self.private_key.sign(data, ec.ECDSA(algorithm))

    def trusted_root_entry(self) -> dict[str, JSONValue]:
        """This log as a ``tlogs``/``ctlogs`` entry of trusted_root.json (production key order)."""
        valid_for: dict[str, JSONValue] = {"start": _protobuf_time(self.valid_from)}
        if self.valid_until is not None:
            valid_for["end"] = _protobuf_time(self.valid_until)
        return {
            "baseUrl": self.base_url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": b64(self.public_der),
                "keyDetails": self.key_details,
                "validFor": valid_for,
            },
            "logId": {"keyId": self.log_id_b64},
        }


# --- the Fulcio CA


@dataclass(frozen=True)
class FulcioCA:
    """A Fulcio certificate authority: a root and (usually) an intermediate that issues leaves.

    ``valid_from``/``valid_until`` are the trust root's ``validFor`` window for this CA.
    """

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey | None
    intermediate: x509.Certificate | None
    valid_from: datetime
    valid_until: datetime | None = None
    uri: str = FULCIO_URL

    @property
    def issuing_key(self) -> ec.EllipticCurvePrivateKey:
        """The key that signs leaves: the intermediate's, or the root's for a one-tier CA."""
        return self.intermediate_key if self.intermediate_key is not None else self.root_key

    @property
    def issuing_certificate(self) -> x509.Certificate:
        """The certificate that issues leaves."""
        return self.intermediate if self.intermediate is not None else self.root

    @property
    def chain(self) -> list[x509.Certificate]:
        """Issuing certificate first, root last (the order of the chain annotation and certChain)."""
        return [self.intermediate, self.root] if self.intermediate is not None else [self.root]

    def chain_pem(self) -> str:
        """The ``dev.sigstore.cosign/chain`` value: the PEMs concatenated, without a final newline.

        Production cosign writes exactly this (see the real annotations).
        """
        return "".join(certificate_pem(cert) for cert in self.chain).removesuffix("\n")

    def trusted_root_entry(self) -> dict[str, JSONValue]:
        """This CA as a ``certificateAuthorities`` entry of trusted_root.json (production key order)."""
        subject = self.root.subject
        valid_for: dict[str, JSONValue] = {"start": _protobuf_time(self.valid_from)}
        if self.valid_until is not None:
            valid_for["end"] = _protobuf_time(self.valid_until)
        return {
            "subject": {
                "organization": _name_value(subject, NameOID.ORGANIZATION_NAME),
                "commonName": _name_value(subject, NameOID.COMMON_NAME),
            },
            "uri": self.uri,
            "certChain": {
                "certificates": [
                    {"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))} for cert in self.chain
                ]
            },
            "validFor": valid_for,
        }


def _name_value(name: x509.Name, oid: ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def _sigstore_name(organization: str, common_name: str) -> x509.Name:
    # Fulcio's CA names are PrintableStrings (tag 0x13), not cryptography's default UTF8String.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization, _ASN1Type.PrintableString),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name, _ASN1Type.PrintableString),
        ]
    )


def build_ca(
    *,
    not_before: datetime,
    not_after: datetime,
    intermediate_not_before: datetime | None = None,
    intermediate: bool = True,
    organization: str = "sigstore.dev",
    common_name: str = "sigstore",
    root_path_length: int | None = None,
    intermediate_path_length: int | None = 0,
    intermediate_code_signing: bool = True,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    uri: str = FULCIO_URL,
) -> FulcioCA:
    """A Fulcio-like CA (P-384 keys, ECDSA-SHA384), shaped like production's root v2 and intermediate.

    Root: ``O=sigstore.dev, CN=sigstore``; keyUsage certSign+cRLSign (critical), basicConstraints CA
    (critical; no pathlen in production, ``root_path_length`` sets one), SKI, AKI = own SKI.
    Intermediate: ``CN=sigstore-intermediate``; keyUsage (critical), EKU codeSigning, basicConstraints CA
    pathlen 0 (critical), SKI, AKI = root SKI; valid until the root's notAfter.
    ``valid_from`` (the trust root's validFor start) defaults to the issuing certificate's notBefore.
    """
    root_key = ec.generate_private_key(ec.SECP384R1())
    root_name = _sigstore_name(organization, common_name)
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    ca_usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_whole_seconds(not_before))
        .not_valid_after(_whole_seconds(not_after))
        .add_extension(ca_usage, critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=root_path_length), critical=True)
        .add_extension(root_ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False
        )
        .sign(root_key, hashes.SHA384())
    )
    if not intermediate:
        return FulcioCA(root_key, root, None, None, valid_from or root.not_valid_before_utc, valid_until, uri)

    inter_key = ec.generate_private_key(ec.SECP384R1())
    inter_not_before = intermediate_not_before or not_before
    builder = (
        x509.CertificateBuilder()
        .subject_name(_sigstore_name(organization, f"{common_name}-intermediate"))
        .issuer_name(root_name)
        .public_key(inter_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_whole_seconds(inter_not_before))
        .not_valid_after(_whole_seconds(not_after))
        .add_extension(ca_usage, critical=True)
    )
    if intermediate_code_signing:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
        )
    inter = (
        builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=intermediate_path_length), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False
        )
        .sign(root_key, hashes.SHA384())
    )
    return FulcioCA(
        root_key, root, inter_key, inter, valid_from or inter.not_valid_before_utc, valid_until, uri
    )


# --- identities and leaves


@dataclass(frozen=True)
class Identity:
    """Who the leaf certificate says signed: the SAN, the OIDC issuer, and any CI claims.

    ``claims`` is keyed by the names in :data:`FULCIO_CLAIMS` (``githubWorkflowRepository``,
    ``sourceRepositoryRef`` ...); they are written in Fulcio's order, each with Fulcio's encoding.
    """

    subject: str
    issuer: str
    san: SanKind = "email"
    claims: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.claims) - set(FULCIO_CLAIMS)
        if unknown:
            raise ValueError(f"unknown Fulcio claims: {sorted(unknown)}")

    @classmethod
    def email(cls, address: str, issuer: str = GITHUB_OAUTH_ISSUER) -> Identity:
        """An email identity (SAN rfc822Name), as for an interactive GitHub/Google login."""
        return cls(address, issuer, "email")

    @classmethod
    def uri(cls, uri: str, issuer: str, claims: Mapping[str, str] | None = None) -> Identity:
        """A URI identity (SAN uniformResourceIdentifier)."""
        return cls(uri, issuer, "uri", dict(claims or {}))

    @classmethod
    def username(cls, name: str, issuer: str) -> Identity:
        """A Fulcio username identity (SAN otherName 1.3.6.1.4.1.57264.1.7, UTF8String)."""
        return cls(name, issuer, "username")

    @classmethod
    def github_workflow(
        cls,
        repository: str = "acme/app",
        workflow: str = ".github/workflows/release.yml",
        ref: str = "refs/heads/main",
        *,
        sha: str = "4b0f0b5c0b1e2f4e8f9a6d3c2b1a09f8e7d6c5b4",
        trigger: str = "push",
        workflow_name: str = "Release",
        visibility: str = "public",
    ) -> Identity:
        """A GitHub Actions workflow identity with every claim Fulcio writes for one."""
        owner = repository.split("/", 1)[0]
        san = f"https://github.com/{repository}/{workflow}@{ref}"
        return cls(
            san,
            GITHUB_ACTIONS_ISSUER,
            "uri",
            {
                "githubWorkflowTrigger": trigger,
                "githubWorkflowSHA": sha,
                "githubWorkflowName": workflow_name,
                "githubWorkflowRepository": repository,
                "githubWorkflowRef": ref,
                "buildSignerURI": san,
                "buildSignerDigest": sha,
                "runnerEnvironment": "github-hosted",
                "sourceRepositoryURI": f"https://github.com/{repository}",
                "sourceRepositoryDigest": sha,
                "sourceRepositoryRef": ref,
                "sourceRepositoryIdentifier": "123456789",
                "sourceRepositoryOwnerURI": f"https://github.com/{owner}",
                "sourceRepositoryOwnerIdentifier": "987654",
                "buildConfigURI": san,
                "buildConfigDigest": sha,
                "buildTrigger": trigger,
                "runInvocationURI": f"https://github.com/{repository}/actions/runs/1/attempts/1",
                "sourceRepositoryVisibilityAtSigning": visibility,
            },
        )

    def general_name(self) -> x509.GeneralName:
        """The SAN entry for this identity."""
        if self.san == "email":
            return x509.RFC822Name(self.subject)
        if self.san == "uri":
            return x509.UniformResourceIdentifier(self.subject)
        # Fulcio: OtherName{type-id .1.7, [0] EXPLICIT UTF8String}; cryptography adds the [0] wrapper.
        return x509.OtherName(OID_FULCIO_USERNAME, der_utf8_string(self.subject))


DEFAULT_IDENTITY = Identity.email("alice@example.com", GITHUB_OAUTH_ISSUER)


def sct_signed_data(*, timestamp_ms: int, issuer_key_hash: bytes, tbs: bytes, entry_type: int = 1) -> bytes:
    """The RFC 6962 ``digitally-signed`` struct a CT log signs for a precertificate SCT.

    version v1 (0), signature_type certificate_timestamp (0), uint64 ms timestamp, entry_type
    precert_entry (1), issuer_key_hash = SHA-256 of the issuer's DER SPKI, the TBS with a 3-byte length,
    and empty extensions (2-byte length 0).
    """
    return (
        b"\x00\x00"
        + timestamp_ms.to_bytes(8, "big")
        + entry_type.to_bytes(2, "big")
        + issuer_key_hash
        + _tls_vector(tbs, 3)
        + _tls_vector(b"", 2)
    )


def encode_sct(
    *, log_id: bytes, timestamp_ms: int, signature: bytes, hash_alg: int = 4, sig_alg: int = 3
) -> bytes:
    """One serialized SCT (RFC 6962 3.2): v1, log id, timestamp, no extensions, digitally-signed.

    ``hash_alg`` 4 is sha256 and ``sig_alg`` 3 is ecdsa (TLS 1.2 registry).
    """
    if len(log_id) != 32:
        raise ValueError("a CT log ID is 32 bytes")
    return (
        b"\x00"
        + log_id
        + timestamp_ms.to_bytes(8, "big")
        + _tls_vector(b"", 2)
        + bytes([hash_alg, sig_alg])
        + _tls_vector(signature, 2)
    )


def sct_list_extension(scts: Sequence[bytes]) -> x509.UnrecognizedExtension:
    """The embedded-SCT-list extension: an OCTET STRING holding the TLS SignedCertificateTimestampList."""
    body = b"".join(_tls_vector(sct, 2) for sct in scts)
    return x509.UnrecognizedExtension(OID_SCT_LIST, der_octet_string(_tls_vector(body, 2)))


@dataclass(frozen=True)
class Leaf:
    """A Fulcio leaf and its ephemeral key.

    ``precertificate`` is the first build, without the SCT extension: what the SCT signs over.
    """

    certificate: x509.Certificate
    private_key: SigningKey
    key_type: KeyType | None
    identity: Identity
    ca: FulcioCA
    precertificate: x509.Certificate
    sct_timestamp: datetime | None

    @property
    def pem(self) -> str:
        """The ``dev.sigstore.cosign/certificate`` value."""
        return certificate_pem(self.certificate)


def issue_leaf(
    ca: FulcioCA,
    ct_log: LogKey,
    identity: Identity = DEFAULT_IDENTITY,
    *,
    issued_at: datetime,
    key_type: KeyType = KeyType.ECDSA_P256,
    private_key: SigningKey | None = None,
    validity: timedelta = LEAF_VALIDITY,
    sct: bool = True,
    sct_signing_key: LogSigningKey | None = None,
    sct_timestamp: datetime | None = None,
    sct_entry_type: int = 1,
    sct_issuer_key_hash: bytes | None = None,
    issuer_extensions: IssuerExtensions = "both",
    key_usage: x509.KeyUsage | None = None,
    eku: Sequence[ObjectIdentifier] | None = (ExtendedKeyUsageOID.CODE_SIGNING,),
    san: bool = True,
    extra_extensions: Sequence[x509.Extension[x509.ExtensionType]] = (),
    cert_signing_key: ec.EllipticCurvePrivateKey | None = None,
    serial_number: int | None = None,
) -> Leaf:
    """Issue a Fulcio leaf as production does, with an embedded precertificate SCT.

    Extensions, in production order: keyUsage digitalSignature (critical), EKU codeSigning, SKI, AKI,
    SAN (critical), issuer .1.1 (raw), GitHub claims .1.2-.1.6 (raw), issuer .1.8 (DER UTF8String),
    claims .1.9+ (DER UTF8String), ``extra_extensions``, then LAST the SCT list. Subject is empty.
    The certificate is built once without the SCT; the CT log signs that TBS (RFC 6962); the final
    certificate is the same TBS with the SCT extension appended (asserted).

    Knobs for tamper tests: ``sct=False`` omits the SCT; ``sct_signing_key`` signs it with another key
    (the log ID still names ``ct_log``); ``sct_entry_type``/``sct_issuer_key_hash`` sign a different
    struct; ``issuer_extensions`` keeps both, only .1.1, only .1.8, or none; ``eku=None`` drops the EKU
    (or give other OIDs); ``key_usage`` replaces keyUsage; ``san=False`` drops the SAN;
    ``cert_signing_key`` signs the leaf with a key other than the CA's (a broken chain link).
    """
    _require_utc(issued_at, "issued_at")
    key = private_key if private_key is not None else generate_key(key_type)
    not_before = _whole_seconds(issued_at)
    issuer_cert = ca.issuing_certificate
    issuer_ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value

    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial_number if serial_number is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + validity)
        .add_extension(key_usage or _digital_signature_usage(), critical=True)
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
    ).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([identity.general_name()]), critical=True)
    for extension in _fulcio_extensions(identity, issuer_extensions):
        builder = builder.add_extension(extension, critical=False)
    for extra in extra_extensions:
        builder = builder.add_extension(extra.value, critical=extra.critical)

    signer = cert_signing_key if cert_signing_key is not None else ca.issuing_key
    precert = builder.sign(signer, hashes.SHA384())
    if not sct:
        return Leaf(precert, key, key_type if private_key is None else None, identity, ca, precert, None)

    stamp = sct_timestamp if sct_timestamp is not None else issued_at + SCT_DELAY
    stamp_ms = _unix_ms(_require_utc(stamp, "sct_timestamp"))
    key_hash = sct_issuer_key_hash or hashlib.sha256(spki_der(issuer_cert)).digest()
    signed = sct_signed_data(
        timestamp_ms=stamp_ms,
        issuer_key_hash=key_hash,
        tbs=precert.tbs_certificate_bytes,
        entry_type=sct_entry_type,
    )
    sct_key = sct_signing_key if sct_signing_key is not None else ct_log.private_key
    sct_signature = (
        sct_key.sign(signed)
        if isinstance(sct_key, ed25519.Ed25519PrivateKey)
        else sct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    )
    sct_alg = 7 if isinstance(sct_key, ed25519.Ed25519PrivateKey) else 3
    serialized = encode_sct(
        log_id=ct_log.log_id, timestamp_ms=stamp_ms, signature=sct_signature, hash_alg=4, sig_alg=sct_alg
    )
    final = builder.add_extension(sct_list_extension([serialized]), critical=False).sign(
        signer, hashes.SHA384()
    )
    if final.tbs_precertificate_bytes != precert.tbs_certificate_bytes:
        raise AssertionError("the final TBS minus the SCT extension differs from the precertificate TBS")
    return Leaf(
        final,
        key,
        key_type if private_key is None else None,
        identity,
        ca,
        precert,
        datetime.fromtimestamp(stamp_ms / 1000, UTC),
    )


def _digital_signature_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _claim_extension(name: str, value: str) -> x509.UnrecognizedExtension:
    arc, der = FULCIO_CLAIMS[name]
    raw = der_utf8_string(value) if der else value.encode("utf-8")
    return x509.UnrecognizedExtension(ObjectIdentifier(f"1.3.6.1.4.1.57264.1.{arc}"), raw)


def _fulcio_extensions(
    identity: Identity, issuer_extensions: IssuerExtensions
) -> list[x509.UnrecognizedExtension]:
    """Fulcio's ``Extensions.Render`` order: .1.1, .1.2-.1.6, .1.8, .1.9-.1.22."""
    ordered = sorted(identity.claims.items(), key=lambda item: FULCIO_CLAIMS[item[0]][0])
    out: list[x509.UnrecognizedExtension] = []
    if issuer_extensions in ("both", "v1"):
        out.append(x509.UnrecognizedExtension(OID_FULCIO_ISSUER_V1, identity.issuer.encode("utf-8")))
    out.extend(_claim_extension(name, value) for name, value in ordered if not FULCIO_CLAIMS[name][1])
    if issuer_extensions in ("both", "v2"):
        out.append(x509.UnrecognizedExtension(OID_FULCIO_ISSUER_V2, der_utf8_string(identity.issuer)))
    out.extend(_claim_extension(name, value) for name, value in ordered if FULCIO_CLAIMS[name][1])
    return out


# --- the simple-signing payload and Rekor


def payload_bytes(
    digest: str, docker_reference: str, annotations: Mapping[str, JSONValue] | None = None
) -> bytes:
    """cosign's simple-signing payload, byte for byte as ``json.Marshal`` writes it.

    ``{"critical":{"identity":{"docker-reference":...},"image":{"docker-manifest-digest":...},
    "type":"cosign container image signature"},"optional":null}``; ``optional`` is the annotations map
    (keys sorted, as Go sorts map keys) when given.
    """
    document: dict[str, JSONValue] = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": SIMPLESIGNING_TYPE,
        },
        "optional": sorted_map(annotations) if annotations is not None else None,
    }
    return go_json(document)


def hashedrekord_body(*, payload: bytes, signature: bytes, certificate_pem_text: str) -> bytes:
    """A canonical ``hashedrekord`` 0.0.1 entry body, as Rekor returns it for a cosign signature.

    ``spec.data.hash`` is the SHA-256 of the payload; ``signature.publicKey.content`` is the base64 of
    the leaf PEM.
    """
    return go_json(
        {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
                "signature": {
                    "content": b64(signature),
                    "publicKey": {"content": b64(certificate_pem_text.encode("ascii"))},
                },
            },
        }
    )


def rekord_body(*, payload: bytes, signature: bytes, certificate_pem_text: str) -> bytes:
    """A canonical ``rekord`` 0.0.1 entry body (the 2021 kind): x509 format, data by hash only."""
    return go_json(
        {
            "apiVersion": "0.0.1",
            "kind": "rekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
                "signature": {
                    "content": b64(signature),
                    "format": "x509",
                    "publicKey": {"content": b64(certificate_pem_text.encode("ascii"))},
                },
            },
        }
    )


def rekor_body(kind: RekorKind, *, payload: bytes, signature: bytes, certificate_pem_text: str) -> bytes:
    """The entry body of ``kind`` (``hashedrekord`` or ``rekord``)."""
    build = hashedrekord_body if kind == "hashedrekord" else rekord_body
    return build(payload=payload, signature=signature, certificate_pem_text=certificate_pem_text)


def set_payload(*, body_b64: str, integrated_time: int, log_index: int, log_id_hex: str) -> bytes:
    """What Rekor signs for a SignedEntryTimestamp: the canonical JSON (sorted keys, no spaces)."""
    return json.dumps(
        {"body": body_b64, "integratedTime": integrated_time, "logID": log_id_hex, "logIndex": log_index},
        sort_keys=True,
        separators=(",", ":"),
    ).encode("utf-8")


@dataclass(frozen=True)
class CosignBundle:
    """The ``dev.sigstore.cosign/bundle`` annotation (cosign's ``RekorBundle``)."""

    signed_entry_timestamp: str  # base64
    body: str  # base64 of the entry body
    integrated_time: int
    log_index: int
    log_id: str  # hex

    @property
    def body_bytes(self) -> bytes:
        """The decoded entry body."""
        return base64.b64decode(self.body)

    def set_payload(self) -> bytes:
        """The bytes the SET signs."""
        return set_payload(
            body_b64=self.body,
            integrated_time=self.integrated_time,
            log_index=self.log_index,
            log_id_hex=self.log_id,
        )

    def to_json(self) -> str:
        """As cosign writes it: Go struct order, compact."""
        return go_json(
            {
                "SignedEntryTimestamp": self.signed_entry_timestamp,
                "Payload": {
                    "body": self.body,
                    "integratedTime": self.integrated_time,
                    "logIndex": self.log_index,
                    "logID": self.log_id,
                },
            }
        ).decode("utf-8")

    @classmethod
    def from_json(cls, text: str) -> CosignBundle:
        """Parse an annotation value (test helper: trusts its input's shape)."""
        raw = json.loads(text)
        payload = raw["Payload"]
        return cls(
            raw["SignedEntryTimestamp"],
            payload["body"],
            payload["integratedTime"],
            payload["logIndex"],
            payload["logID"],
        )


def annotations_with(annotations: Mapping[str, str], key: str, value: str | None) -> dict[str, str]:
    """``annotations`` with ``key`` set to ``value`` (removed for ``None``), sorted as cosign writes them."""
    changed = dict(annotations)
    if value is None:
        changed.pop(key, None)
    else:
        changed[key] = value
    return dict(sorted(changed.items()))


@dataclass(frozen=True)
class SignedLayer:
    """One cosign simple-signing layer: the payload blob, its annotations, and what made them.

    Instances are immutable; the ``with_*`` methods return changed copies without re-signing anything,
    and :class:`SigstoreKit` re-signs what is downstream of a change (:meth:`SigstoreKit.resign_payload`,
    :meth:`SigstoreKit.rebundle`).
    """

    payload: bytes
    annotations: dict[str, str]
    leaf: Leaf
    rekor: LogKey | None

    @property
    def digest(self) -> Digest:
        """The layer digest: SHA-256 of the payload blob."""
        return Digest.of(self.payload)

    @property
    def signature(self) -> bytes:
        """The decoded ``dev.cosignproject.cosign/signature``."""
        return base64.b64decode(self.annotations[ANNOTATION_SIGNATURE])

    @property
    def bundle(self) -> CosignBundle | None:
        """The parsed bundle annotation, if any."""
        text = self.annotations.get(ANNOTATION_BUNDLE)
        return CosignBundle.from_json(text) if text is not None else None

    def with_annotation(self, key: str, value: str | None) -> SignedLayer:
        """A copy with one annotation set (or removed, for ``None``); nothing re-signed."""
        return replace(self, annotations=annotations_with(self.annotations, key, value))

    def with_payload(self, payload: bytes) -> SignedLayer:
        """A copy with other payload bytes; the signature and bundle are left as they were."""
        return replace(self, payload=payload)

    def with_bundle(self, bundle: CosignBundle) -> SignedLayer:
        """A copy whose bundle annotation is ``bundle`` (its SET is not recomputed)."""
        return self.with_annotation(ANNOTATION_BUNDLE, bundle.to_json())

    def to_signature(self, source: str = "kit") -> Signature:
        """The layer as the registry layer would hand it to the verifier."""
        return Signature(
            kind="simplesigning",
            payload=self.payload,
            annotations=dict(self.annotations),
            layer_digest=self.digest,
            source=source,
        )


# --- the kit


class SigstoreKit:
    """A private Sigstore, generated at construction relative to ``now`` (tz-aware UTC).

    Holds a Fulcio CA (:attr:`ca`), a CT log (:attr:`ct_log`) and a Rekor log (:attr:`rekor`), all
    valid around ``now`` with windows shaped like production's. Nothing is written anywhere.
    """

    def __init__(self, now: datetime) -> None:
        self.now = _require_utc(now, "now")
        self.ca = self.new_ca()
        self.ct_log = self.new_log_key(CTFE_URL)
        self.rekor = self.new_log_key(REKOR_URL)
        self._log_indexes: Iterator[int] = itertools.count(10_000_000 + secrets.randbelow(90_000_000))

    # -- trust material

    def new_ca(
        self,
        *,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        intermediate_not_before: datetime | None = None,
        intermediate: bool = True,
        root_path_length: int | None = None,
        intermediate_path_length: int | None = 0,
        intermediate_code_signing: bool = True,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        common_name: str = "sigstore",
        uri: str = FULCIO_URL,
    ) -> FulcioCA:
        """A new CA, not in the trust root unless passed to :meth:`trusted_root_json`.

        Defaults follow production's shape around ``now``: root from a year ago for ten years,
        intermediate from 180 days ago to the root's end. For an expired CA pass e.g.
        ``not_before=now - 4y, not_after=now - 1y, valid_until=now - 1y``.
        """
        root_from = not_before or self.now - timedelta(days=365)
        return build_ca(
            not_before=root_from,
            not_after=not_after or self.now + timedelta(days=3650),
            intermediate_not_before=intermediate_not_before
            or (None if not_before else self.now - timedelta(days=180)),
            intermediate=intermediate,
            root_path_length=root_path_length,
            intermediate_path_length=intermediate_path_length,
            intermediate_code_signing=intermediate_code_signing,
            valid_from=valid_from,
            valid_until=valid_until,
            common_name=common_name,
            uri=uri,
        )

    def new_log_key(
        self,
        base_url: str,
        *,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        ed25519_key: bool = False,
    ) -> LogKey:
        """A new log key (ECDSA P-256, or Ed25519 like Rekor v2), valid from a year before ``now``."""
        key: LogSigningKey = (
            ed25519.Ed25519PrivateKey.generate() if ed25519_key else ec.generate_private_key(ec.SECP256R1())
        )
        return LogKey(key, base_url, valid_from or self.now - timedelta(days=365), valid_until)

    def trusted_root(
        self,
        *,
        cas: Sequence[FulcioCA] | None = None,
        tlogs: Sequence[LogKey] | None = None,
        ctlogs: Sequence[LogKey] | None = None,
        extra_cas: Sequence[FulcioCA] = (),
        timestamp_authorities: Sequence[dict[str, JSONValue]] = (),
    ) -> dict[str, JSONValue]:
        """The trusted root as a dict, in production's key order (see :meth:`trusted_root_json`)."""
        return {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [log.trusted_root_entry() for log in (tlogs if tlogs is not None else [self.rekor])],
            "certificateAuthorities": [
                ca.trusted_root_entry() for ca in [*(cas if cas is not None else [self.ca]), *extra_cas]
            ],
            "ctlogs": [log.trusted_root_entry() for log in (ctlogs if ctlogs is not None else [self.ct_log])],
            "timestampAuthorities": list(timestamp_authorities),
        }

    def trusted_root_json(
        self,
        *,
        cas: Sequence[FulcioCA] | None = None,
        tlogs: Sequence[LogKey] | None = None,
        ctlogs: Sequence[LogKey] | None = None,
        extra_cas: Sequence[FulcioCA] = (),
        timestamp_authorities: Sequence[dict[str, JSONValue]] = (),
    ) -> bytes:
        """A Sigstore ``trusted_root.json`` with the kit's CA, Rekor and CT log, laid out as production's.

        ``cas``/``tlogs``/``ctlogs`` replace the kit's own (e.g. to rotate a key: ``ctlogs=[old, new]``);
        ``extra_cas`` adds CAs after them (e.g. an expired one). Pretty-printed with two spaces and a
        final newline, like the file sigstore-python ships.
        """
        document = self.trusted_root(
            cas=cas,
            tlogs=tlogs,
            ctlogs=ctlogs,
            extra_cas=extra_cas,
            timestamp_authorities=timestamp_authorities,
        )
        return (json.dumps(document, indent=2) + "\n").encode("utf-8")

    # -- leaves

    def issue_leaf(
        self,
        identity: Identity = DEFAULT_IDENTITY,
        *,
        issued_at: datetime | None = None,
        ca: FulcioCA | None = None,
        ct_log: LogKey | None = None,
        key_type: KeyType = KeyType.ECDSA_P256,
        private_key: SigningKey | None = None,
        validity: timedelta = LEAF_VALIDITY,
        sct: bool = True,
        sct_signing_key: LogSigningKey | None = None,
        sct_timestamp: datetime | None = None,
        sct_entry_type: int = 1,
        sct_issuer_key_hash: bytes | None = None,
        issuer_extensions: IssuerExtensions = "both",
        key_usage: x509.KeyUsage | None = None,
        eku: Sequence[ObjectIdentifier] | None = (ExtendedKeyUsageOID.CODE_SIGNING,),
        san: bool = True,
        extra_extensions: Sequence[x509.Extension[x509.ExtensionType]] = (),
        cert_signing_key: ec.EllipticCurvePrivateKey | None = None,
        serial_number: int | None = None,
    ) -> Leaf:
        """A Fulcio leaf from the kit's CA (or ``ca``) with an SCT from its CT log (or ``ct_log``).

        ``issued_at`` (notBefore) defaults to the default sign time minus :data:`LEAF_AGE_AT_SIGNING`.
        See :func:`issue_leaf` for the knobs.
        """
        return issue_leaf(
            ca or self.ca,
            ct_log or self.ct_log,
            identity,
            issued_at=issued_at or self.default_sign_time() - LEAF_AGE_AT_SIGNING,
            key_type=key_type,
            private_key=private_key,
            validity=validity,
            sct=sct,
            sct_signing_key=sct_signing_key,
            sct_timestamp=sct_timestamp,
            sct_entry_type=sct_entry_type,
            sct_issuer_key_hash=sct_issuer_key_hash,
            issuer_extensions=issuer_extensions,
            key_usage=key_usage,
            eku=eku,
            san=san,
            extra_extensions=extra_extensions,
            cert_signing_key=cert_signing_key,
            serial_number=serial_number,
        )

    # -- Rekor

    def default_sign_time(self) -> datetime:
        """When signatures are made unless told otherwise: :data:`DEFAULT_SIGNING_AGE` before ``now``."""
        return _whole_seconds(self.now - DEFAULT_SIGNING_AGE)

    def next_log_index(self) -> int:
        """A fresh, increasing log index."""
        return next(self._log_indexes)

    def make_set(
        self,
        body: bytes | str,
        integrated_time: int,
        log_index: int,
        *,
        log_id: str | None = None,
        rekor: LogKey | None = None,
    ) -> str:
        """A SignedEntryTimestamp (base64) by ``rekor`` (default the kit's) over these fields.

        ``body`` is the entry body (bytes) or its base64 text, as the bundle carries it. ``log_id``
        defaults to the signing log's ID; pass another to sign a mismatched one.
        """
        log = rekor or self.rekor
        data = set_payload(
            body_b64=b64(body) if isinstance(body, bytes) else body,
            integrated_time=integrated_time,
            log_index=log_index,
            log_id_hex=log_id if log_id is not None else log.log_id_hex,
        )
        return b64(log.sign(data))

    def make_bundle(
        self,
        body: bytes,
        *,
        integrated_time: int,
        log_index: int | None = None,
        log_id: str | None = None,
        rekor: LogKey | None = None,
    ) -> CosignBundle:
        """A bundle for ``body`` with a valid SET by ``rekor`` (default the kit's)."""
        log = rekor or self.rekor
        index = log_index if log_index is not None else self.next_log_index()
        logid = log_id if log_id is not None else log.log_id_hex
        body_b64 = b64(body)
        return CosignBundle(
            self.make_set(body_b64, integrated_time, index, log_id=logid, rekor=log),
            body_b64,
            integrated_time,
            index,
            logid,
        )

    def rebundle(
        self,
        layer: SignedLayer,
        *,
        body: bytes | None = None,
        integrated_time: int | None = None,
        log_index: int | None = None,
        log_id: str | None = None,
        rekor: LogKey | None = None,
    ) -> SignedLayer:
        """Change bundle fields and re-sign the SET over them, so only the changed field is wrong.

        Unset fields keep the layer's current values; ``rekor`` picks the signing log (default: the
        layer's). The layer must already carry a bundle.
        """
        current = layer.bundle
        if current is None:
            raise ValueError("the layer has no bundle; sign it with tlog=True")
        log = rekor or layer.rekor or self.rekor
        bundle = self.make_bundle(
            body if body is not None else current.body_bytes,
            integrated_time=integrated_time if integrated_time is not None else current.integrated_time,
            log_index=log_index if log_index is not None else current.log_index,
            log_id=log_id if log_id is not None else current.log_id,
            rekor=log,
        )
        return replace(layer.with_bundle(bundle), rekor=log)

    # -- cosign layers

    def sign_image(
        self,
        digest: str,
        docker_reference: str,
        *,
        identity: Identity = DEFAULT_IDENTITY,
        annotations: Mapping[str, JSONValue] | None = None,
        key_type: KeyType = KeyType.ECDSA_P256,
        sign_time: datetime | None = None,
        leaf: Leaf | None = None,
        ca: FulcioCA | None = None,
        payload: bytes | None = None,
        chain: bool = True,
        tlog: bool = True,
        rekor_kind: RekorKind = "hashedrekord",
        rekor: LogKey | None = None,
        integrated_time: datetime | None = None,
        log_index: int | None = None,
    ) -> SignedLayer:
        """Sign ``digest`` as ``cosign sign`` (keyless) does and return the layer it would push.

        ``sign_time`` (default a minute before ``now``) is when the payload was signed and logged; the
        leaf is issued :data:`LEAF_AGE_AT_SIGNING` earlier unless ``leaf`` is given (issue one with
        :meth:`issue_leaf` to use its knobs). ``payload`` replaces the generated payload bytes.
        ``chain=False`` leaves out the chain annotation (as 2021 cosign did); ``tlog=False`` leaves out
        the bundle. ``rekor_kind`` picks ``hashedrekord`` (current) or ``rekord`` (2021).
        ``integrated_time``/``log_index`` override the log's values (the SET still verifies).
        """
        when = _require_utc(sign_time, "sign_time") if sign_time is not None else self.default_sign_time()
        the_leaf = leaf or self.issue_leaf(
            identity, issued_at=when - LEAF_AGE_AT_SIGNING, ca=ca, key_type=key_type
        )
        blob = payload if payload is not None else payload_bytes(digest, docker_reference, annotations)
        signature = sign_bytes(the_leaf.private_key, blob)
        values: dict[str, str] = {
            ANNOTATION_SIGNATURE: b64(signature),
            ANNOTATION_CERTIFICATE: the_leaf.pem,
        }
        if chain:
            values[ANNOTATION_CHAIN] = the_leaf.ca.chain_pem()
        log = rekor or self.rekor
        if tlog:
            body = rekor_body(
                rekor_kind, payload=blob, signature=signature, certificate_pem_text=the_leaf.pem
            )
            logged_at = (
                _require_utc(integrated_time, "integrated_time") if integrated_time is not None else when
            )
            bundle = self.make_bundle(
                body, integrated_time=int(logged_at.timestamp()), log_index=log_index, rekor=log
            )
            values[ANNOTATION_BUNDLE] = bundle.to_json()
        return SignedLayer(blob, dict(sorted(values.items())), the_leaf, log if tlog else None)

    def resign_payload(self, layer: SignedLayer, payload: bytes, *, tlog: bool = True) -> SignedLayer:
        """Replace the payload and re-sign everything downstream: signature, Rekor body and SET.

        The Rekor kind, integrated time and log index are kept. With ``tlog=False`` the bundle is left
        untouched (so it then describes the old payload).
        """
        signature = sign_bytes(layer.leaf.private_key, payload)
        out = layer.with_payload(payload).with_annotation(ANNOTATION_SIGNATURE, b64(signature))
        current = layer.bundle
        if tlog and current is not None:
            kind: RekorKind = (
                "rekord" if json.loads(current.body_bytes)["kind"] == "rekord" else "hashedrekord"
            )
            pem = layer.annotations.get(ANNOTATION_CERTIFICATE, layer.leaf.pem)
            body = rekor_body(kind, payload=payload, signature=signature, certificate_pem_text=pem)
            out = self.rebundle(out, body=body)
        return out
