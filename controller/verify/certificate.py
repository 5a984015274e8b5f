"""PEM decoding and the Fulcio leaf-certificate profile (checklist step 3).

PEM is decoded here, strictly, rather than by the X.509 library, so that the same DER bytes can be
compared byte for byte wherever a certificate appears twice (the annotation, the Rekor body, the
chain annotation) without parsing it twice.

The leaf profile follows what sigstore-python and cosign require of a Fulcio code-signing
certificate: X.509 v3, keyUsage with digitalSignature, extendedKeyUsage with codeSigning, not a CA,
no critical extension we do not understand, and a public key Fulcio issues for (see
:mod:`controller.verify.keys`).
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from controller.errors import EvidenceError, Reason
from controller.verify.keys import PublicKey, UnsupportedKeyError, leaf_key
from controller.verify.limits import MAX_CACHED_ISSUER_NAMES

_BEGIN: Final = b"-----BEGIN CERTIFICATE-----"
_END: Final = b"-----END CERTIFICATE-----"
_WHITESPACE: Final = frozenset(b" \t\r\n")

# Critical extensions a Fulcio leaf may carry (Fulcio marks keyUsage and, with an empty subject,
# the SAN critical). Any other critical extension is one we do not understand: reject.
_UNDERSTOOD_CRITICAL: Final = frozenset(
    {
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    }
)
# The extensions the profile reads (and step 7's SCTs), picked out in one pass (compared with ==,
# which is much cheaper than hashing these OID objects for a set or dict lookup).
_KEY_USAGE: Final = ExtensionOID.KEY_USAGE
_EXTENDED_KEY_USAGE: Final = ExtensionOID.EXTENDED_KEY_USAGE
_BASIC_CONSTRAINTS: Final = ExtensionOID.BASIC_CONSTRAINTS
_EMBEDDED_SCTS: Final = ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS


_SEQUENCE: Final = 0x30
_INTEGER: Final = 0x02
_VERSION_TAG: Final = 0xA0  # [0] EXPLICIT Version, in a TBSCertificate
# Leaf issuer names seen, by their DER: every leaf of one CA names the same issuer (bounded; see below).
_ISSUER_NAMES: Final[dict[bytes, x509.Name]] = {}


class PemError(ValueError):
    """Raised when text is not a sequence of PEM ``CERTIFICATE`` blocks. Internal."""


def _skip_whitespace(data: bytes, position: int) -> int:
    while position < len(data) and data[position] in _WHITESPACE:
        position += 1
    return position


def pem_to_der(data: bytes, *, max_certificates: int) -> list[bytes]:
    """Decode one or more PEM ``CERTIFICATE`` blocks (only whitespace between and around them).

    Inside a block, the body is standard base64 (strict: alphabet, padding) in lines ended by LF or
    CRLF; nothing else is allowed, not even the RFC 7468 explanatory text.
    """
    out: list[bytes] = []
    position = _skip_whitespace(data, 0)
    while position < len(data):
        if not data.startswith(_BEGIN, position):
            raise PemError("not a PEM CERTIFICATE block")
        start = position + len(_BEGIN)
        end = data.find(_END, start)
        if end < 0:
            raise PemError("unterminated PEM block")
        body = data[start:end]
        if not body.startswith((b"\n", b"\r\n")):
            raise PemError("PEM header is not on its own line")
        if len(out) == max_certificates:
            raise PemError(f"more than {max_certificates} certificates")
        try:
            text = body.replace(b"\n", b"")  # replace is much cheaper than translate
            if b"\r" in text:
                text = text.replace(b"\r", b"")
            der = binascii.a2b_base64(text, strict_mode=True)  # = b64decode(validate=True)
        except binascii.Error as e:
            raise PemError("PEM body is not base64") from e
        if not der:
            raise PemError("empty PEM block")
        out.append(der)
        position = _skip_whitespace(data, end + len(_END))
    if not out:
        raise PemError("no PEM CERTIFICATE block")
    return out


def _element(data: bytes, at: int, tag: int) -> tuple[int, int]:
    """(start of contents, end) of the DER element with ``tag`` at offset ``at``; ValueError if not."""
    if data[at] != tag:
        raise ValueError("unexpected DER tag")
    length = data[at + 1]
    start = at + 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    end = start + length
    if end > len(data):
        raise ValueError("DER element overruns its container")
    return start, end


def tbs_and_issuer(der: bytes) -> tuple[bytes, bytes]:
    """The TBSCertificate and its issuer Name, as DER elements (tag and length included), sliced
    from a certificate's DER.

    Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber INTEGER,
    signature AlgorithmIdentifier, issuer Name, ... }, ... } (RFC 5280, 4.1). ValueError (IndexError
    included) when ``der`` is not shaped so. For DER the X.509 library has accepted (it parses DER
    strictly, so its re-encoding is the input), these are the bytes of ``tbs_certificate_bytes`` and
    ``issuer.public_bytes()``, without re-encoding them.
    """
    position, _ = _element(der, 0, _SEQUENCE)  # Certificate
    tbs_start = position
    position, tbs_end = _element(der, position, _SEQUENCE)  # tbsCertificate
    if der[position] == _VERSION_TAG:
        _, position = _element(der, position, _VERSION_TAG)
    _, position = _element(der, position, _INTEGER)  # serialNumber
    _, position = _element(der, position, _SEQUENCE)  # signature
    _, issuer_end = _element(der, position, _SEQUENCE)  # issuer
    if issuer_end > tbs_end:
        raise ValueError("issuer overruns the TBSCertificate")
    return der[tbs_start:tbs_end], der[position:issuer_end]


def _issuer_name(cert: x509.Certificate, raw: bytes) -> x509.Name:
    """``cert.issuer``, memoized by the issuer's exact DER ``raw``.

    Building the Name object costs more than the rest of parsing the leaf, and every leaf of one CA
    carries the same issuer bytes; equal bytes parse to an equal Name, so the first leaf's Name serves
    for all (a pure function of immutable bytes). Bounded: the memo is emptied when it is full.
    """
    name = _ISSUER_NAMES.get(raw)
    if name is None:
        name = cert.issuer
        if len(_ISSUER_NAMES) >= MAX_CACHED_ISSUER_NAMES:
            _ISSUER_NAMES.clear()
        _ISSUER_NAMES[raw] = name
    return name


@dataclass(frozen=True, slots=True)
class Leaf:
    """A parsed Fulcio leaf: the certificate, its exact DER, its key and its validity window.

    ``embedded_scts`` is the SCT extension's value, read in the same pass over the extensions as
    the profile checks (None when the certificate has no SCT extension). ``pem`` is the exact PEM
    text ``der`` was decoded from, when the leaf came from PEM (:func:`parse_leaf`).
    """

    cert: x509.Certificate
    der: bytes
    tbs: bytes  # the TBSCertificate DER, exactly as signed (sliced from ``der``)
    issuer: x509.Name
    issuer_der: bytes | None  # the issuer Name's DER (sliced from ``der``), when it could be found
    key: PublicKey
    not_before: datetime
    not_after: datetime
    embedded_scts: x509.PrecertificateSignedCertificateTimestamps | None
    pem: bytes | None = None


def parse_leaf(pem: bytes) -> Leaf:
    """Step 3a: parse exactly one PEM certificate. Unparseable -> ``CertificateInvalid``."""
    try:
        (der,) = pem_to_der(pem, max_certificates=1)
    except PemError as e:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, f"certificate annotation: {e}") from e
    return check_leaf_profile(der, pem=pem)


def check_leaf_profile(der: bytes, *, pem: bytes | None = None) -> Leaf:
    """Step 3b: the leaf must be a Fulcio code-signing certificate (see the module docstring).

    ``pem``, when given, is the PEM text that :func:`pem_to_der` decodes to exactly ``[der]``.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
        version = cert.version
        raw_issuer: bytes | None
        try:
            tbs, raw_issuer = tbs_and_issuer(der)
        except (ValueError, IndexError):  # not the shape the library parsed: let it do the work
            tbs, raw_issuer = cert.tbs_certificate_bytes, None
        issuer = cert.issuer if raw_issuer is None else _issuer_name(cert, raw_issuer)
        extensions = cert.extensions
        public_key = cert.public_key()
        not_before = cert.not_valid_before_utc
        not_after = cert.not_valid_after_utc
    except Exception as e:  # malformed DER surfaces as ValueError, KeyError, TypeError ...: fail closed
        raise EvidenceError(Reason.CERTIFICATE_INVALID, f"unparseable certificate: {e!r}") from e
    if version is not x509.Version.v3:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, "not an X.509 v3 certificate")

    # One pass: reject unknown critical extensions, and pick out the ones the profile reads (the
    # library rejects a certificate that repeats an extension, so each OID appears at most once).
    key_usage = eku = constraints = embedded = None
    for extension in extensions:
        oid = extension.oid
        if extension.critical and oid not in _UNDERSTOOD_CRITICAL:
            raise EvidenceError(Reason.CERTIFICATE_INVALID, f"unknown critical extension {oid.dotted_string}")
        if oid == _KEY_USAGE:
            key_usage = extension.value
        elif oid == _EXTENDED_KEY_USAGE:
            eku = extension.value
        elif oid == _BASIC_CONSTRAINTS:
            constraints = extension.value
        elif oid == _EMBEDDED_SCTS:
            embedded = extension.value
    if not isinstance(key_usage, x509.KeyUsage) or not isinstance(eku, x509.ExtendedKeyUsage):
        raise EvidenceError(Reason.CERTIFICATE_INVALID, "keyUsage or extendedKeyUsage missing")
    if not key_usage.digital_signature:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, "keyUsage lacks digitalSignature")
    if ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, "extendedKeyUsage lacks codeSigning")
    if isinstance(constraints, x509.BasicConstraints) and constraints.ca:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, "leaf certificate is a CA")
    try:
        key = leaf_key(public_key)
    except UnsupportedKeyError as e:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, str(e)) from e
    if not isinstance(embedded, x509.PrecertificateSignedCertificateTimestamps):
        embedded = None
    return Leaf(
        cert=cert,
        der=der,
        tbs=tbs,
        issuer=issuer,
        issuer_der=raw_issuer,
        key=key,
        not_before=not_before,
        not_after=not_after,
        embedded_scts=embedded,
        pem=pem,
    )
