"""DSSE envelopes, PAE, in-toto statements and the signature/attestation split."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import EvidenceError, Reason
from controller.model import COSIGN_SIGNATURE_PREDICATE, Digest
from controller.verify import dsse
from controller.verify.keys import leaf_key

DIGEST = Digest("sha256", "ab" * 32)
PREDICATE = "https://slsa.dev/provenance/v1"


def _statement(*, digest: Digest = DIGEST, predicate_type: str = PREDICATE, version: str = "v1") -> bytes:
    return json.dumps(
        {
            "_type": f"https://in-toto.io/Statement/{version}",
            "subject": [{"name": "img", "digest": {digest.algorithm: digest.hex}}],
            "predicateType": predicate_type,
            "predicate": {"builder": {"id": "x"}},
        }
    ).encode()


def _envelope(
    payload: bytes, key: ec.EllipticCurvePrivateKey, *, payload_type: str = dsse.IN_TOTO_PAYLOAD_TYPE
) -> bytes:
    sig = key.sign(dsse.pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
    return json.dumps(
        {
            "payloadType": payload_type,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(sig).decode()}],
        }
    ).encode()


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_pae_matches_the_spec_example() -> None:
    # the DSSE spec's test vector: https://github.com/secure-systems-lab/dsse/blob/master/protocol.md
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert dsse.pae("é", b"") == "DSSEv1 2 é 0 ".encode()


def test_envelope_verifies_and_statement_binds_the_digest(key: ec.EllipticCurvePrivateKey) -> None:
    envelope = dsse.parse_envelope(_envelope(_statement(), key))
    dsse.verify_envelope(envelope, leaf_key(key.public_key()))
    statement = dsse.parse_statement(envelope.payload)
    assert statement.predicate_type == PREDICATE
    assert statement.raw == envelope.payload
    dsse.check_subject(statement, DIGEST)
    assert dsse.evidence_kind(statement.predicate_type) == "attestation"


def test_v0_1_statement_is_accepted() -> None:
    statement = dsse.parse_statement(_statement(version="v0.1"))
    assert statement.statement_type.endswith("v0.1")


@pytest.mark.parametrize("tamper", ["payload", "payloadType", "sig"])
def test_tampered_envelope_is_signature_invalid(key: ec.EllipticCurvePrivateKey, tamper: str) -> None:
    doc = json.loads(_envelope(_statement(), key))
    if tamper == "payload":
        doc["payload"] = base64.b64encode(_statement(predicate_type="x")).decode()
    elif tamper == "payloadType":
        doc["payloadType"] = "application/json"
    else:
        other = ec.generate_private_key(ec.SECP256R1())
        doc["signatures"][0]["sig"] = base64.b64encode(other.sign(b"x", ec.ECDSA(hashes.SHA256()))).decode()
    envelope = dsse.parse_envelope(json.dumps(doc).encode())
    with pytest.raises(EvidenceError) as caught:
        dsse.verify_envelope(envelope, leaf_key(key.public_key()))
    assert caught.value.reason is Reason.SIGNATURE_INVALID


def test_signature_over_bare_payload_does_not_verify(key: ec.EllipticCurvePrivateKey) -> None:
    payload = _statement()
    doc = json.loads(_envelope(payload, key))
    doc["signatures"][0]["sig"] = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    with pytest.raises(EvidenceError) as caught:
        dsse.verify_envelope(dsse.parse_envelope(json.dumps(doc).encode()), leaf_key(key.public_key()))
    assert caught.value.reason is Reason.SIGNATURE_INVALID


def test_other_digest_is_payload_digest_mismatch() -> None:
    statement = dsse.parse_statement(_statement())
    with pytest.raises(EvidenceError) as caught:
        dsse.check_subject(statement, Digest("sha256", "cd" * 32))
    assert caught.value.reason is Reason.PAYLOAD_DIGEST_MISMATCH
    with pytest.raises(EvidenceError):
        dsse.check_subject(statement, Digest("sha512", "ab" * 64))


def test_cosign_signature_predicate_is_a_signature() -> None:
    assert dsse.evidence_kind(COSIGN_SIGNATURE_PREDICATE) == "signature"
    assert dsse.evidence_kind("https://cosign.sigstore.dev/attestation/v1") == "attestation"


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"payloadType": "t", "payload": "eA==", "signatures": []},
        {"payloadType": "t", "payload": "eA==", "signatures": [{"sig": "!!"}]},
        {"payloadType": "t", "payload": "not base64", "signatures": [{"sig": "eA=="}]},
        {"payloadType": "", "payload": "eA==", "signatures": [{"sig": "eA=="}]},
        {"payloadType": "t", "payload": "eA==", "signatures": [{"sig": "eA==", "extra": 1}]},
        {"payloadType": "t", "payload": "eA==", "signatures": [{"sig": "eA=="}], "extra": 1},
        {"payloadType": "t", "payload": "", "signatures": [{"sig": "eA=="}]},
    ],
)
def test_malformed_envelopes_are_payload_invalid(doc: object) -> None:
    with pytest.raises(EvidenceError) as caught:
        dsse.parse_envelope(json.dumps(doc).encode())
    assert caught.value.reason is Reason.PAYLOAD_INVALID


def test_too_many_signatures_is_refused() -> None:
    doc = {"payloadType": "t", "payload": "eA==", "signatures": [{"sig": "eA=="}] * 9}
    with pytest.raises(EvidenceError) as caught:
        dsse.parse_envelope(json.dumps(doc).encode())
    assert caught.value.reason is Reason.PAYLOAD_INVALID


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(_type="https://in-toto.io/Statement/v2"),
        lambda d: d.update(subject=[]),
        lambda d: d.update(subject=[{"name": "x"}]),
        lambda d: d.update(subject=[{"digest": {"sha256": 1}}]),
        lambda d: d.update(predicate=[1]),
        lambda d: d.update(predicateType=""),
        lambda d: d.update(extra=1),
        lambda d: d.pop("predicateType"),
    ],
)
def test_malformed_statements_are_payload_invalid(mutate: object) -> None:
    doc = json.loads(_statement())
    assert callable(mutate)
    mutate(doc)
    with pytest.raises(EvidenceError) as caught:
        dsse.parse_statement(json.dumps(doc).encode())
    assert caught.value.reason is Reason.PAYLOAD_INVALID


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_parsers_fail_closed_on_arbitrary_bytes(data: bytes) -> None:
    for parse in (dsse.parse_envelope, dsse.parse_statement):
        try:
            parse(data)
        except EvidenceError as e:
            assert e.reason in {Reason.PAYLOAD_INVALID, Reason.LIMIT_EXCEEDED}


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=12,
    )
)
def test_envelope_parser_fails_closed_on_arbitrary_json(value: object) -> None:
    try:
        dsse.envelope_from_json(value)
    except EvidenceError as e:
        assert e.reason in {Reason.PAYLOAD_INVALID, Reason.LIMIT_EXCEEDED}
