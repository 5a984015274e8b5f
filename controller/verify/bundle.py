"""Verification of a Sigstore bundle (cosign v3, OCI 1.1 referrers), through sigstore-python.

sigstore-python's public :class:`sigstore.verify.Verifier` does the cryptography (chain, SCT, Rekor
inclusion proof and checkpoint, SET or RFC 3161 time, signature, log-body consistency). Identity is
matched by our policy layer, so the Verifier gets a policy that accepts any identity, and we then
read subject, issuer and claims from the bundle's leaf with our own :mod:`.identity` code. The
remaining check is ours: that the bundle signs *this* image.

1. the signature is of kind ``bundle`` and within :data:`MAX_SIGSTORE_BUNDLE_BYTES` -> BundleInvalid /
   LimitExceeded
2. the bundle JSON parses strictly (:mod:`.jsonstrict`) and as a Sigstore bundle    -> BundleInvalid
3. for a message-signature bundle, a recorded ``messageDigest`` that is not the image
   digest                                                         -> PayloadDigestMismatch
4. sigstore-python verifies it against the trust root              -> BundleInvalid
   (the trust root itself failing to load there                   -> TrustRootInvalid)
5. for a DSSE bundle, the payload is an in-toto statement and one of its subjects carries the image
   digest                                                         -> BundleInvalid / PayloadDigestMismatch
   (the predicate type is reported as the annotation ``predicateType``; an attestation is not
   the same thing as a signature, and the policy layer may want to tell them apart)
6. the leaf's identity: one SAN and an issuer extension           -> CertificateInvalid / IssuerMissing

A message-signature bundle is verified as a signature over the image manifest, given only its
digest (sigstore-python's prehashed ``Hashed`` input); only sha256 image digests can be.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cryptography.x509 import Certificate
from sigstore.hashes import Hashed
from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier
from sigstore_models.common.v1 import HashAlgorithm
from sigstore_models.trustroot import v1 as trustroot_v1

from controller.errors import EvidenceError, PolicyError, Reason
from controller.model import Digest, Signature, VerifiedSignature
from controller.verify import jsonstrict
from controller.verify.identity import extract_identity
from controller.verify.jsonstrict import JsonObject, StrictJsonError
from controller.verify.limits import MAX_SIGSTORE_BUNDLE_BYTES, MAX_STATEMENT_DEPTH, MAX_STATEMENT_SUBJECTS
from controller.verify.simplesigning import as_utc
from controller.verify.trustroot import TrustRoot

IN_TOTO_PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
IN_TOTO_STATEMENT_TYPES: Final = frozenset(
    {"https://in-toto.io/Statement/v0.1", "https://in-toto.io/Statement/v1"}
)
_MAX_UNIX_SECONDS: Final = 253402300799  # 9999-12-31T23:59:59Z
_VERIFIER_CACHE_KEY: Final = "sigstore.verify.Verifier"


class _AcceptAnyIdentity:
    """A sigstore-python VerificationPolicy that accepts every identity: ours is matched later."""

    def verify(self, cert: Certificate) -> None:
        """Accept: identity matching is the policy layer's job, on the VerifiedSignature."""


@dataclass(frozen=True, slots=True)
class _BundleSummary:
    """What we read from the bundle JSON ourselves, before sigstore-python sees it."""

    is_dsse: bool
    message_digest: bytes | None
    log_index: int | None
    log_id_hex: str | None
    integrated_time: int | None


