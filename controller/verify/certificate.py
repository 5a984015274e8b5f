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

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from controller.errors import EvidenceError, Reason
from controller.verify.keys import PublicKey, UnsupportedKeyError, leaf_key

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
            der = base64.b64decode(body.translate(None, b"\r\n"), validate=True)
        except binascii.Error as e:
            raise PemError("PEM body is not base64") from e
        if not der:
            raise PemError("empty PEM block")
        out.append(der)
        position = _skip_whitespace(data, end + len(_END))
    if not out:
        raise PemError("no PEM CERTIFICATE block")
    return out


@dataclass(frozen=True, slots=True)
class Leaf:
    """A parsed Fulcio leaf: the certificate, its exact DER, its key and its validity window."""

    cert: x509.Certificate
    der: bytes
    issuer: x509.Name
    key: PublicKey
    not_before: datetime
    not_after: datetime


def parse_leaf(pem: bytes) -> Leaf:
    """Step 3a: parse exactly one PEM certificate. Unparseable -> ``CertificateInvalid``."""
    try:
        (der,) = pem_to_der(pem, max_certificates=1)
    except PemError as e:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, f"certificate annotation: {e}") from e
    return check_leaf_profile(der)


def check_leaf_profile(der: bytes) -> Leaf:
    """Step 3b: the leaf must be a Fulcio code-signing certificate (see the module docstring)."""
    try:
        cert = x509.load_der_x509_certificate(der)
        version = cert.version
        issuer = cert.issuer
        extensions = cert.extensions
        public_key = cert.public_key()
        not_before = cert.not_valid_before_utc
        not_after = cert.not_valid_after_utc
    except Exception as e:  # malformed DER surfaces as ValueError, KeyError, TypeError ...: fail closed
        raise EvidenceError(Reason.CERTIFICATE_INVALID, f"unparseable certificate: {e!r}") from e
    if version is not x509.Version.v3:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, "not an X.509 v3 certificate")

    for extension in extensions:
        if extension.critical and extension.oid not in _UNDERSTOOD_CRITICAL:
            raise EvidenceError(
                Reason.CERTIFICATE_INVALID, f"unknown critical extension {extension.oid.dotted_string}"
            )
    try:
        key_usage = extensions.get_extension_for_class(x509.KeyUsage).value
        eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as e:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, "keyUsage or extendedKeyUsage missing") from e
    if not key_usage.digital_signature:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, "keyUsage lacks digitalSignature")
    if ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, "extendedKeyUsage lacks codeSigning")
    try:
        if extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise EvidenceError(Reason.CERTIFICATE_INVALID, "leaf certificate is a CA")
    except x509.ExtensionNotFound:
        pass
    try:
        key = leaf_key(public_key)
    except UnsupportedKeyError as e:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, str(e)) from e
    return Leaf(cert=cert, der=der, issuer=issuer, key=key, not_before=not_before, not_after=not_after)
