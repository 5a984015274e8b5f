"""The bundle wire format: strict parsing, version rules, proto3 JSON semantics, and fuzzing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import EvidenceError, Reason
from controller.verify.bundle_model import parse_bundle, proto_base64
from tests.verify.realdata import bundle_bytes

V01 = "sigstore-python__bundle.txt.sigstore"
V03 = "sigstore-python__bundle_v3.txt.sigstore"


def _doc(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(bundle_bytes(name))
    return doc


def _reason(doc: object) -> Reason:
    with pytest.raises(EvidenceError) as info:
        parse_bundle(json.dumps(doc).encode())
    return info.value.reason


def test_real_bundles_parse() -> None:
    v01 = parse_bundle(bundle_bytes(V01))
    assert v01.version == "0.1"
    assert v01.tlog_entries[0].signed_entry_timestamp is not None
    v03 = parse_bundle(bundle_bytes(V03))
    assert v03.version == "0.3"
    assert len(v03.certificates) == 1
    assert v03.message is not None
    assert v03.message.digest_algorithm == "sha256"


def test_proto3_null_is_unset_and_numbers_are_int64() -> None:
    doc = _doc(V03)
    doc["dsseEnvelope"] = None
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    entry["logIndex"] = int(entry["logIndex"])
    parsed = parse_bundle(json.dumps(doc).encode())
    assert parsed.tlog_entries[0].log_index == entry["logIndex"]


def test_proto_base64_accepts_what_protojson_accepts() -> None:
    assert proto_base64("aGk=") == b"hi"
    assert proto_base64("aGk") == b"hi"
    assert proto_base64("aG\nk=") == b"hi"
    assert proto_base64("-_8=") == b"\xfb\xff"
    with pytest.raises(ValueError, match="alphabets"):
        proto_base64("-+8=")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(mediaType="application/vnd.dev.sigstore.bundle+json;version=0.4"),
        lambda d: d.update(extra=1),
        lambda d: d.update(dsseEnvelope={"payload": "", "payloadType": "x", "signatures": []}),
        lambda d: d.pop("messageSignature"),
        lambda d: d["verificationMaterial"]["tlogEntries"][0].update(logIndex="-1"),
        lambda d: d["verificationMaterial"]["tlogEntries"][0].update(logIndex="1e3"),
        lambda d: d["verificationMaterial"]["tlogEntries"][0].pop("inclusionProof"),
        lambda d: d["verificationMaterial"]["tlogEntries"][0]["inclusionProof"].pop("checkpoint"),
        lambda d: d["verificationMaterial"].update(publicKey={"hint": "x"}),
        lambda d: d["verificationMaterial"].update(
            x509CertificateChain={"certificates": [d["verificationMaterial"]["certificate"]]}
        ),
        lambda d: d["messageSignature"].update(signature="!!"),
        lambda d: d["messageSignature"]["messageDigest"].update(algorithm="MD5"),
        lambda d: d["verificationMaterial"].update(
            tlogEntries=[d["verificationMaterial"]["tlogEntries"][0]] * 5
        ),
    ],
)
def test_malformed_v03_is_bundle_invalid(mutate: Any) -> None:
    doc = _doc(V03)
    mutate(doc)
    assert _reason(doc) is Reason.BUNDLE_INVALID


def test_v01_requires_a_set_and_v03_forbids_a_chain() -> None:
    doc = _doc(V01)
    doc["verificationMaterial"]["tlogEntries"][0].pop("inclusionPromise")
    assert _reason(doc) is Reason.BUNDLE_INVALID
    doc = _doc(V01)
    doc["verificationMaterial"]["x509CertificateChain"]["certificates"] = []
    assert _reason(doc) is Reason.BUNDLE_INVALID


def test_v01_inclusion_proof_may_lack_a_checkpoint() -> None:
    doc = _doc(V01)
    doc["verificationMaterial"]["tlogEntries"][0]["inclusionProof"].pop("checkpoint", None)
    proof = parse_bundle(json.dumps(doc).encode()).tlog_entries[0].inclusion_proof
    assert proof is not None
    assert proof.checkpoint is None


def test_oversized_field_is_limit_exceeded() -> None:
    doc = _doc(V03)
    doc["verificationMaterial"]["certificate"]["rawBytes"] = "A" * (64 * 1024)
    assert _reason(doc) is Reason.LIMIT_EXCEEDED


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_fail_closed(data: bytes) -> None:
    with pytest.raises(EvidenceError) as info:
        parse_bundle(data)
    assert info.value.reason in {Reason.BUNDLE_INVALID, Reason.LIMIT_EXCEEDED}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.extend(_paths(item, (*prefix, index)))
    return out


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_field_replacement_parses_or_fails_closed(data: st.DataObject) -> None:
    doc = _doc(V03)
    path = data.draw(st.sampled_from(_paths(doc)))
    value = data.draw(
        st.one_of(
            st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.lists(st.integers(), max_size=2)
        )
    )
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    try:
        parse_bundle(json.dumps(doc).encode())
    except EvidenceError as e:
        assert e.reason in {Reason.BUNDLE_INVALID, Reason.LIMIT_EXCEEDED}
