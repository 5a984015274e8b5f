"""The kit's bundles have the shapes and bytes of the real ones.

Each kit variant is compared with a real bundle of the same kind (production cosign, sigstore-python's
staging assets, the conformance suite): the key sets and their order at every level of the bundle
and of its decoded entry body, the media type, the entry kind and version, the proto3 JSON encodings
(int64 as decimal strings, standard base64 with padding), the relation of the global and shard log
indexes, the checkpoint's lines, and the serialization layout byte for byte. Then a property test:
any byte changed in a kit bundle is refused with a Reason, never a crash.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.errors import ImprimaturError
from controller.model import Digest
from controller.verify import TrustRoot, VerifyOptions, verify_blob
from tests.kit import bundles
from tests.kit.attest import key_id_of, trusted_key
from tests.kit.sigstore import KeyType, SigningKey, SigstoreKit, generate_key
from tests.verify.realdata import bundle_bytes

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONFORMANCE = Path(__file__).resolve().parents[3] / "shared/testdata/sigstore-conformance/bundle-verify"
ARTIFACT = b"a release artifact\n"
IMAGE = Digest.of(b"an image manifest")
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")
_STD_BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
_INT64_FIELDS = {"logIndex", "treeSize", "integratedTime"}
_BYTES_FIELDS = {
    "rawBytes",
    "keyId",
    "signedEntryTimestamp",
    "rootHash",
    "canonicalizedBody",
    "digest",
    "signature",
    "payload",
    "sig",
    "signedTimestamp",
    "hint",
}


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit(now=NOW)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_key(KeyType.ECDSA_P256)


def _conformance(case: str) -> bytes:
    return (CONFORMANCE / case / "bundle.sigstore.json").read_bytes()


def shape(value: Any) -> Any:
    """Keys in order at every level (lists by their first item), and leaf types."""
    if isinstance(value, dict):
        return [(k, shape(v)) for k, v in value.items()]
    if isinstance(value, list):
        return ["list", shape(value[0]) if value else None]
    return type(value).__name__


def _body(doc: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(base64.b64decode(doc["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"]))
    assert isinstance(body, dict)
    return body


def _kit_bundle(kit: SigstoreKit, key: SigningKey, which: str) -> bytes:
    makers = {
        "cosign-attestation": lambda: bundles.make_attestation_bundle(
            kit, IMAGE, predicate={"Data": "{}", "Timestamp": "2026-11-25T11:59:00Z"}
        ),
        "python-v0.1": lambda: bundles.make_blob_bundle(kit, ARTIFACT, version="0.1", layout="python"),
        "python-v0.3": lambda: bundles.make_blob_bundle(kit, ARTIFACT, layout="python"),
        "python-v0.3-alt": lambda: bundles.make_blob_bundle(
            kit, ARTIFACT, media_type=bundles.MEDIA_TYPE_V03_ALT, layout="python"
        ),
        "v0.2": lambda: bundles.make_blob_bundle(kit, ARTIFACT, version="0.2", layout="conformance"),
        "v0.3-new": lambda: bundles.make_blob_bundle(kit, ARTIFACT, layout="conformance"),
        "rekor2": lambda: bundles.make_blob_bundle(kit, ARTIFACT, tlog="v2", layout="conformance"),
        "rekor2-dsse": lambda: bundles.make_image_signature_bundle(
            kit, IMAGE, tlog="v2", entry_kind="hashedrekord", layout="conformance"
        ),
        "managed-key": lambda: bundles.make_blob_bundle(
            kit, ARTIFACT, key=key, timestamps=1, layout="conformance"
        ),
    }
    return makers[which]()


# (kit variant, real bundle, whose layout) pairs of the same kind
PAIRS = [
    ("cosign-attestation", bundle_bytes("cosign__oci-attestation.sigstore.json")),
    ("python-v0.1", bundle_bytes("sigstore-python__bundle.txt.sigstore")),
    ("python-v0.3", bundle_bytes("sigstore-python__bundle_v3.txt.sigstore")),
    ("python-v0.3-alt", bundle_bytes("sigstore-python__bundle_v3_alt.txt.sigstore")),
    ("v0.2", _conformance("happy-path-v0.2")),
    ("v0.3-new", _conformance("happy-path-v0.3-new-mediaType")),
    ("rekor2", _conformance("rekor2-happy-path")),
    ("rekor2-dsse", _conformance("rekor2-dsse-happy-path")),
    ("managed-key", _conformance("managed-key-happy-path")),
]
IDS = [name for name, _ in PAIRS]


@pytest.mark.parametrize(("which", "real"), PAIRS, ids=IDS)
def test_bundle_shape_is_the_real_one(which: str, real: bytes, kit: SigstoreKit, key: SigningKey) -> None:
    made = json.loads(_kit_bundle(kit, key, which))
    original = json.loads(real)
    assert made["mediaType"] == original["mediaType"]
    assert shape(made) == shape(original)
    made_entry = made["verificationMaterial"]["tlogEntries"][0]
    real_entry = original["verificationMaterial"]["tlogEntries"][0]
    assert made_entry["kindVersion"] == real_entry["kindVersion"]
    assert shape(_body(made)) == shape(_body(original))


CLIENT_LAYOUTS = [(which, real) for which, real in PAIRS if which.startswith(("cosign", "python"))]


@pytest.mark.parametrize(("which", "real"), CLIENT_LAYOUTS, ids=[w for w, _ in CLIENT_LAYOUTS])
def test_serialization_is_the_real_layout(which: str, real: bytes, kit: SigstoreKit, key: SigningKey) -> None:
    """The dumper writes each client's real bundle back byte for byte (cosign: compact UTF-8 and a
    newline; sigstore-python: indent 4); the kit's bundles are written the same way. (The conformance
    files were assembled by hand in several layouts: only their shapes are compared.)"""
    layout: bundles.Layout = "cosign" if which.startswith("cosign") else "python"
    assert bundles.dump(json.loads(real), layout) == real
    made = _kit_bundle(kit, key, which)
    assert bundles.dump(json.loads(made), layout) == made
    assert made.endswith(b"}\n")


def _leaves(value: Any, key: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _leaves(v, k)]
    if isinstance(value, list):
        return [pair for item in value for pair in _leaves(item, key)]
    return [(key, value)]


@pytest.mark.parametrize("which", IDS)
def test_proto3_json_encodings(which: str, kit: SigstoreKit, key: SigningKey) -> None:
    doc = json.loads(_kit_bundle(kit, key, which))
    checked = 0
    for name, value in _leaves(doc):
        if name in _INT64_FIELDS:
            assert isinstance(value, str)
            assert _DECIMAL.match(value), (name, value)
            checked += 1
        elif name in _BYTES_FIELDS:
            assert _STD_BASE64.match(value), (name, value[:40])
            checked += 1
    assert checked >= 8


@pytest.mark.parametrize("style", ["v1", "v2"])
def test_log_indexes_and_checkpoint_lines(style: str, kit: SigstoreKit) -> None:
    """As the real ones: Rekor v1's entry index is global and its proof's the shard's; Rekor v2's are
    one; the checkpoint is origin, size, root hash, a blank line and the log's signature line."""
    real = json.loads(
        bundle_bytes("cosign__oci-attestation.sigstore.json")
        if style == "v1"
        else _conformance("rekor2-happy-path")
    )
    made = json.loads(bundles.make_blob_bundle(kit, ARTIFACT, tlog=style))
    for doc in (real, made):
        entry = doc["verificationMaterial"]["tlogEntries"][0]
        proof = entry["inclusionProof"]
        if style == "v1":
            assert int(entry["logIndex"]) > int(proof["logIndex"])
        else:
            assert entry["logIndex"] == proof["logIndex"]
        assert int(proof["logIndex"]) < int(proof["treeSize"])
        text, _, signatures = proof["checkpoint"]["envelope"].partition("\n\n")
        origin, size, root_hash = text.split("\n")
        assert size == proof["treeSize"]
        assert root_hash == proof["rootHash"]
        host = origin.split(" - ")[0]
        assert (" - " in origin) is (style == "v1")
        assert re.match(rf"^\u2014 {re.escape(host)} [A-Za-z0-9+/=]+\n", signatures)


