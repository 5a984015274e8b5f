"""Verification of a Sigstore bundle, as a numbered checklist, on ``cryptography`` alone.

One bundle (v0.1 to v0.3, :mod:`.bundle_model`) is verified for one artifact digest: an image
manifest's (an OCI referrer, :func:`verify_bundle`) or a file's (:func:`verify_blob`). What is
accepted is what cosign and sigstore-go accept; what is refused includes all that sigstore-python
refuses (``tests/verify/test_oracle.py`` compares the two case by case). The first failure decides:

1. the bundle parses strictly (media type, version rules, bounds)  -> BundleInvalid / LimitExceeded
2. the content names the artifact: a message signature's digest hint is the artifact digest; a DSSE
   envelope is an in-toto statement (:mod:`.dsse`) with a subject of that digest
                                                                 -> PayloadDigestMismatch / PayloadInvalid
3. the signing key: a Fulcio leaf with the certificate profile (:mod:`.certificate`) and, in a
   v0.1/v0.2 chain, no self-signed root                          -> CertificateInvalid / CertificateChainInvalid;
   or a ``publicKey`` bundle, which verifies only with a key the caller trusts (``options.keys``)
4. the signature: over the artifact digest (prehashed) or over the DSSE PAE
                                                                 -> SignatureInvalid / KeyMismatch
5. every tlog entry: its log is in the trust root; its body describes this signature, key and
   artifact (:mod:`.entries`)                                    -> TlogEntryInvalid / TlogBodyMismatch;
   a SET verifies with the log's key valid at integratedTime; an inclusion proof leads to the root
   of a checkpoint signed by that log (:mod:`.merkle`, :mod:`.checkpoint`) -> TlogEntryInvalid.
   No entry at all                                               -> TlogEntryMissing (unless relaxed)
6. every RFC 3161 timestamp verifies over the signature with a trusted TSA (:mod:`.timestamp`)
                                                                 -> TimestampInvalid
7. the signing times: a SET-covered integratedTime and the TSA times; at least one unless no tlog
   was required; none later than ``now``                         -> TimestampInvalid;
   the log key of an entry without a SET (Rekor v2) is valid at every signing time
                                                                 -> TlogEntryInvalid
8. the certificate path (:mod:`.chain`) and the leaf are valid at every signing time, and the leaf
   at an entry's integratedTime even where no SET covers it (sigstore-go checks every non-zero one)
                                                                 -> CertificateChainInvalid /
                                                                    CertificateNotValidAtSigningTime
9. the embedded SCT (:mod:`.sct`)                                -> SCTMissing / SCTInvalid (relaxable)
10. the identity (:mod:`.identity`)                              -> CertificateInvalid / IssuerMissing

The result's ``kind`` is "signature" for a message signature or a DSSE envelope with cosign's
signature predicate, "attestation" for any other statement (then ``predicate_type`` and
``statement`` are set). Matching the identity against a policy is the policy layer's job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from controller.errors import EvidenceError, Reason
from controller.model import Digest, EvidenceKind, Signature, VerifiedSignature
from controller.verify import dsse
from controller.verify.bundle_model import Bundle, parse_bundle
from controller.verify.bundle_tlog import VerifiedEntry, check_log_validity, verify_entries
from controller.verify.certificate import Leaf, check_leaf_profile
from controller.verify.chain import verify_chain
from controller.verify.identity import extract_identity
from controller.verify.keyed import VerificationKey, load_key
from controller.verify.options import VerifyOptions
from controller.verify.prehashed import verify_digest_signature
from controller.verify.sct import verify_embedded_sct
from controller.verify.simplesigning import as_utc
from controller.verify.timestamp import verify_timestamp
from controller.verify.trustroot import TrustRoot

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Content:
    """What the bundle's content says about the artifact (step 2)."""

    kind: EvidenceKind
    predicate_type: str
    statement: bytes


@dataclass(frozen=True, slots=True)
class _Signer:
    """The key that verified the signature (step 3-4): a Fulcio leaf, or a trusted key."""

    leaf: Leaf | None
    key: VerificationKey | None


def _warn(warnings: list[str], source: str, message: str) -> None:
    _log.warning("%s: %s", source, message)
    warnings.append(message)


