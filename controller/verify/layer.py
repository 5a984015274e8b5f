"""What cosign's legacy layers (``.sig`` simple signing, ``.att`` DSSE) share: annotations and steps.

cosign (``pkg/oci/static``) writes the same annotations on both kinds of layer: the signature
(``dev.cosignproject.cosign/signature``, empty on an ``.att`` layer, whose signature is inside the
envelope), the Fulcio certificate and chain, and the Rekor ``dev.sigstore.cosign/bundle``. The
checklists in :mod:`.simplesigning` and :mod:`.attestation` read them through :func:`annotation`,
and end with the same keyless steps (:func:`verify_keyless_certificate`) or, for a key-signed layer,
the same Rekor step (:func:`verify_keyed_tlog`).
"""

from __future__ import annotations

import binascii
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from controller.errors import EvidenceError, InputError, Reason
from controller.model import Signature
from controller.verify.certificate import Leaf
from controller.verify.chain import verify_chain
from controller.verify.identity import Identity, extract_identity
from controller.verify.keyed import VerificationKey, check_logged_key
from controller.verify.options import VerifyOptions
from controller.verify.sct import verify_embedded_sct
from controller.verify.tlog import RekorEntry, parse_body, parse_rekor_entry, verify_set
from controller.verify.trustroot import TrustRoot

_log = logging.getLogger(__name__)

SIGNATURE_ANNOTATION: Final = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION: Final = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION: Final = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION: Final = "dev.sigstore.cosign/bundle"


def annotation(sig: Signature, key: str, limit: int) -> bytes | None:
    """An annotation as bytes, None when absent or empty (as cosign treats ""); bounded by ``limit``.

    Longer than ``limit`` -> ``LimitExceeded``; not valid Unicode -> ``PayloadInvalid``.
    """
    value = sig.annotations.get(key)
    if value is None or value == "":
        return None
    if len(value) > limit:
        raise EvidenceError(Reason.LIMIT_EXCEEDED, f"annotation {key} is longer than {limit} bytes")
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise EvidenceError(Reason.PAYLOAD_INVALID, f"annotation {key} is not valid Unicode") from e
    if len(data) > limit:
        raise EvidenceError(Reason.LIMIT_EXCEEDED, f"annotation {key} is longer than {limit} bytes")
    return data


def as_utc(now: datetime) -> datetime:
    """``now`` in UTC; a naive datetime is an API misuse (InputError), never silently local time."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise InputError(Reason.INTERNAL_ERROR, "verification time must be timezone-aware")
    return now.astimezone(UTC)


def warn(warnings: list[str], source: str, message: str) -> None:
    """Log a relaxation that took effect, and keep it for the result."""
    _log.warning("%s: %s", source, message)
    warnings.append(message)


@dataclass(frozen=True, slots=True)
class LoggedAt:
    """Where and when a layer was logged; all None when the tlog was optional and absent."""

    log_index: int | None
    log_id: str | None
    integrated_time: datetime | None


NOT_LOGGED: Final = LoggedAt(None, None, None)


def logged_at(entry: RekorEntry) -> LoggedAt:
    """The result fields of a verified entry."""
    return LoggedAt(entry.log_index, entry.log_id_hex, entry.integrated_at)


def missing_tlog(sig: Signature, options: VerifyOptions, warnings: list[str]) -> LoggedAt:
    """No bundle annotation: ``TlogEntryMissing``, or a warning when the policy allows it."""
    if options.require_tlog:
        raise EvidenceError(Reason.TLOG_ENTRY_MISSING, f"layer has no {BUNDLE_ANNOTATION}")
    warn(warnings, sig.source, "no transparency log entry; verified at the current time")
    return NOT_LOGGED


def verify_keyless_certificate(
    leaf: Leaf,
    *,
    at: datetime,
    chain_pem: bytes | None,
    trust_root: TrustRoot,
    options: VerifyOptions,
    warnings: list[str],
    source: str,
) -> Identity:
    """The keyless steps after the tlog: chain at ``at``, embedded SCT, identity (see simplesigning 6-8)."""
    path = verify_chain(leaf, at=at, trust_root=trust_root, chain_pem=chain_pem)
    try:
        verify_embedded_sct(leaf, path[0], trust_root)
    except EvidenceError as e:
        if options.require_sct:
            raise
        warn(warnings, source, f"SCT not verified ({e.reason}), allowed by policy")
    identity = extract_identity(leaf.cert.extensions, require_issuer=options.require_issuer_extension)
    if not identity.issuer:
        warn(warnings, source, "certificate has no OIDC issuer extension, allowed by policy")
    return identity


def verify_keyed_tlog(
    bundle_json: bytes, *, payload_sha256: str, signature: bytes, key: VerificationKey, trust_root: TrustRoot
) -> LoggedAt:
    """The Rekor entry of a key-signed ``.sig`` layer: SET, then a hashedrekord/rekord body that
    records this payload's hash, this signature and this key (not a certificate).

    Malformed / unknown log / bad SET -> ``TlogEntryInvalid``; another payload, signature or key ->
    ``TlogBodyMismatch``.
    """
    entry = parse_rekor_entry(bundle_json)
    verify_set(entry, trust_root)
    body = parse_body(entry)
    if body.hash_algorithm != "sha256" or body.hash_value != payload_sha256:
        raise EvidenceError(Reason.TLOG_BODY_MISMATCH, "entry hash is not the payload's sha256")
    try:
        logged_signature = binascii.a2b_base64(body.signature_b64, strict_mode=True)
    except ValueError as e:  # binascii.Error, or non-ASCII text
        raise EvidenceError(Reason.TLOG_BODY_MISMATCH, "entry signature is not base64") from e
    if logged_signature != signature:
        raise EvidenceError(Reason.TLOG_BODY_MISMATCH, "entry signature is not this signature")
    check_logged_key(body.public_key_b64, key)
    return logged_at(entry)