def test_key_signed_hint_is_the_key_digest(kit: SigstoreKit, key: SigningKey) -> None:
    doc = json.loads(bundles.make_blob_bundle(kit, ARTIFACT, key=key))
    hint = base64.b64decode(doc["verificationMaterial"]["publicKey"]["hint"])
    assert "sha256:" + hint.hex() == key_id_of(key)


def test_statement_fields_in_cosigns_order(kit: SigstoreKit) -> None:
    real = json.loads(bundle_bytes("cosign__oci-attestation.sigstore.json"))
    made = json.loads(bundles.make_attestation_bundle(kit, IMAGE))
    real_statement = json.loads(base64.b64decode(real["dsseEnvelope"]["payload"]))
    made_statement = json.loads(base64.b64decode(made["dsseEnvelope"]["payload"]))
    assert list(made_statement) == list(real_statement)
    assert shape(made_statement["subject"]) == shape(real_statement["subject"])
    v1 = json.loads(
        base64.b64decode(json.loads(_conformance("happy-path-intoto-in-dsse-v3"))["dsseEnvelope"]["payload"])
    )
    made_v1 = json.loads(bundles.statement_v1(IMAGE, "https://slsa.dev/provenance/v1", {}, name="a.txt"))
    assert list(made_v1) == list(v1)
    assert shape(made_v1["subject"]) == shape(v1["subject"])