def _check_content(bundle: Bundle, digest: Digest) -> _Content:
    """Step 2."""
    if bundle.message is not None:
        hint = bundle.message
        if hint.digest is not None and (
            hint.digest_algorithm != digest.algorithm or hint.digest.hex() != digest.hex
        ):
            raise EvidenceError(Reason.PAYLOAD_DIGEST_MISMATCH, f"bundle signs another digest, not {digest}")
        return _Content("signature", "", b"")
    envelope = bundle.envelope
    if envelope is None:  # one of the two is set by parse_bundle
        raise EvidenceError(Reason.BUNDLE_INVALID, "bundle has no content")
    if envelope.payload_type != dsse.IN_TOTO_PAYLOAD_TYPE:
        raise EvidenceError(Reason.PAYLOAD_INVALID, f"DSSE payload type is {envelope.payload_type[:80]!r}")
    statement = dsse.parse_statement(envelope.payload)
    dsse.check_subject(statement, digest)
    kind = dsse.evidence_kind(statement.predicate_type)
    return _Content(kind, statement.predicate_type, statement.raw)


def _signed_data_check(bundle: Bundle, digest: Digest) -> tuple[bytes, bytes, str]:
    """(signature, the bytes or digest it is over, "digest" | "message")."""
    if bundle.message is not None:
        return bundle.message.signature, bytes.fromhex(digest.hex), "digest"
    if bundle.envelope is None:
        raise EvidenceError(Reason.BUNDLE_INVALID, "bundle has no content")
    return bundle.envelope.signatures[0].sig, bundle.envelope.pae(), "message"


def _find_signer(bundle: Bundle, digest: Digest, options: VerifyOptions) -> _Signer:
    """Steps 3-4: the key of the bundle, and the signature verified with it."""
    signature, data, mode = _signed_data_check(bundle, digest)
    if bundle.certificates:
        leaf = check_leaf_profile(bundle.certificates[0])
        if mode == "digest":
            ok = verify_digest_signature(leaf.key.key, signature, data, digest.algorithm)
        else:
            ok = leaf.key.verify(signature, data)
        if not ok:
            raise EvidenceError(
                Reason.SIGNATURE_INVALID, "signature does not verify with the certificate key"
            )
        return _Signer(leaf, None)
    if not options.keys:
        raise EvidenceError(Reason.KEY_MISMATCH, "a key-signed bundle, and no trusted key to verify it with")
    loaded = [load_key(key) for key in options.keys]
    for candidate in loaded:
        if mode == "digest":
            ok = verify_digest_signature(
                candidate.scheme.key, signature, data, digest.algorithm, allow_pss=True
            )
        else:
            ok = candidate.verify(signature, data)
        if ok:
            return _Signer(None, candidate)
    raise EvidenceError(
        Reason.KEY_MISMATCH, f"the signature verifies with none of {len(loaded)} trusted key(s)"
    )


def _check_presented_chain(bundle: Bundle, path_der: tuple[bytes, ...]) -> None:
    """Step 8, for a v0.1/v0.2 chain: what the bundle presents after the leaf is the start of the
    trusted path, and holds no root (a self-signed certificate is a trust anchor only in the trust root)."""
    presented = bundle.certificates[1:]
    if not presented:
        return
    if presented[-1] == path_der[-1] or len(presented) >= len(path_der):
        raise EvidenceError(Reason.CERTIFICATE_CHAIN_INVALID, "bundle chain contains a root certificate")
    if presented != path_der[: len(presented)]:
        raise EvidenceError(Reason.CERTIFICATE_CHAIN_INVALID, "bundle chain is not the trusted path")


def _check_claimed_times(leaf: Leaf, entries: tuple[VerifiedEntry, ...]) -> None:
    """Step 8: an integratedTime without a SET is no proof of time, but one outside the leaf's
    validity contradicts the bundle (sigstore-go refuses it)."""
    for entry in entries:
        when = entry.claimed_at
        if when is not None and not leaf.not_before <= when <= leaf.not_after:
            raise EvidenceError(
                Reason.CERTIFICATE_EXPIRED,
                f"the entry's integrated time {when.isoformat()} is outside the certificate's validity",
            )


def _signing_times(
    bundle: Bundle, entries: tuple[VerifiedEntry, ...], trust_root: TrustRoot, now: datetime
) -> list[datetime]:
    """Steps 6-7: the verified times of signing."""
    signature = bundle.signature
    times = [entry.integrated_at for entry in entries if entry.integrated_at is not None]
    for when in times:
        if when > now:
            raise EvidenceError(
                Reason.TLOG_ENTRY_INVALID, f"integrated time {when.isoformat()} is in the future"
            )
    for token in bundle.timestamps:
        when = verify_timestamp(token, signed_data=signature, trust_root=trust_root)
        if when > now:
            raise EvidenceError(Reason.TIMESTAMP_INVALID, f"timestamp {when.isoformat()} is in the future")
        times.append(when)
    return times


