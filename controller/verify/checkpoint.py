"""Signed checkpoints: a transparency log's signed statement of its size and root hash.

Two C2SP formats nest here:

* the **signed note** (https://github.com/C2SP/C2SP/blob/main/signed-note.md): a UTF-8 text of
  non-empty lines, each ending in a newline, then a blank line, then one or more signature lines
  ``— <name> <base64(key hint (4 bytes) || signature)>``. The signatures cover the text (up to and
  including its last newline, not the blank line);
* the **checkpoint** (https://github.com/C2SP/C2SP/blob/main/tlog-checkpoint.md), that text: the
  origin on the first line, the tree size in decimal on the second, the base64 root hash on the
  third, then optional extension lines (Rekor v1 writes ``Timestamp: <nanoseconds>``).

Which signature is the log's, by key hint:

* an **Ed25519** log key (Rekor v2) follows signed-note: the hint is the first 4 bytes of
  ``SHA-256(name || 0x0A || 0x01 || raw public key)``, with the signature line's name, which must
  be the log's (the host of its ``baseUrl``, or the name its log ID hashes);
* any other log key (Rekor v1's ECDSA P-256) follows Rekor v1: the hint is the first 4 bytes of the
  log ID, ``SHA-256(SPKI DER)``, and the signature is ECDSA with SHA-256 over the text.

Lines with another hint (witness cosignatures, keys we do not know) are ignored, as sigstore-go does.
At least one line must be the log's, and every line that is the log's must verify: a bad signature
under the log's own key is an attack or a bug, never noise. Every defect raises
``EvidenceError(Reason.TLOG_ENTRY_INVALID)``. The caller then checks the size and root hash against
its inclusion proof.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ed25519

from controller.errors import EvidenceError, Reason
from controller.verify.limits import (
    MAX_CHECKPOINT_BYTES,
    MAX_CHECKPOINT_EXTENSION_LINES,
    MAX_CHECKPOINT_SIGNATURES,
    MAX_NOTE_SIGNATURE_BYTES,
    MAX_TREE_SIZE,
)
from controller.verify.merkle import HASH_SIZE
from controller.verify.trustroot import TransparencyLog, TrustRoot

_SIGNATURE_PREFIX: Final = "\u2014 "  # an em dash and a space
_KEY_HINT_SIZE: Final = 4
_ED25519_NOTE_ALGORITHM: Final = b"\x01"  # signed-note's signature type identifier for Ed25519
_DECIMAL: Final = re.compile(r"^(0|[1-9][0-9]{0,18})$")  # no sign, no leading zeros, fits an int64
_CONTROL: Final = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # ASCII controls other than newline


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The verified body of a checkpoint note."""

    origin: str
    size: int
    root_hash: bytes
    other: tuple[str, ...]  # extension lines, in order


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a signed note."""

    name: str
    key_hint: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class SignedNote:
    """A signed note split into its signed text and its signature lines (not yet verified)."""

    text: str  # ends with a newline; the signed bytes are its UTF-8 encoding
    signatures: tuple[NoteSignature, ...]


def _invalid(detail: str) -> EvidenceError:
    return EvidenceError(Reason.TLOG_ENTRY_INVALID, f"checkpoint: {detail}")


def _valid_name(name: str) -> bool:
    """signed-note: a key name is non-empty and holds no whitespace and no plus sign."""
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def _signature_line(line: str) -> NoteSignature:
    if not line.startswith(_SIGNATURE_PREFIX):
        raise _invalid("a signature line does not start with an em dash")
    name, space, blob = line[len(_SIGNATURE_PREFIX) :].partition(" ")
    if not space or not _valid_name(name) or " " in blob:
        raise _invalid("a signature line is not '— <name> <base64>'")
    if len(blob) > 4 * ((MAX_NOTE_SIGNATURE_BYTES + 2) // 3):
        raise _invalid("a signature line is too long")
    try:
        raw = binascii.a2b_base64(blob, strict_mode=True)
    except (binascii.Error, ValueError) as e:
        raise _invalid("a signature is not base64") from e
    if len(raw) <= _KEY_HINT_SIZE:
        raise _invalid("a signature is shorter than its key hint")
    return NoteSignature(name=name, key_hint=raw[:_KEY_HINT_SIZE], signature=raw[_KEY_HINT_SIZE:])


def parse_note(envelope: str) -> SignedNote:
    """Split a signed note into text and signature lines (C2SP signed-note). Malformed -> raise."""
    if not isinstance(envelope, str):
        raise _invalid("the envelope is not text")
    if len(envelope) > MAX_CHECKPOINT_BYTES or len(envelope.encode("utf-8", "surrogatepass")) > (
        MAX_CHECKPOINT_BYTES
    ):
        raise _invalid(f"larger than {MAX_CHECKPOINT_BYTES} bytes")
    try:
        envelope.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _invalid("not valid Unicode") from e
    if _CONTROL.search(envelope):
        raise _invalid("holds a control character")
    split = envelope.rfind("\n\n")
    if split < 0:
        raise _invalid("no blank line before the signatures")
    text, signature_block = envelope[: split + 1], envelope[split + 2 :]
    if not signature_block.endswith("\n"):
        raise _invalid("the signatures do not end with a newline")
    lines = signature_block[:-1].split("\n")
    if len(lines) > MAX_CHECKPOINT_SIGNATURES:
        raise _invalid(f"more than {MAX_CHECKPOINT_SIGNATURES} signatures")
    signatures = tuple(_signature_line(line) for line in lines)
    return SignedNote(text=text, signatures=signatures)


def parse_checkpoint_text(text: str) -> Checkpoint:
    """The checkpoint fields of a note's text (C2SP tlog-checkpoint). Malformed -> raise."""
    if not text.endswith("\n"):
        raise _invalid("the text does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise _invalid("fewer than three lines (origin, size, root hash)")
    if len(lines) - 3 > MAX_CHECKPOINT_EXTENSION_LINES:
        raise _invalid(f"more than {MAX_CHECKPOINT_EXTENSION_LINES} extension lines")
    origin, size_text, root_text, *other = lines
    if not origin or origin != origin.strip():
        raise _invalid("the first line is not an origin")
    if not _DECIMAL.match(size_text) or int(size_text) > MAX_TREE_SIZE:
        raise _invalid("the second line is not a tree size")
    try:
        root_hash = binascii.a2b_base64(root_text, strict_mode=True)
    except (binascii.Error, ValueError) as e:
        raise _invalid("the third line is not a base64 root hash") from e
    if len(root_hash) != HASH_SIZE:
        raise _invalid("the root hash is not 32 bytes")
    if any(not line for line in other):
        raise _invalid("an empty extension line")
    return Checkpoint(origin=origin, size=int(size_text), root_hash=root_hash, other=tuple(other))


def key_hint(log: TransparencyLog, name: str) -> bytes | None:
    """The 4-byte key hint with which ``log``'s key signs as ``name``; None if it has no usable key."""
    if log.key is None:
        return None
    key = log.key.key
    if isinstance(key, ed25519.Ed25519PublicKey):
        material = name.encode("utf-8") + b"\n" + _ED25519_NOTE_ALGORITHM + key.public_bytes_raw()
        key_id = hashlib.sha256(material).digest()
        # A note key is a (name, key) pair: the name must be the log's, either its host (the
        # origin Rekor v2 signs as) or the name its trust-root log ID or checkpoint key ID hashes.
        if name != log.origin and key_id not in (log.log_id, log.checkpoint_key_id):
            return None
        return key_id[:_KEY_HINT_SIZE]
    return log.log_id[:_KEY_HINT_SIZE]


def _signed_by(note: SignedNote, logs: tuple[TransparencyLog, ...]) -> bool:
    """True when some line is a valid signature by one of ``logs``; raise on a bad one of theirs."""
    message = note.text.encode("utf-8")
    verified = False
    for line in note.signatures:
        for log in logs:
            if log.key is None or key_hint(log, line.name) != line.key_hint:
                continue
            if not log.key.verify(line.signature, message):
                raise _invalid(f"the signature of {line.name[:80]!r} under the log's key does not verify")
            verified = True
    return verified


def verify_checkpoint(
    envelope: str, trust_root: TrustRoot, *, log: TransparencyLog | None = None
) -> Checkpoint:
    """Parse a signed checkpoint and verify the log's signature on it.

    ``log`` is the Rekor log the entry names (found by log ID); without it, any Rekor log of
    ``trust_root`` may have signed. The caller compares size and root hash with its inclusion proof.
    """
    note = parse_note(envelope)
    checkpoint = parse_checkpoint_text(note.text)
    logs = (
        (log,) if log is not None else tuple(entry for group in trust_root.tlogs.values() for entry in group)
    )
    if not _signed_by(note, logs):
        raise _invalid("no signature by the log's key")
    return checkpoint
