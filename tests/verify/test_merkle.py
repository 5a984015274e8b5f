"""RFC 6962 inclusion proofs: the kit's recursive tree against the iterative verifier, and tampering."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import EvidenceError, Reason
from controller.verify.merkle import leaf_hash, proof_length, verify_inclusion
from tests.kit.transparency import audit_path, mth
from tests.sigstore_real import real_data_dir


def _tree(n: int) -> list[bytes]:
    return [leaf_hash(b"entry %d" % i) for i in range(n)]


def _reason(**kwargs: object) -> Reason:
    with pytest.raises(EvidenceError) as info:
        verify_inclusion(**kwargs)  # type: ignore[arg-type]
    return info.value.reason


def test_leaf_hash_has_the_rfc6962_prefix() -> None:
    assert leaf_hash(b"") == bytes.fromhex("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33])
def test_every_leaf_of_small_trees_verifies(size: int) -> None:
    leaves = _tree(size)
    root = mth(leaves)
    for index in range(size):
        proof = audit_path(index, leaves)
        assert len(proof) == sum(proof_length(index, size))
        verify_inclusion(leaf_hash=leaves[index], index=index, tree_size=size, proof=proof, root_hash=root)


@settings(max_examples=150, deadline=None)
@given(size=st.integers(1, 300), data=st.data())
def test_random_trees_verify_and_any_flipped_bit_fails(size: int, data: st.DataObject) -> None:
    leaves = _tree(size)
    index = data.draw(st.integers(0, size - 1))
    proof = audit_path(index, leaves)
    root = mth(leaves)
    verify_inclusion(leaf_hash=leaves[index], index=index, tree_size=size, proof=proof, root_hash=root)
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = bytearray(proof[which])
        bad[bit // 8] ^= 1 << (bit % 8)
        tampered = [*proof[:which], bytes(bad), *proof[which + 1 :]]
        assert (
            _reason(leaf_hash=leaves[index], index=index, tree_size=size, proof=tampered, root_hash=root)
            is Reason.TLOG_ENTRY_INVALID
        )


def _case() -> tuple[bytes, int, int, list[bytes], bytes]:
    leaves = _tree(13)
    return leaves[6], 6, 13, audit_path(6, leaves), mth(leaves)


TAMPER = {
    "root hash flipped": lambda h, i, n, p, r: (h, i, n, p, bytes([r[0] ^ 1]) + r[1:]),
    "leaf flipped": lambda h, i, n, p, r: (bytes([h[0] ^ 1]) + h[1:], i, n, p, r),
    "other index": lambda h, i, n, p, r: (h, i + 1, n, p, r),
    "index equals size": lambda h, i, n, p, r: (h, n, n, p, r),
    "negative index": lambda h, i, n, p, r: (h, -1, n, p, r),
    # a size of the same shape (13 -> 14 for leaf 6) computes the same root: the signed checkpoint
    # binds the size (test_checkpoint); a size of another shape needs another proof length
    "other size": lambda h, i, n, p, r: (h, i, 2 * n, p, r),
    "size zero": lambda h, i, n, p, r: (h, 0, 0, p, r),
    "size past int64": lambda h, i, n, p, r: (h, i, 2**63, p, r),
    "proof hash missing": lambda h, i, n, p, r: (h, i, n, p[:-1], r),
    "proof hash extra": lambda h, i, n, p, r: (h, i, n, [*p, p[0]], r),
    "proof hashes swapped": lambda h, i, n, p, r: (h, i, n, [p[1], p[0], *p[2:]], r),
    "short proof hash": lambda h, i, n, p, r: (h, i, n, [p[0][:31], *p[1:]], r),
    "long root": lambda h, i, n, p, r: (h, i, n, p, r + b"\x00"),
    "short leaf": lambda h, i, n, p, r: (h[:16], i, n, p, r),
    "65 hashes": lambda h, i, n, p, r: (h, 2**62, 2**63 - 1, [p[0]] * 65, r),
}


@pytest.mark.parametrize("name", sorted(TAMPER))
def test_tamper_matrix(name: str) -> None:
    h, i, n, p, r = TAMPER[name](*_case())
    assert _reason(leaf_hash=h, index=i, tree_size=n, proof=p, root_hash=r) is Reason.TLOG_ENTRY_INVALID


def test_largest_tree_proof_is_bounded_at_64() -> None:
    assert sum(proof_length(2**63 - 2, 2**63 - 1)) <= 64
    assert sum(proof_length(0, 2**63 - 1)) <= 64


def _real_proofs() -> list[tuple[str, dict[str, object]]]:
    folder = real_data_dir().parent / "sigstore-conformance" / "bundle-verify"
    out: list[tuple[str, dict[str, object]]] = []
    for case in (
        "happy-path-v0.3",
        "rekor2-happy-path",
        "happy-path-intoto-in-dsse-v3",
        "intoto-with-custom-trust-root",
    ):
        bundle = json.loads((folder / case / "bundle.sigstore.json").read_text())
        (entry,) = bundle["verificationMaterial"]["tlogEntries"]
        out.append((case, entry))
    bundles = real_data_dir() / "bundles"
    for path in sorted(bundles.glob("*.sigstore*")):
        bundle = json.loads(path.read_text())
        entries = bundle["verificationMaterial"]["tlogEntries"]
        out.extend((path.name, entry) for entry in entries if "inclusionProof" in entry)
    return out


def test_real_production_inclusion_proofs_verify() -> None:
    cases = _real_proofs()
    assert len(cases) >= 8
    for _, entry in cases:
        proof = entry["inclusionProof"]
        assert isinstance(proof, dict)
        verify_inclusion(
            leaf_hash=leaf_hash(base64.b64decode(str(entry["canonicalizedBody"]))),
            index=int(proof["logIndex"]),
            tree_size=int(proof["treeSize"]),
            proof=[base64.b64decode(h) for h in proof["hashes"]],
            root_hash=base64.b64decode(proof["rootHash"]),
        )


@pytest.mark.parametrize("case", ["inclusion-proof-corrupted-hash_fail", "invalid-inclusion-proof_fail"])
def test_conformance_bad_proofs_fail(case: str) -> None:
    folder: Path = real_data_dir().parent / "sigstore-conformance" / "bundle-verify" / case
    (entry,) = json.loads((folder / "bundle.sigstore.json").read_text())["verificationMaterial"][
        "tlogEntries"
    ]
    proof = entry["inclusionProof"]
    assert (
        _reason(
            leaf_hash=leaf_hash(base64.b64decode(entry["canonicalizedBody"])),
            index=int(proof["logIndex"]),
            tree_size=int(proof["treeSize"]),
            proof=[base64.b64decode(h) for h in proof["hashes"]],
            root_hash=base64.b64decode(proof["rootHash"]),
        )
        is Reason.TLOG_ENTRY_INVALID
    )