# --- every byte changed: a Reason, never a crash


@pytest.fixture(scope="module")
def fuzz_inputs(kit: SigstoreKit, key: SigningKey) -> tuple[TrustRoot, list[tuple[bytes, Digest, Any]]]:
    root = TrustRoot.from_json(bundles.trusted_root_json(kit), "kit")
    made = [
        (bundles.make_blob_bundle(kit, ARTIFACT, version="0.1"), Digest.of(ARTIFACT)),
        (bundles.make_blob_bundle(kit, ARTIFACT, tlog="v2"), Digest.of(ARTIFACT)),
        (bundles.make_image_signature_bundle(kit, IMAGE), IMAGE),
        (bundles.make_attestation_bundle(kit, IMAGE, entry_kind="intoto"), IMAGE),
        (bundles.make_blob_bundle(kit, ARTIFACT, key=key), Digest.of(ARTIFACT)),
    ]
    options = VerifyOptions(keys=(trusted_key(key),))
    verified = [
        verify_blob(data, artifact_digest=digest, trust_root=root, now=NOW, options=options)
        for data, digest in made
    ]
    return root, [(data, digest, result) for (data, digest), result in zip(made, verified, strict=True)]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 4), position=st.floats(0, 1, exclude_max=True), byte=st.integers(0, 255))
def test_any_byte_changed_is_a_reason_or_changes_nothing_verified(
    fuzz_inputs: tuple[TrustRoot, list[tuple[bytes, Digest, Any]]],
    key: SigningKey,
    which: int,
    position: float,
    byte: int,
) -> None:
    """A changed byte is refused with a Reason, or it was in what nobody signs and nothing reads
    as fact (the key hint, a Rekor v1 note's signer name, base64 padding bits): then every field of
    the result is the original's."""
    root, made = fuzz_inputs
    data, digest, original = made[which]
    index = int(position * len(data))
    changed = data[:index] + bytes([byte]) + data[index + 1 :]
    options = VerifyOptions(keys=(trusted_key(key),))
    try:
        result = verify_blob(changed, artifact_digest=digest, trust_root=root, now=NOW, options=options)
    except ImprimaturError:
        return
    assert result == original
