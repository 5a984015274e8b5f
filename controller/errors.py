"""Stable reason codes and the exception tree.

Every failure carries a :class:`Reason`. The codes are a contract: the admission message starts with
``Reason: image: detail``, tests assert on the code, and dashboards key on it. Never rename a value.

The exception tree is split by cause, as in python-tuf:

* :class:`EvidenceError`: the signature material is present but bad. Deny.
* :class:`FetchError`: the material could not be fetched (network, auth, limits). Deny, transient.
* :class:`PolicyError`: a policy, trust root or setting is invalid. Never an allow.
* :class:`InputError`: a request, manifest or reference given to us is malformed.

This module imports nothing of ours.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Stable reason codes. The value is what users, logs and tests see."""

    # --- the decision itself
    VERIFIED = "Verified"
    NO_MATCHING_POLICY = "NoMatchingPolicy"
    POLICIES_NOT_LOADED = "PoliciesNotLoaded"
    DIGEST_REQUIRED = "DigestRequired"
    EXCEPTION_GRANTED = "ExceptionGranted"  # allowed: an ImagePolicyException admits it (not a denial)

    # --- discovery
    SIGNATURE_NOT_FOUND = "SignatureNotFound"
    NOT_KEYLESS = "NotKeylessSignature"  # a layer with no certificate: key-based, not keyless evidence

    # --- evidence (deny)
    DIGEST_MISMATCH = "DigestMismatch"  # registry content does not match its digest
    PAYLOAD_INVALID = "PayloadInvalid"  # not a cosign simple-signing payload
    PAYLOAD_DIGEST_MISMATCH = "PayloadDigestMismatch"  # payload names another image digest
    ANNOTATION_MISMATCH = "AnnotationMismatch"  # required payload annotation absent or different
    SIGNATURE_INVALID = "SignatureInvalid"  # signature does not verify over the payload
    CERTIFICATE_INVALID = "CertificateInvalid"  # unparseable, wrong EKU, wrong key type, bad extension
    CERTIFICATE_CHAIN_INVALID = "CertificateChainInvalid"  # does not chain to a trusted Fulcio CA
    CERTIFICATE_EXPIRED = "CertificateNotValidAtSigningTime"
    SCT_MISSING = "SCTMissing"
    SCT_INVALID = "SCTInvalid"
    TLOG_ENTRY_MISSING = "TlogEntryMissing"
    TLOG_ENTRY_INVALID = "TlogEntryInvalid"  # malformed bundle, bad SET, unknown log
    TLOG_BODY_MISMATCH = "TlogBodyMismatch"  # Rekor body does not describe this signature
    ISSUER_MISSING = "IssuerMissing"  # no OIDC issuer extension in the certificate
    IDENTITY_MISMATCH = "IdentityMismatch"
    BUNDLE_INVALID = "BundleInvalid"  # a Sigstore bundle failed verification
    KEY_MISMATCH = "KeyMismatch"  # a key-signed artifact verifies with none of the policy's keys
    TIMESTAMP_INVALID = "TimestampInvalid"  # an RFC 3161 timestamp is malformed, untrusted or out of window

    # --- attestations (deny): a policy's ``attestations:`` entry is not met
    ATTESTATION_MISSING = "AttestationMissing"  # no verified attestation of the required predicate type
    ATTESTATION_INVALID = "AttestationInvalid"  # one was found but fails verification or its subject
    ATTESTATION_CONDITION_FAILED = "AttestationConditionFailed"  # verified, but a CEL condition is false

    # --- fetching (deny, transient)
    REFERENCE_INVALID = "ReferenceInvalid"
    IMAGE_NOT_FOUND = "ImageNotFound"
    REGISTRY_UNAVAILABLE = "RegistryUnavailable"
    REGISTRY_AUTH_FAILED = "RegistryAuthFailed"
    MANIFEST_INVALID = "ManifestInvalid"
    LIMIT_EXCEEDED = "LimitExceeded"
    OVERLOADED = "Overloaded"  # shed before any work: the controller is past capacity; retry

    # --- configuration
    POLICY_INVALID = "PolicyInvalid"
    TRUST_ROOT_INVALID = "TrustRootInvalid"
    TRUST_ROOT_UNKNOWN = "TrustRootUnknown"
    CONFIG_INVALID = "ConfigInvalid"

    # --- input
    REVIEW_INVALID = "ReviewInvalid"
    MANIFEST_DOCUMENT_INVALID = "ManifestDocumentInvalid"
    INTERNAL_ERROR = "InternalError"


class ImprimaturError(Exception):
    """The root of every error we raise on purpose. Carries a stable reason and a detail."""

    transient: bool = False

    def __init__(self, reason: Reason, detail: str, *, image: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.image = image

    def with_image(self, image: str) -> ImprimaturError:
        """Attach the image this error is about, as the error bubbles up (keeps the first one set)."""
        if self.image is None:
            self.image = image
        return self

    def message(self) -> str:
        """``Reason: image: detail``: the admission-message contract."""
        return f"{self.reason}: {self.image or '-'}: {self.detail}"


class EvidenceError(ImprimaturError):
    """Raised when signature material was fetched but is bad: wrong digest, bad signature, bad chain."""


class FetchError(ImprimaturError):
    """Raised when material could not be fetched: network, HTTP status, auth, or a bound was hit."""

    transient = True


class LimitError(FetchError):
    """Raised when a bound (bytes, layers, redirects, seconds) was exceeded. Never a hang or an OOM."""

    def __init__(self, detail: str, *, image: str | None = None) -> None:
        super().__init__(Reason.LIMIT_EXCEEDED, detail, image=image)


class PolicyError(ImprimaturError):
    """Raised when a policy, trust root or setting is invalid. A policy error never allows."""


class InputError(ImprimaturError):
    """Raised when an input we were handed (review, manifest, reference, CLI flag) is malformed."""
