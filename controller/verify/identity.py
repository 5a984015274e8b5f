"""The signer's identity in a Fulcio certificate (checklist step 8): subject, issuer, claims.

Fulcio's extensions live under Sigstore's private enterprise number 1.3.6.1.4.1.57264; the
directory is https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md. Encodings:

* ``.1.1`` to ``.1.6`` (deprecated) hold the raw UTF-8 string, without DER framing;
* ``.1.7`` is the OtherName SAN type for a username; its value is a DER UTF8String;
* ``.1.8`` onward hold a DER UTF8String (universal tag 0x0C).

The subject is the single SAN (email, URI, or the ``.1.7`` username). The issuer is ``.1.8``,
falling back to ``.1.1``; if both are present they must agree. Every other known extension becomes
a claim, keyed by its camelCase name. Matching identities against policy is not done here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.x509 import ObjectIdentifier
from cryptography.x509.oid import ExtensionOID

from controller.errors import EvidenceError, Reason

# https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md
OID_ISSUER_V1: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # deprecated, raw string
OID_GITHUB_WORKFLOW_TRIGGER: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.2")  # deprecated, raw
OID_GITHUB_WORKFLOW_SHA: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.3")  # deprecated, raw
OID_GITHUB_WORKFLOW_NAME: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.4")  # deprecated, raw
OID_GITHUB_WORKFLOW_REPOSITORY: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.5")  # deprecated, raw
OID_GITHUB_WORKFLOW_REF: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.6")  # deprecated, raw
OID_OTHERNAME_USERNAME: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.7")  # OtherName SAN type
OID_ISSUER_V2: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
OID_BUILD_SIGNER_URI: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.9")
OID_BUILD_SIGNER_DIGEST: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.10")
OID_RUNNER_ENVIRONMENT: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.11")
OID_SOURCE_REPOSITORY_URI: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.12")
OID_SOURCE_REPOSITORY_DIGEST: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.13")
OID_SOURCE_REPOSITORY_REF: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.14")
OID_SOURCE_REPOSITORY_IDENTIFIER: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.15")
OID_SOURCE_REPOSITORY_OWNER_URI: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.16")
OID_SOURCE_REPOSITORY_OWNER_IDENTIFIER: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.17")
OID_BUILD_CONFIG_URI: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.18")
OID_BUILD_CONFIG_DIGEST: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.19")
OID_BUILD_TRIGGER: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.20")
OID_RUN_INVOCATION_URI: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.21")
OID_SOURCE_REPOSITORY_VISIBILITY: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.22")
OID_DEPLOYMENT_ENVIRONMENT: Final = ObjectIdentifier("1.3.6.1.4.1.57264.1.23")

# Claims whose value is the raw string (no DER framing).
RAW_CLAIMS: Final[dict[ObjectIdentifier, str]] = {
    OID_GITHUB_WORKFLOW_TRIGGER: "githubWorkflowTrigger",
    OID_GITHUB_WORKFLOW_SHA: "githubWorkflowSHA",
    OID_GITHUB_WORKFLOW_NAME: "githubWorkflowName",
    OID_GITHUB_WORKFLOW_REPOSITORY: "githubWorkflowRepository",
    OID_GITHUB_WORKFLOW_REF: "githubWorkflowRef",
}
# Claims whose value is a DER UTF8String.
DER_CLAIMS: Final[dict[ObjectIdentifier, str]] = {
    OID_BUILD_SIGNER_URI: "buildSignerURI",
    OID_BUILD_SIGNER_DIGEST: "buildSignerDigest",
    OID_RUNNER_ENVIRONMENT: "runnerEnvironment",
    OID_SOURCE_REPOSITORY_URI: "sourceRepositoryURI",
    OID_SOURCE_REPOSITORY_DIGEST: "sourceRepositoryDigest",
    OID_SOURCE_REPOSITORY_REF: "sourceRepositoryRef",
    OID_SOURCE_REPOSITORY_IDENTIFIER: "sourceRepositoryIdentifier",
    OID_SOURCE_REPOSITORY_OWNER_URI: "sourceRepositoryOwnerURI",
    OID_SOURCE_REPOSITORY_OWNER_IDENTIFIER: "sourceRepositoryOwnerIdentifier",
    OID_BUILD_CONFIG_URI: "buildConfigURI",
    OID_BUILD_CONFIG_DIGEST: "buildConfigDigest",
    OID_BUILD_TRIGGER: "buildTrigger",
    OID_RUN_INVOCATION_URI: "runInvocationURI",
    OID_SOURCE_REPOSITORY_VISIBILITY: "sourceRepositoryVisibilityAtSigning",
    OID_DEPLOYMENT_ENVIRONMENT: "deploymentEnvironment",
}

# How step 8 reads each Fulcio extension: (claim name, or "" for an issuer; DER UTF8String or raw).
_READERS: Final[dict[ObjectIdentifier, tuple[str, bool]]] = {
    OID_ISSUER_V1: ("", False),
    OID_ISSUER_V2: ("", True),
    **{oid: (claim, False) for oid, claim in RAW_CLAIMS.items()},
    **{oid: (claim, True) for oid, claim in DER_CLAIMS.items()},
}
_SAN: Final = ExtensionOID.SUBJECT_ALTERNATIVE_NAME

_UTF8STRING_TAG: Final = 0x0C


class _DerError(ValueError):
    """Raised when bytes are not one DER UTF8String. Internal."""


def decode_der_utf8string(data: bytes) -> str:
    """Decode exactly one DER UTF8String (tag 0x0C, minimal definite length, valid UTF-8)."""
    if len(data) < 2 or data[0] != _UTF8STRING_TAG:
        raise _DerError("not a UTF8String")
    first = data[1]
    if first < 0x80:
        length, offset = first, 2
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            raise _DerError("bad DER length")
        length = int.from_bytes(data[2 : 2 + count], "big")
        offset = 2 + count
        if length < 0x80 or data[2] == 0:  # DER requires the shortest length form
            raise _DerError("non-minimal DER length")
    if len(data) != offset + length:
        raise _DerError("DER length does not match the value")
    try:
        return data[offset:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise _DerError("UTF8String is not UTF-8") from e


def _raw_utf8(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, f"{name} is not UTF-8") from e


def _der_utf8(data: bytes, name: str) -> str:
    try:
        return decode_der_utf8string(data)
    except _DerError as e:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, f"{name}: {e}") from e


@dataclass(frozen=True, slots=True)
class Identity:
    """Who signed: the SAN, the OIDC issuer ("" only when the caller allowed it to be missing),
    and the other Fulcio claims by camelCase name."""

    subject: str
    issuer: str
    claims: dict[str, str]


def _subject(san: x509.SubjectAlternativeName) -> str:
    """The one SAN of a Fulcio certificate: email, URI or ``.1.7`` username. Else CertificateInvalid."""
    names = list(san)
    if len(names) != 1:
        raise EvidenceError(
            Reason.CERTIFICATE_INVALID, f"expected one subject alternative name, got {len(names)}"
        )
    (name,) = names
    if isinstance(name, x509.RFC822Name | x509.UniformResourceIdentifier):
        value = name.value
    elif isinstance(name, x509.OtherName) and name.type_id == OID_OTHERNAME_USERNAME:
        value = _der_utf8(name.value, "username SAN")
    else:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, f"unsupported SAN type {type(name).__name__}")
    if not value:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, "empty subject alternative name")
    return value


def extract_identity(extensions: x509.Extensions, *, require_issuer: bool) -> Identity:
    """Step 8: subject, issuer and claims. Missing issuer -> ``IssuerMissing`` when required."""
    # One pass picks out the SAN and Fulcio's extensions (the library rejects a certificate that
    # repeats an extension, and maps the SAN's OID to its class).
    san: x509.ExtensionType | None = None
    fulcio: list[tuple[ObjectIdentifier, str, bool, x509.ExtensionType]] = []
    for extension in extensions:
        oid = extension.oid
        reader = _READERS.get(oid)
        if reader is not None:
            fulcio.append((oid, *reader, extension.value))
        elif oid == _SAN:
            san = extension.value
    if not isinstance(san, x509.SubjectAlternativeName):
        raise EvidenceError(Reason.CERTIFICATE_INVALID, "no subject alternative name")
    subject = _subject(san)
    issuer_v1: str | None = None
    issuer_v2: str | None = None
    claims: dict[str, str] = {}
    for oid, claim, framed, value in fulcio:
        if not isinstance(value, x509.UnrecognizedExtension):
            continue
        raw = value.value
        if oid == OID_ISSUER_V2:
            issuer_v2 = _der_utf8(raw, "issuer (1.3.6.1.4.1.57264.1.8)")
        elif oid == OID_ISSUER_V1:
            issuer_v1 = _raw_utf8(raw, "issuer (1.3.6.1.4.1.57264.1.1)")
        else:
            claims[claim] = _der_utf8(raw, claim) if framed else _raw_utf8(raw, claim)
    if issuer_v1 is not None and issuer_v2 is not None and issuer_v1 != issuer_v2:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, "issuer extensions .1.1 and .1.8 disagree")
    issuer = issuer_v2 if issuer_v2 is not None else issuer_v1
    if not issuer:
        if require_issuer:
            raise EvidenceError(Reason.ISSUER_MISSING, "certificate has no OIDC issuer extension")
        issuer = ""
    return Identity(subject=subject, issuer=issuer, claims=claims)
