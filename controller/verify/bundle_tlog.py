"""Step 5 of the bundle checklist: a bundle's transparency-log entries.

Each entry must, in order:

5a. name a Rekor log of the trust root (by log ID)                      -> TlogEntryInvalid
5b. carry a body of the kind and version its ``kindVersion`` says, that describes this signature,
    key and artifact (:mod:`.entries`)                                  -> TlogEntryInvalid / TlogBodyMismatch
5c. when it has an inclusion promise, a SET that verifies with the log's key valid at
    ``integratedTime`` (:func:`.tlog.verify_set`); only then is ``integratedTime`` a signing time
                                                                        -> TlogEntryInvalid
5d. when it has an inclusion proof, lead from the body's leaf hash to the proof's root
    (:mod:`.merkle`), and that root and size be those of a checkpoint signed by the same log
    (:mod:`.checkpoint`); a Rekor v2 checkpoint's origin is that log's  -> TlogEntryInvalid
5e. have a SET or an inclusion proof (bundle v0.2+ require the proof at parse time); a Rekor v2
    entry (hashedrekord/dsse 0.0.2, no SET) has one index, so its ``logIndex`` is the proof's: the
    index reported is then the one the Merkle path proves                -> TlogEntryInvalid

Rekor v2 entries (``0.0.2``) have no SET and no integrated time: their time comes from RFC 3161
timestamps (step 6). Such an entry's log key must then be valid, by its trust-root ``validFor``,
at every verified signing time (:func:`check_log_validity`, as sigstore-go checks a log at the TSA
time)                                                                   -> TlogEntryInvalid
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from controller.errors import EvidenceError, Reason
from controller.model import Digest
from controller.verify.bundle_model import Bundle, TlogEntry
from controller.verify.certificate import Leaf
from controller.verify.checkpoint import verify_checkpoint
from controller.verify.entries import check_entry_body
from controller.verify.keyed import VerificationKey
from controller.verify.merkle import leaf_hash, verify_inclusion
from controller.verify.tlog import RekorEntry, verify_set
from controller.verify.trustroot import TransparencyLog, TrustRoot, ValidityPeriod

_REKOR_V2_KINDS: Final = frozenset({("hashedrekord", "0.0.2"), ("dsse", "0.0.2")})


@dataclass(frozen=True, slots=True)
class VerifiedEntry:
    """A tlog entry that verified; ``integrated_at`` is set only when a SET covers it.

    ``windows`` are the trust-root validity periods of the log keys that signed its checkpoint
    (empty when none did: a v0.1 entry covered by its SET alone).
    """

    log_index: int
    log_id_hex: str
    integrated_at: datetime | None
    windows: tuple[ValidityPeriod, ...] = ()
    claimed_at: datetime | None = None  # a non-zero integratedTime that no SET covers (not a signing time)


def _is_rekor_v2(entry: TlogEntry) -> bool:
    """A Rekor v2 entry: one of its kinds, and no SET (Rekor v2 signs none)."""
    return entry.signed_entry_timestamp is None and (entry.kind, entry.version) in _REKOR_V2_KINDS


def _invalid(detail: str) -> EvidenceError:
    return EvidenceError(Reason.TLOG_ENTRY_INVALID, detail)


def _verify_promise(entry: TlogEntry, promise: bytes, trust_root: TrustRoot) -> datetime:
    """5c: the SET over the entry's canonical payload (the body as standard base64)."""
    body_b64 = binascii.b2a_base64(entry.body, newline=False).decode("ascii")
    rekor_entry = RekorEntry(
        signed_entry_timestamp=promise,
        body=body_b64,
        body_bytes=entry.body,
        integrated_time=entry.integrated_time,
        log_index=entry.log_index,
        log_id_hex=entry.log_id.hex(),
    )
    verify_set(rekor_entry, trust_root)
    return rekor_entry.integrated_at