def _proto_int(obj: JsonObject, key: str, what: str) -> int | None:
    """A proto3 JSON int64 (a decimal string, or a number), None when absent."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise StrictJsonError(f"{what}.{key}: expected an integer")


def _summarize(data: bytes) -> _BundleSummary:
    """Step 2a: strict JSON, and the fields we report or check ourselves."""
    doc = jsonstrict.as_object(jsonstrict.loads(data), "bundle")
    material = jsonstrict.as_object(doc.get("verificationMaterial"), "bundle.verificationMaterial")
    is_dsse = "dsseEnvelope" in doc
    message_digest: bytes | None = None
    if not is_dsse:
        message = jsonstrict.as_object(doc.get("messageSignature"), "bundle.messageSignature")
        if "messageDigest" in message:
            recorded = jsonstrict.as_object(message["messageDigest"], "messageDigest")
            try:
                message_digest = base64.b64decode(
                    jsonstrict.get_str(recorded, "digest", "messageDigest"), validate=True
                )
            except binascii.Error as e:
                raise StrictJsonError("messageDigest.digest is not base64") from e
    entries: list[object] = []
    if "tlogEntries" in material:
        entries = jsonstrict.get_list(material, "tlogEntries", "verificationMaterial", max_items=1)
    log_index = log_id_hex = integrated_time = None
    if entries:
        entry = jsonstrict.as_object(entries[0], "tlogEntries[0]")
        log_index = _proto_int(entry, "logIndex", "tlogEntries[0]")
        # Only a promised (SET-signed) integrated time is verified time; Rekor v2 entries have none.
        if "inclusionPromise" in entry:
            integrated_time = _proto_int(entry, "integratedTime", "tlogEntries[0]") or None
        if integrated_time is not None and integrated_time > _MAX_UNIX_SECONDS:
            raise StrictJsonError("integratedTime is out of range")
        if "logId" in entry:
            log_id = jsonstrict.as_object(entry["logId"], "tlogEntries[0].logId")
            try:
                log_id_hex = base64.b64decode(
                    jsonstrict.get_str(log_id, "keyId", "logId"), validate=True
                ).hex()
            except binascii.Error as e:
                raise StrictJsonError("logId.keyId is not base64") from e
    return _BundleSummary(is_dsse, message_digest, log_index, log_id_hex, integrated_time)


def _verifier(trust_root_raw: bytes, cache: dict[str, object], name: str) -> Verifier:
    """sigstore-python's Verifier for this trust root, built once per TrustRoot."""
    cached = cache.get(_VERIFIER_CACHE_KEY)
    if isinstance(cached, Verifier):
        return cached
    try:
        verifier = Verifier(trusted_root=TrustedRoot(trustroot_v1.TrustedRoot.from_json(trust_root_raw)))
    except Exception as e:  # pydantic and sigstore errors alike: the root is unusable
        raise PolicyError(Reason.TRUST_ROOT_INVALID, f"{name}: sigstore-python rejects it: {e}") from e
    cache[_VERIFIER_CACHE_KEY] = verifier
    return verifier


def _check_statement(payload: bytes, digest: Digest) -> str:
    """Step 5: an in-toto statement with a subject carrying ``digest``; returns the predicate type."""
    try:
        statement = jsonstrict.fields(
            jsonstrict.loads(payload, max_depth=MAX_STATEMENT_DEPTH),
            "statement",
            required=frozenset({"_type", "subject", "predicateType"}),
            optional=frozenset({"predicate"}),
        )
        statement_type = jsonstrict.get_str(statement, "_type", "statement")
        predicate_type = jsonstrict.get_str(statement, "predicateType", "statement")
        subjects = jsonstrict.get_list(statement, "subject", "statement", max_items=MAX_STATEMENT_SUBJECTS)
        names: list[dict[str, object]] = []
        for item in subjects:
            subject = jsonstrict.as_object(item, "statement.subject[]")
            names.append(jsonstrict.as_object(subject.get("digest"), "statement.subject[].digest"))
    except StrictJsonError as e:
        raise EvidenceError(Reason.BUNDLE_INVALID, f"DSSE payload: {e}") from e
    if statement_type not in IN_TOTO_STATEMENT_TYPES:
        raise EvidenceError(Reason.BUNDLE_INVALID, "DSSE payload is not an in-toto Statement")
    for subject_digest in names:
        value = subject_digest.get(digest.algorithm)
        if isinstance(value, str) and value.lower() == digest.hex:
            return predicate_type
    raise EvidenceError(Reason.PAYLOAD_DIGEST_MISMATCH, f"no statement subject has digest {digest}")


