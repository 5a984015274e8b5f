"""Signed checkpoints: real Rekor v1/v2 notes, generated ones, a tamper matrix and fuzzing."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import EvidenceError, Reason
from controller.verify import TrustRoot
from controller.verify.checkpoint import Checkpoint, parse_note, verify_checkpoint
from controller.verify.trustroot import TransparencyLog
from tests.kit.transparency import MerkleLog
from tests.sigstore_real import real_data_dir
from tests.verify.builders import NOW, Sigstore


def _conformance(case: str) -> tuple[str, TransparencyLog | None, TrustRoot]:
    folder = real_data_dir().parent / "sigstore-conformance" / "bundle-verify" / case
    (entry,) = json.loads((folder / "bundle.sigstore.json").read_text())["verificationMaterial"][
        "tlogEntries"
    ]
    root_file = folder / "trusted_root.json"
    root_bytes = (
        root_file.read_bytes()
        if root_file.exists()
        else (real_data_dir() / "trusted_root.production.json").read_bytes()
    )
    trust_root = TrustRoot.from_json(root_bytes, case)
    logs = trust_root.tlog(base64.b64decode(entry["logId"]["keyId"]))
    return entry["inclusionProof"]["checkpoint"]["envelope"], (logs[0] if logs else None), trust_root


def _reason(call: Callable[[], object]) -> Reason:
    with pytest.raises(EvidenceError) as info:
        call()
    return info.value.reason


ACCEPTED = [
    "happy-path-v0.3",
    "rekor2-happy-path",
    "rekor2-checkpoint-cosigned",
    "rekor2-checkpoint-multiple-cosigs",
    "rekor2-checkpoint-origin-not-first",
    "rekor2-checkpoint-two-sigs-cosigned",
    "rekor2-checkpoint-two-sigs-from-origin",
]
REJECTED = [
    "checkpoint-bad-keyhint_fail",
    "invalid-checkpoint-signature_fail",
    "rekor2-checkpoint-missing-log-signature_fail",
    "rekor2-checkpoint-missing-origin_fail",
    "rekor2-checkpoint-missing-root-hash_fail",
    "rekor2-checkpoint-missing-size_fail",
    "rekor2-checkpoint-no-matching-signature_fail",
]


@pytest.mark.parametrize("case", ACCEPTED)
def test_real_checkpoints_verify(case: str) -> None:
    envelope, log, trust_root = _conformance(case)
    assert log is not None
    checkpoint = verify_checkpoint(envelope, trust_root, log=log)
    assert checkpoint.size > 0
    assert len(checkpoint.root_hash) == 32
    assert verify_checkpoint(envelope, trust_root) == checkpoint  # without the log: any trusted Rekor


@pytest.mark.parametrize("case", REJECTED)
def test_real_bad_checkpoints_fail(case: str) -> None:
    envelope, log, trust_root = _conformance(case)
    assert _reason(lambda: verify_checkpoint(envelope, trust_root, log=log)) is Reason.TLOG_ENTRY_INVALID


def test_rekor_v1_checkpoint_fields() -> None:
    envelope, log, trust_root = _conformance("happy-path-v0.3")
    checkpoint = verify_checkpoint(envelope, trust_root, log=log)
    assert checkpoint.origin == "rekor.sigstore.dev - 2605736670972794746"
    assert checkpoint.size == 75408393
    assert checkpoint.other == ()


# --- generated logs


@pytest.fixture(scope="module")
def logs() -> dict[str, MerkleLog]:
    out = {"v1": MerkleLog.v1(), "v2": MerkleLog.v2(), "witness": MerkleLog.v2("witness.test")}
    for log in out.values():
        for i in range(5):
            log.append(b"body %d" % i)
    return out


def _root(sigstore: Sigstore, *logs: MerkleLog) -> TrustRoot:
    def mutate(doc: dict[str, Any]) -> None:
        doc["tlogs"] = [log.trusted_root_entry(start=NOW - timedelta(days=30)) for log in logs]

    return sigstore.trust_root(mutate)


@pytest.mark.parametrize("style", ["v1", "v2"])
def test_generated_checkpoints_verify(style: str, logs: dict[str, MerkleLog], sigstore: Sigstore) -> None:
    log = logs[style]
    trust_root = _root(sigstore, log)
    (entry,) = trust_root.tlog(log.log_id)
    checkpoint = verify_checkpoint(log.checkpoint(cosigners=[logs["witness"]]), trust_root, log=entry)
    assert checkpoint == Checkpoint(
        log.origin, 5, log.root(), () if log.is_v2 else ("Timestamp: 1689177396617352539",)
    )


def _swap_lines(envelope: str, a: int, b: int) -> str:
    lines = envelope.split("\n")
    lines[a], lines[b] = lines[b], lines[a]
    return "\n".join(lines)


def _flip_signature_byte(envelope: str, at: int) -> str:
    text, _, signatures = envelope.partition("\n\n")
    dash, name, blob = signatures.rstrip("\n").split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[at] ^= 1
    return f"{text}\n\n{dash} {name} {base64.b64encode(bytes(raw)).decode()}\n"


TAMPER: dict[str, Callable[[str], str]] = {
    "root hash": lambda e: e.replace(e.split("\n")[2], base64.b64encode(b"\x01" * 32).decode(), 1),
    "size": lambda e: e.replace("\n5\n", "\n6\n", 1),
    "origin": lambda e: "x" + e,
    "origin and size swapped": lambda e: _swap_lines(e, 0, 1),
    "key hint": lambda e: _flip_signature_byte(e, 0),
    "signature": lambda e: _flip_signature_byte(e, 10),
    "no blank line": lambda e: e.replace("\n\n", "\n", 1),
    "no final newline": lambda e: e.rstrip("\n"),
    "no signature": lambda e: e.partition("\n\n")[0] + "\n\n",
    "missing root line": lambda e: "\n".join(line for i, line in enumerate(e.split("\n")) if i != 2),
    "empty extension line": lambda e: e.replace("\n\n", "\n\n\n", 1),
    "leading zero size": lambda e: e.replace("\n5\n", "\n05\n", 1),
    "signed size plus sign": lambda e: e.replace("\n5\n", "\n+5\n", 1),
    "short root hash": lambda e: e.replace(e.split("\n")[2], base64.b64encode(b"\x01" * 31).decode(), 1),
    "carriage return": lambda e: e.replace("\n", "\r\n", 1),
    "no em dash": lambda e: e.replace("\u2014", "-"),
    "name with a space": lambda e: e.replace("\u2014 ", "\u2014 a ", 1),
    "bad base64": lambda e: e[:-3] + "!!\n",
    "too many signatures": lambda e: e + e.partition("\n\n")[2] * 16,
    "too large": lambda e: e.replace("\n\n", "\n" + "x\n" * 9000 + "\n", 1),
}


@pytest.mark.parametrize("style", ["v1", "v2"])
@pytest.mark.parametrize("name", sorted(TAMPER))
def test_tamper_matrix(style: str, name: str, logs: dict[str, MerkleLog], sigstore: Sigstore) -> None:
    log = logs[style]
    trust_root = _root(sigstore, log)
    (entry,) = trust_root.tlog(log.log_id)
    envelope = TAMPER[name](log.checkpoint())
    assert _reason(lambda: verify_checkpoint(envelope, trust_root, log=entry)) is Reason.TLOG_ENTRY_INVALID


def test_another_logs_signature_is_not_the_logs(logs: dict[str, MerkleLog], sigstore: Sigstore) -> None:
    trust_root = _root(sigstore, logs["v1"], logs["v2"])
    (v1,) = trust_root.tlog(logs["v1"].log_id)
    assert (
        _reason(lambda: verify_checkpoint(logs["v2"].checkpoint(), trust_root, log=v1))
        is Reason.TLOG_ENTRY_INVALID
    )


def test_ed25519_hint_depends_on_the_signers_name(logs: dict[str, MerkleLog], sigstore: Sigstore) -> None:
    log = logs["v2"]
    trust_root = _root(sigstore, log)
    (entry,) = trust_root.tlog(log.log_id)
    text = log.checkpoint_text()
    # the right key and signature, but the hint computed for another name: not the log's line
    renamed = text + "\n" + log.signature_line(text, name="other.test")
    assert _reason(lambda: verify_checkpoint(renamed, trust_root, log=entry)) is Reason.TLOG_ENTRY_INVALID


def test_cosignature_first_is_ignored(logs: dict[str, MerkleLog], sigstore: Sigstore) -> None:
    log, witness = logs["v2"], logs["witness"]
    trust_root = _root(sigstore, log)
    text = log.checkpoint_text()
    envelope = text + "\n" + witness.signature_line(text) + log.signature_line(text)
    assert verify_checkpoint(envelope, trust_root).size == 5


def test_a_bad_line_under_the_logs_key_is_refused_even_beside_a_good_one(
    logs: dict[str, MerkleLog], sigstore: Sigstore
) -> None:
    log = logs["v1"]
    trust_root = _root(sigstore, log)
    good = log.checkpoint()
    text, _, line = good.partition("\n\n")
    envelope = _flip_signature_byte(good, 10) + line
    assert _reason(lambda: verify_checkpoint(envelope, trust_root)) is Reason.TLOG_ENTRY_INVALID
    assert verify_checkpoint(text + "\n\n" + line, trust_root).size == 5


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=600))
def test_arbitrary_text_raises_only_tlog_entry_invalid(text: str) -> None:
    root = TrustRoot.from_json((real_data_dir() / "trusted_root.production.json").read_bytes(), "p")
    try:
        verify_checkpoint(text, root)
    except EvidenceError as e:
        assert e.reason is Reason.TLOG_ENTRY_INVALID
    else:
        pytest.fail("an arbitrary text verified")


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40), max_size=8),
    signatures=st.lists(st.tuples(st.text(max_size=10), st.binary(max_size=80)), max_size=4),
)
def test_note_parser_raises_only_tlog_entry_invalid(
    lines: list[str], signatures: list[tuple[str, bytes]]
) -> None:
    note = "".join(f"{line}\n" for line in lines) + "\n"
    note += "".join(f"\u2014 {name} {base64.b64encode(blob).decode()}\n" for name, blob in signatures)
    try:
        parsed = parse_note(note)
    except EvidenceError as e:
        assert e.reason is Reason.TLOG_ENTRY_INVALID
    else:
        assert all(len(s.key_hint) == 4 for s in parsed.signatures)
