"""Frozen value types that cross module boundaries.

Nothing here does I/O. Parsers for these types live with the layer that owns the format:
``registry.reference.parse_reference`` builds an :class:`ImageRef`; ``verify`` builds a
:class:`VerifiedSignature`; ``policy`` turns them into :class:`ImageVerdict` objects.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from controller.errors import InputError, Reason

_DIGEST_RE = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")


@dataclass(frozen=True, slots=True)
class Digest:
    """A content digest, ``algorithm:hex``. Only sha256 and sha512 are accepted."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``sha256:<64 hex>``; anything else is an :class:`InputError` (ReferenceInvalid)."""
        if not _DIGEST_RE.match(text):
            raise InputError(Reason.REFERENCE_INVALID, f"not a sha256/sha512 digest: {text[:80]!r}")
        algorithm, _, hexpart = text.partition(":")
        return cls(algorithm, hexpart)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data``."""
        if algorithm not in ("sha256", "sha512"):
            raise InputError(Reason.REFERENCE_INVALID, f"unsupported digest algorithm {algorithm!r}")
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def matches(self, data: bytes) -> bool:
        """True when ``data`` hashes to this digest."""
        return hashlib.new(self.algorithm, data).hexdigest() == self.hex

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A normalised image reference: ``registry/repository[:tag][@digest]``.

    ``registry`` is the canonical host[:port] (``docker.io`` for Docker Hub, never ``index.docker.io``;
    the registry client maps it to the API host). ``repository`` is the path (``library/nginx``).
    At least one of ``tag`` and ``digest`` is set; a bare name normalises to tag ``latest``.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """``registry/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def with_digest(self, digest: Digest) -> ImageRef:
        """The same reference pinned to ``digest`` (the tag is kept for display)."""
        return ImageRef(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


# The Fulcio certificate extensions a VerifiedSignature exposes in ``claims``, by camelCase name: the
# contract between verify/ (which extracts them) and policy/ (which matches them). The deprecated
# GitHub-only .1.2-.1.6 first, then .1.9 onward.
# https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md
FULCIO_CLAIM_NAMES: tuple[str, ...] = (
    "githubWorkflowTrigger",
    "githubWorkflowSHA",
    "githubWorkflowName",
    "githubWorkflowRepository",
    "githubWorkflowRef",
    "buildSignerURI",
    "buildSignerDigest",
    "runnerEnvironment",
    "sourceRepositoryURI",
    "sourceRepositoryDigest",
    "sourceRepositoryRef",
    "sourceRepositoryIdentifier",
    "sourceRepositoryOwnerURI",
    "sourceRepositoryOwnerIdentifier",
    "buildConfigURI",
    "buildConfigDigest",
    "buildTrigger",
    "runInvocationURI",
    "sourceRepositoryVisibilityAtSigning",
    "deploymentEnvironment",
)

SignatureKind = Literal["simplesigning", "bundle", "attestation"]
# What a verified artifact is: a signature over the image (a simple-signing layer, a bundle's message
# signature, or a DSSE envelope whose statement has cosign's signature predicate) or an attestation
# (any other in-toto statement). Only a signature satisfies a policy's ``identities``.
EvidenceKind = Literal["signature", "attestation"]
COSIGN_SIGNATURE_PREDICATE = "https://sigstore.dev/cosign/sign/v1"


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key a policy trusts (``identities[].key``), as PEM, with where it came from.

    The key's identity is :func:`key_id`-style: ``sha256:<hex of its SubjectPublicKeyInfo DER>``, the
    same value ``VerifiedSignature.key_id`` carries for an artifact that verified with it.
    """

    pem: bytes
    source: str  # "ClusterImagePolicy acme: spec.identities[2].key" or "secret imprimatur-system/keys"


@dataclass(frozen=True, slots=True)
class Signature:
    """One candidate signature as fetched from a registry, not yet verified.

    For ``simplesigning`` (the legacy ``sha256-<hex>.sig`` tag), ``payload`` is the exact layer blob
    bytes (digest-checked by the registry layer) and ``annotations`` are that layer's annotations
    (``dev.cosignproject.cosign/signature``, ``dev.sigstore.cosign/certificate``,
    ``dev.sigstore.cosign/chain``, ``dev.sigstore.cosign/bundle``). For ``bundle`` (OCI 1.1 referrers),
    ``payload`` is the Sigstore bundle JSON.
    """

    kind: SignatureKind
    payload: bytes
    annotations: Mapping[str, str]
    layer_digest: Digest
    source: str  # where it came from, e.g. "ghcr.io/acme/app:sha256-….sig layer 0"
    media_type: str = "application/vnd.dev.cosign.simplesigning.v1+json"


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """A signature whose chain, SCT, tlog entry, signature and payload digest all verified.

    ``subject`` is the certificate SAN (email, URI or username); ``issuer`` is the OIDC issuer from
    Fulcio extension 1.3.6.1.4.1.57264.1.8 (falling back to .1.1). ``claims`` holds the other Fulcio
    extensions by their camelCase name (``githubWorkflowRepository``, ``sourceRepositoryRef`` ...).
    ``annotations`` are the payload's ``optional`` annotations (stringified values).
    ``log_index``/``integrated_time`` are None only when the tlog was optional and absent; then
    ``warnings`` says so.
    """

    subject: str
    issuer: str
    claims: Mapping[str, str]
    digest: Digest
    log_index: int | None
    integrated_time: datetime | None
    annotations: Mapping[str, str] = field(default_factory=dict)
    log_id: str | None = None
    trust_root: str = ""
    source: str = ""
    warnings: tuple[str, ...] = ()
    # A signature or an attestation; for an attestation, its predicate type and the verified in-toto
    # statement (JSON bytes, bounded by verify/), which policy conditions read.
    kind: EvidenceKind = "signature"
    predicate_type: str = ""
    statement: bytes = b""
    # Key-signed artifacts: ``sha256:<hex of the SPKI DER>`` of the key that verified it; ``subject``
    # and ``issuer`` are then empty. Keyless (Fulcio) artifacts leave it empty. A key-signed artifact
    # never satisfies a keyless identity, nor the reverse.
    key_id: str = ""


@dataclass(frozen=True, slots=True)
class Failure:
    """A reasoned failure about one image (or one signature of it), kept as data, not as an exception."""

    reason: Reason
    detail: str
    image: str
    transient: bool = False

    def message(self) -> str:
        """``Reason: image: detail``: the admission-message contract."""
        return f"{self.reason}: {self.image}: {self.detail}"


@dataclass(frozen=True, slots=True)
class ExceptionGrant:
    """Issue 8: an ImagePolicyException that admitted an image which the policies deny.

    ``creator`` is what the decision log records as who created it (see
    :mod:`controller.policy.exceptions` for what is trusted); ``denied`` is the verdict it overrode.
    """

    namespace: str
    name: str
    expires: datetime
    reason: str
    creator: str
    denied: Reason


@dataclass(frozen=True, slots=True)
class ImageVerdict:
    """The decision for one image: allowed or not, with the reason, the signer and the policies used."""

    image: str  # as written in the pod spec
    allowed: bool
    reason: Reason
    detail: str
    digest: Digest | None = None
    policies: tuple[str, ...] = ()
    signers: tuple[VerifiedSignature, ...] = ()
    warnings: tuple[str, ...] = ()
    transient: bool = False
    # --- issue 8: the exception that admitted it, if one did; and the wall-clock instant (the
    # engine's clock) from which this verdict no longer holds (a warn-mode policy's enforceAfter)
    exception: ExceptionGrant | None = None
    valid_until: datetime | None = None

    def message(self) -> str:
        """``Reason: image: detail``: the admission-message contract."""
        return f"{self.reason}: {self.image}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Decision:
    """The decision for a whole object (a pod, a workload, a CLI run): allowed only if every image is."""

    allowed: bool
    verdicts: tuple[ImageVerdict, ...]
    warnings: tuple[str, ...] = ()

    @property
    def denials(self) -> tuple[ImageVerdict, ...]:
        """The verdicts that deny, in image order."""
        return tuple(v for v in self.verdicts if not v.allowed)

    def message(self) -> str:
        """Every failing image as ``Reason: image: detail``, one per line; empty when allowed."""
        return "\n".join(v.message() for v in self.denials)