def _verify(
    data: bytes, *, digest: Digest, trust_root: TrustRoot, now: datetime, options: VerifyOptions, source: str
) -> VerifiedSignature:
    now = as_utc(now)
    warnings: list[str] = []
    bundle = parse_bundle(data)  # 1
    content = _check_content(bundle, digest)  # 2
    signer = _find_signer(bundle, digest, options)  # 3-4
    entries = verify_entries(  # 5
        bundle,
        digest=digest,
        leaf=signer.leaf,
        key=signer.key,
        trust_root=trust_root,
    )
    if not entries:
        if options.require_tlog:
            raise EvidenceError(Reason.TLOG_ENTRY_MISSING, "bundle has no transparency log entry")
        _warn(warnings, source, "no transparency log entry, allowed by policy")
    times = _signing_times(bundle, entries, trust_root, now)  # 6-7
    if not times:
        if entries or options.require_tlog:
            raise EvidenceError(
                Reason.TIMESTAMP_INVALID, "no verified time of signing (no SET-covered entry, no timestamp)"
            )
        _warn(warnings, source, "no signed time; the certificate is checked at the current time")
        times = [now]
    check_log_validity(entries, times)  # 7
    subject = issuer = key_id = ""
    claims: dict[str, str] = {}
    if signer.leaf is not None:
        leaf = signer.leaf
        paths = [verify_chain(leaf, at=when, trust_root=trust_root, chain_pem=None) for when in times]  # 8
        path = paths[0]
        _check_presented_chain(bundle, tuple(ca.der for ca in path))
        _check_claimed_times(leaf, entries)
        try:  # 9
            verify_embedded_sct(leaf, path[0], trust_root)
        except EvidenceError as e:
            if options.require_sct:
                raise
            _warn(warnings, source, f"SCT not verified ({e.reason}), allowed by policy")
        identity = extract_identity(
            leaf.cert.extensions, require_issuer=options.require_issuer_extension
        )  # 10
        if not identity.issuer:
            _warn(warnings, source, "certificate has no OIDC issuer extension, allowed by policy")
        subject, issuer, claims = identity.subject, identity.issuer, dict(identity.claims)
    elif signer.key is not None:
        key_id = signer.key.key_id
    first = entries[0] if entries else None
    return VerifiedSignature(
        subject=subject,
        issuer=issuer,
        claims=claims,
        digest=digest,
        log_index=None if first is None else first.log_index,
        integrated_time=None if first is None else first.integrated_at,
        annotations={"predicateType": content.predicate_type} if content.predicate_type else {},
        log_id=None if first is None else first.log_id_hex,
        trust_root=trust_root.name,
        source=source,
        warnings=tuple(warnings),
        kind=content.kind,
        predicate_type=content.predicate_type,
        statement=content.statement,
        key_id=key_id,
    )


def verify_bundle(
    sig: Signature,
    *,
    digest: Digest,
    trust_root: TrustRoot,
    now: datetime,
    options: VerifyOptions = VerifyOptions(),  # noqa: B008 - frozen, immutable
) -> VerifiedSignature:
    """Verify one Sigstore bundle (an OCI referrer) for the image ``digest`` (module checklist)."""
    if sig.kind != "bundle":
        raise EvidenceError(Reason.BUNDLE_INVALID, f"not a Sigstore bundle ({sig.kind})")
    return _verify(
        sig.payload, digest=digest, trust_root=trust_root, now=now, options=options, source=sig.source
    )


def verify_blob(
    bundle_json: bytes,
    *,
    artifact_digest: Digest,
    trust_root: TrustRoot,
    now: datetime,
    options: VerifyOptions = VerifyOptions(),  # noqa: B008 - frozen, immutable
) -> VerifiedSignature:
    """Verify a bundle over a file given by its digest (cosign's ``verify-blob``; module checklist)."""
    return _verify(
        bundle_json,
        digest=artifact_digest,
        trust_root=trust_root,
        now=now,
        options=options,
        source="artifact",
    )


def verify_bundle_artifact(
    bundle_json: bytes, artifact: bytes, trust_root: TrustRoot, *, now: datetime
) -> VerifiedSignature:
    """:func:`verify_blob` for the artifact's bytes (its sha256 plays the digest)."""
    return verify_blob(bundle_json, artifact_digest=Digest.of(artifact), trust_root=trust_root, now=now)