def verify_bundle(
    sig: Signature, *, digest: Digest, trust_root: TrustRoot, now: datetime
) -> VerifiedSignature:
    """Verify one Sigstore bundle for the image ``digest`` (steps in the module docstring).

    ``now`` is checked to be timezone-aware but otherwise unused: a bundle's time comes from its own
    signed sources (the Rekor SET or integration, or RFC 3161 timestamps), as sigstore-python verifies.
    """
    as_utc(now)
    if sig.kind != "bundle":
        raise EvidenceError(Reason.BUNDLE_INVALID, f"not a Sigstore bundle ({sig.kind})")
    if len(sig.payload) > MAX_SIGSTORE_BUNDLE_BYTES:
        raise EvidenceError(Reason.LIMIT_EXCEEDED, f"bundle is larger than {MAX_SIGSTORE_BUNDLE_BYTES} bytes")
    try:
        summary = _summarize(sig.payload)
        bundle = Bundle.from_json(sig.payload)
    except StrictJsonError as e:
        raise EvidenceError(Reason.BUNDLE_INVALID, f"bundle: {e}") from e
    except Exception as e:  # sigstore-python's InvalidBundle, pydantic, base64, DER
        raise EvidenceError(Reason.BUNDLE_INVALID, f"bundle does not load: {e}") from e

    if summary.message_digest is not None and (
        digest.algorithm != "sha256" or summary.message_digest.hex() != digest.hex
    ):
        raise EvidenceError(Reason.PAYLOAD_DIGEST_MISMATCH, f"bundle signs another digest, not {digest}")

    if not summary.is_dsse and digest.algorithm != "sha256":
        raise EvidenceError(
            Reason.PAYLOAD_DIGEST_MISMATCH, f"a message signature cannot sign a {digest.algorithm} digest"
        )
    verifier = _verifier(trust_root.raw, trust_root.cache, trust_root.name)
    policy = _AcceptAnyIdentity()
    annotations: dict[str, str] = {}
    payload_type, payload = "", b""
    try:
        if summary.is_dsse:
            payload_type, payload = verifier.verify_dsse(bundle, policy)
        else:
            hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(digest.hex))
            verifier.verify_artifact(hashed, bundle, policy)
    except Exception as e:  # sigstore-python's VerificationError and friends: fail closed
        raise EvidenceError(Reason.BUNDLE_INVALID, f"bundle does not verify: {e}") from e

    if summary.is_dsse:
        if payload_type != IN_TOTO_PAYLOAD_TYPE:
            raise EvidenceError(Reason.BUNDLE_INVALID, f"DSSE payload type is {payload_type[:80]!r}")
        annotations["predicateType"] = _check_statement(payload, digest)

    try:
        extensions = bundle.signing_certificate.extensions
    except ValueError as e:
        raise EvidenceError(Reason.CERTIFICATE_INVALID, f"unparseable certificate: {e}") from e
    identity = extract_identity(extensions, require_issuer=True)
    integrated = summary.integrated_time
    warnings: tuple[str, ...] = ()
    if integrated is None:
        warnings = ("bundle has no Rekor integrated time; its time came from a signed timestamp",)
    return VerifiedSignature(
        subject=identity.subject,
        issuer=identity.issuer,
        claims=identity.claims,
        digest=digest,
        log_index=summary.log_index,
        integrated_time=None if integrated is None else datetime.fromtimestamp(integrated, tz=UTC),
        annotations=annotations,
        log_id=summary.log_id_hex,
        trust_root=trust_root.name,
        source=sig.source,
        warnings=warnings,
    )


def verify_bundle_artifact(
    bundle_json: bytes, artifact: bytes, trust_root: TrustRoot, *, now: datetime
) -> VerifiedSignature:
    """Verify a bundle over a plain artifact (sigstore-python's ``verify-artifact`` case).

    The artifact's sha256 plays the image digest: a message-signature bundle must sign it, a DSSE
    statement must name it as a subject. Used to test the staging bundles, which sign files.
    """
    artifact_digest = Digest.of(artifact)
    sig = Signature(
        kind="bundle",
        payload=bundle_json,
        annotations={},
        layer_digest=Digest.of(bundle_json),
        source="artifact",
        media_type="application/vnd.dev.sigstore.bundle.v0.3+json",
    )
    return verify_bundle(sig, digest=artifact_digest, trust_root=trust_root, now=now)
