"""The embedded Signed Certificate Timestamp of a Fulcio leaf (checklist step 7).

Fulcio logs a precertificate to its CT log and embeds the SCT in the final certificate (extension
1.3.6.1.4.1.11129.2.4.2). The CT log signed RFC 6962's ``digitally-signed`` struct
(https://www.rfc-editor.org/rfc/rfc6962#section-3.2)::

    sct_version (1 byte, v1 = 0) | signature_type (1 byte, certificate_timestamp = 0)
    | timestamp (8 bytes, ms) | entry_type (2 bytes, precert_entry = 1)
    | issuer_key_hash (32 bytes, sha256 of the issuer's SubjectPublicKeyInfo DER)
    | tbs_certificate (3-byte length + the TBSCertificate without the SCT extension)
    | extensions (2-byte length + bytes)

The leaf's issuer is the first certificate of the verified path (Fulcio uses no separate
precertificate-signing certificate). An SCT counts when its log ID names a trust-root CT log whose
key is valid at the SCT's timestamp and verifies it. At least one SCT must count.

7a. no SCT extension, or an empty one                -> SCTMissing
7b. no SCT verifies with a trusted, current CT log  -> SCTInvalid
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.x509.certificate_transparency import LogEntryType, SignedCertificateTimestamp, Version

from controller.errors import EvidenceError, Reason
from controller.verify.certificate import Leaf
from controller.verify.limits import MAX_SCTS
from controller.verify.trustroot import CaCertificate, TrustRoot

_EPOCH: Final = datetime(1970, 1, 1)  # SCT timestamps are naive UTC datetimes
_ONE_MS: Final = timedelta(milliseconds=1)
_HEADER: Final = struct.Struct(">BBQH")  # version, signature_type, timestamp, entry_type
_CERTIFICATE_TIMESTAMP: Final = 0
_PRECERT_ENTRY: Final = 1
_MAX_UINT24: Final = 0xFFFFFF
_MAX_UINT16: Final = 0xFFFF


def signed_data(sct: SignedCertificateTimestamp, tbs_precertificate: bytes, issuer_key_hash: bytes) -> bytes:
    """The RFC 6962 ``digitally-signed`` bytes of a precertificate SCT."""
    return _signed_data(sct, sct.timestamp, tbs_precertificate, issuer_key_hash)


def _signed_data(
    sct: SignedCertificateTimestamp, timestamp: datetime, tbs_precertificate: bytes, issuer_key_hash: bytes
) -> bytes:
    extension_bytes = sct.extension_bytes
    if len(tbs_precertificate) > _MAX_UINT24 or len(extension_bytes) > _MAX_UINT16:
        raise ValueError("SCT field too long")
    milliseconds = (timestamp - _EPOCH) // _ONE_MS
    return b"".join(
        (
            _HEADER.pack(0, _CERTIFICATE_TIMESTAMP, milliseconds, _PRECERT_ENTRY),
            issuer_key_hash,
            len(tbs_precertificate).to_bytes(3, "big"),
            tbs_precertificate,
            len(extension_bytes).to_bytes(2, "big"),
            extension_bytes,
        )
    )


def verify_embedded_sct(leaf: Leaf, issuer: CaCertificate, trust_root: TrustRoot) -> None:
    """Step 7 (see the module docstring)."""
    if leaf.embedded_scts is None:  # read with the profile's extensions (step 3)
        raise EvidenceError(Reason.SCT_MISSING, "certificate has no embedded SCT")
    scts = list(leaf.embedded_scts)
    if not scts:
        raise EvidenceError(Reason.SCT_MISSING, "certificate's SCT list is empty")
    if len(scts) > MAX_SCTS:
        raise EvidenceError(Reason.SCT_INVALID, f"more than {MAX_SCTS} SCTs")
    try:
        tbs = leaf.cert.tbs_precertificate_bytes
    except ValueError as e:
        raise EvidenceError(Reason.SCT_INVALID, f"cannot rebuild the precertificate: {e}") from e

    for sct in scts:
        logs = trust_root.ctlog(sct.log_id)
        if (
            not logs
            or sct.version is not Version.v1
            or sct.entry_type is not LogEntryType.PRE_CERTIFICATE
            or not isinstance(sct.signature_hash_algorithm, hashes.SHA256)
        ):
            continue
        timestamp = sct.timestamp  # naive UTC, built anew on each access
        try:
            data = _signed_data(sct, timestamp, tbs, issuer.spki_sha256)
        except ValueError:
            continue
        when = timestamp.replace(tzinfo=UTC)
        for log in logs:
            if log.key is not None and log.valid_for.contains(when) and log.key.verify(sct.signature, data):
                return
    raise EvidenceError(Reason.SCT_INVALID, f"no SCT verifies with a CT log of trust root {trust_root.name}")
