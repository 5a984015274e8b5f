"""The simple-signing payload parser (step 2)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import EvidenceError, Reason
from controller.model import Digest
from controller.verify.payload import check_payload_digest, parse_payload
from tests.verify.realdata import CONNAISSEUR, SALRASHID, legacy_signature

DIGEST = "sha256:" + "12" * 32


def _payload(**overrides: object) -> bytes:
    doc: dict[str, object] = {
        "critical": {
            "identity": {"docker-reference": "registry.test/app"},
            "image": {"docker-manifest-digest": DIGEST},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    doc.update(overrides)
    return json.dumps(doc).encode()


@pytest.mark.parametrize("case", [CONNAISSEUR, SALRASHID])
def test_real_payloads_parse(case: str) -> None:
    sig, digest = legacy_signature(case)
    payload = parse_payload(sig.payload)
    assert payload.docker_manifest_digest == str(digest)
    check_payload_digest(payload, digest)


def test_optional_values_are_stringified() -> None:
    payload = parse_payload(
        _payload(optional={"s": "x", "n": 1, "f": 1.5, "b": False, "z": None, "o": {"b": 1, "a": [2]}})
    )
    assert payload.annotations == {
        "s": "x",
        "n": "1",
        "f": "1.5",
        "b": "false",
        "z": "null",
        "o": '{"a":[2],"b":1}',
    }
    assert payload.docker_reference == "registry.test/app"


def test_missing_optional_is_no_annotations() -> None:
    doc = json.loads(_payload())
    del doc["optional"]
    assert parse_payload(json.dumps(doc).encode()).annotations == {}


def test_other_digest_is_payload_digest_mismatch() -> None:
    payload = parse_payload(_payload())
    with pytest.raises(EvidenceError) as info:
        check_payload_digest(payload, Digest.parse("sha256:" + "34" * 32))
    assert info.value.reason is Reason.PAYLOAD_DIGEST_MISMATCH


def _critical(**changes: object) -> bytes:
    doc = json.loads(_payload())
    doc["critical"].update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "data",
    [
        b"[]",
        b"null",
        b"{}",
        b'{"critical": {}}',
        _payload(optional=[]),
        _payload(optional="x"),
        _payload(extra=1),
        _critical(type="atomic container signature"),
        _critical(unknown="must be rejected by the containers-signature spec"),
        _critical(image={"docker-manifest-digest": 1}),
        _critical(image={}),
        _critical(identity={"docker-reference": None}),
        _payload().replace(b'"optional"', b'"critical"'),  # duplicate key
    ],
)
def test_malformed_payload_is_payload_invalid(data: bytes) -> None:
    with pytest.raises(EvidenceError) as info:
        parse_payload(data)
    assert info.value.reason is Reason.PAYLOAD_INVALID


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_payload_invalid(data: bytes) -> None:
    try:
        parse_payload(data)
    except EvidenceError as e:
        assert e.reason is Reason.PAYLOAD_INVALID


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=10,
    )
)
def test_arbitrary_json_raises_only_payload_invalid(value: object) -> None:
    try:
        parse_payload(json.dumps(value).encode())
    except EvidenceError as e:
        assert e.reason is Reason.PAYLOAD_INVALID