def _verify_proof(
    entry: TlogEntry, logs: tuple[TransparencyLog, ...], trust_root: TrustRoot
) -> tuple[ValidityPeriod, ...]:
    """5d: the Merkle path to the root, and the root in a checkpoint the log signed; the validity
    periods of the log keys that signed it. A Rekor v2 checkpoint's origin is the log's own (its
    host), as sigstore-go requires; Rekor v1's ``<host> - <tree id>`` is not compared (nor by it)."""
    proof = entry.inclusion_proof
    if proof is None:
        return ()
    verify_inclusion(
        leaf_hash=leaf_hash(entry.body),
        index=proof.log_index,
        tree_size=proof.tree_size,
        proof=proof.hashes,
        root_hash=proof.root_hash,
    )
    if proof.checkpoint is None:
        if entry.signed_entry_timestamp is None:
            raise _invalid("inclusion proof without a checkpoint and no SET")
        return ()  # a v0.1 entry: the SET is its log's promise; the proof is checked as far as it goes
    first_error: EvidenceError | None = None
    windows: list[ValidityPeriod] = []
    for log in logs:
        try:
            checkpoint = verify_checkpoint(proof.checkpoint, trust_root, log=log)
        except EvidenceError as e:
            first_error = first_error or e
            continue
        if checkpoint.size != proof.tree_size or checkpoint.root_hash != proof.root_hash:
            raise _invalid("the checkpoint is not the inclusion proof's tree (size or root hash)")
        if _is_rekor_v2(entry) and checkpoint.origin != log.origin:
            raise _invalid(f"the checkpoint's origin {checkpoint.origin[:80]!r} is not the log's")
        windows.append(log.valid_for)
    if not windows:
        raise first_error or _invalid("no log key signed the checkpoint")
    return tuple(windows)


def _check_body(
    entry: TlogEntry, bundle: Bundle, *, digest: Digest, leaf: Leaf | None, key: VerificationKey | None
) -> None:
    """5b: the body describes what verified (the leaf's DER or the key's SPKI DER) and the content."""
    if leaf is not None:
        verifier = leaf.der
    elif key is not None:
        verifier = key.spki_der
    else:
        raise _invalid("no verifier to check the entry body against")
    if bundle.envelope is not None:
        check_entry_body(entry.kind, entry.version, entry.body, verifier=verifier, envelope=bundle.envelope)
        return
    digests = {digest.algorithm: bytes.fromhex(digest.hex)}
    check_entry_body(
        entry.kind, entry.version, entry.body, verifier=verifier, signature=bundle.signature, digests=digests
    )


def _verify_entry(
    entry: TlogEntry,
    bundle: Bundle,
    *,
    digest: Digest,
    leaf: Leaf | None,
    key: VerificationKey | None,
    trust_root: TrustRoot,
) -> VerifiedEntry:
    logs = trust_root.tlog(entry.log_id)  # 5a
    if not logs:
        raise _invalid(f"log {entry.log_id.hex()[:16]}... is not in trust root {trust_root.name}")
    _check_body(entry, bundle, digest=digest, leaf=leaf, key=key)  # 5b
    integrated_at: datetime | None = None
    if entry.signed_entry_timestamp is not None:  # 5c
        integrated_at = _verify_promise(entry, entry.signed_entry_timestamp, trust_root)
    elif entry.inclusion_proof is None:  # 5e
        raise _invalid("tlog entry has neither an inclusion promise nor an inclusion proof")
    windows = _verify_proof(entry, logs, trust_root)  # 5d
    proof = entry.inclusion_proof
    if _is_rekor_v2(entry) and proof is not None and proof.log_index != entry.log_index:  # 5e
        raise _invalid(f"logIndex {entry.log_index} is not the inclusion proof's {proof.log_index}")
    claimed_at = None
    if integrated_at is None and entry.integrated_time:
        claimed_at = datetime.fromtimestamp(entry.integrated_time, tz=UTC)
    return VerifiedEntry(entry.log_index, entry.log_id.hex(), integrated_at, windows, claimed_at)


def verify_entries(
    bundle: Bundle, *, digest: Digest, leaf: Leaf | None, key: VerificationKey | None, trust_root: TrustRoot
) -> tuple[VerifiedEntry, ...]:
    """Step 5 for every entry of ``bundle`` (all must verify)."""
    return tuple(
        _verify_entry(entry, bundle, digest=digest, leaf=leaf, key=key, trust_root=trust_root)
        for entry in bundle.tlog_entries
    )


def check_log_validity(entries: tuple[VerifiedEntry, ...], times: list[datetime]) -> None:
    """An entry without a SET (Rekor v2) has a log key valid at every signing time ``times``
    (its checkpoint's signer's trust-root ``validFor``, inclusive at the end) -> else TlogEntryInvalid.

    A SET-covered entry was checked at its integrated time in 5c.
    """
    for entry in entries:
        if entry.integrated_at is not None:
            continue
        for when in times:
            if not any(window.contains(when) for window in entry.windows):
                raise _invalid(
                    f"log key {entry.log_id_hex[:16]}... is not valid at the signing time {when.isoformat()}"
                )
