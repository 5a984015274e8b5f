"""RFC 6962 / RFC 9162 Merkle tree hashes and inclusion proofs.

A leaf hash is ``SHA-256(0x00 || data)``; an interior node is ``SHA-256(0x01 || left || right)``.
:func:`verify_inclusion` recomputes the root from a leaf hash and its audit path, as RFC 9162
section 2.1.3.2 describes (and as transparency-dev/merkle's ``VerifyInclusion`` does): the path
splits into an *inner* part, where the leaf's index bits say on which side each sibling sits, and a
*border* part along the right edge of the tree, where every sibling is on the left.

Every defect (index outside the tree, a proof of the wrong length, a hash that is not 32 bytes, a
root that does not match) raises ``EvidenceError(Reason.TLOG_ENTRY_INVALID)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from controller.errors import EvidenceError, Reason
from controller.verify.limits import MAX_INCLUSION_PROOF_HASHES, MAX_TREE_SIZE

HASH_SIZE: Final = 32  # SHA-256
_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"


def _invalid(detail: str) -> EvidenceError:
    return EvidenceError(Reason.TLOG_ENTRY_INVALID, detail)


def leaf_hash(data: bytes) -> bytes:
    """The RFC 6962 hash of a leaf: ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 6962 hash of an interior node: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def proof_length(index: int, tree_size: int) -> tuple[int, int]:
    """(inner, border): how many audit-path hashes leaf ``index`` of a ``tree_size`` tree has.

    ``inner`` is the height of the subtree where the paths to ``index`` and to the last leaf part;
    ``border`` counts the right-edge subtrees above it (RFC 9162 2.1.3.2, ``decompInclProof``).
    """
    inner = (index ^ (tree_size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def root_from_inclusion_proof(
    *, leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` implies for ``leaf_hash`` at ``index``. Raises on a malformed proof."""
    if isinstance(index, bool) or isinstance(tree_size, bool):
        raise _invalid("index and tree size must be integers")
    if not 0 < tree_size <= MAX_TREE_SIZE:
        raise _invalid(f"tree size {tree_size} is outside 1..{MAX_TREE_SIZE}")
    if not 0 <= index < tree_size:
        raise _invalid(f"leaf index {index} is not inside a tree of size {tree_size}")
    if len(proof) > MAX_INCLUSION_PROOF_HASHES:
        raise _invalid(f"inclusion proof holds more than {MAX_INCLUSION_PROOF_HASHES} hashes")
    if len(leaf_hash) != HASH_SIZE:
        raise _invalid("leaf hash is not 32 bytes")
    for position, sibling in enumerate(proof):
        if len(sibling) != HASH_SIZE:
            raise _invalid(f"inclusion proof hash {position} is not 32 bytes")
    inner, border = proof_length(index, tree_size)
    if len(proof) != inner + border:
        raise _invalid(
            f"inclusion proof holds {len(proof)} hashes; leaf {index} of {tree_size} needs {inner + border}"
        )
    node = leaf_hash
    for level, sibling in enumerate(proof[:inner]):
        node = node_hash(node, sibling) if (index >> level) & 1 == 0 else node_hash(sibling, node)
    for sibling in proof[inner:]:
        node = node_hash(sibling, node)
    return node


def verify_inclusion(
    *, leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``tree_size`` with ``root_hash``."""
    if len(root_hash) != HASH_SIZE:
        raise _invalid("root hash is not 32 bytes")
    computed = root_from_inclusion_proof(leaf_hash=leaf_hash, index=index, tree_size=tree_size, proof=proof)
    if computed != root_hash:
        raise _invalid("inclusion proof does not lead to the root hash")
