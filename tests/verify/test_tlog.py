"""The Rekor entry of a legacy signature: annotation parsing, SET, body, integrated time (step 5)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import EvidenceError, Reason
from controller.verify import TrustRoot
from controller.verify.certificate import Leaf, check_leaf_profile, parse_leaf
from controller.verify.tlog import (
    RekorEntry,
    check_body,
    check_integrated_time,
    parse_body,
    parse_rekor_entry,
    verify_set,
)
from tests.verify.builders import Sigstore, pem, sign
from tests.verify.realdata import CONNAISSEUR, RATIFY, SALRASHID, SIGSTORE_RS, legacy_signature


def _entry(case: str) -> RekorEntry:
    sig, _ = legacy_signature(case)
    return parse_rekor_entry(sig.annotations["dev.sigstore.cosign/bundle"].encode())


def _leaf(case: str) -> Leaf:
    sig, _ = legacy_signature(case)
    return parse_leaf(sig.annotations["dev.sigstore.cosign/certificate"].encode())


def _reason(call: Any, *args: Any, **kwargs: Any) -> Reason:
    with pytest.raises(EvidenceError) as info:
        call(*args, **kwargs)
    return info.value.reason


@pytest.mark.parametrize("case", [CONNAISSEUR, RATIFY, SALRASHID, SIGSTORE_RS])
def test_real_entries_verify(case: str, public_good: TrustRoot) -> None:
    sig, _ = legacy_signature(case)
    entry = _entry(case)
    log = verify_set(entry, public_good)
    assert log.base_url == "https://rekor.sigstore.dev"
    body = parse_body(entry)
    assert body.kind == ("rekord" if case == SIGSTORE_RS else "hashedrekord")
    signature = base64.b64decode(sig.annotations["dev.cosignproject.cosign/signature"])
    check_body(
        body, payload_sha256=hashlib.sha256(sig.payload).hexdigest(), signature=signature, leaf=_leaf(case)
    )
    check_integrated_time(entry, _leaf(case))


@pytest.mark.parametrize("case", [CONNAISSEUR, SIGSTORE_RS])
def test_canonical_payload_is_rfc8785(case: str) -> None:
    sig, _ = legacy_signature(case)
    payload = json.loads(sig.annotations["dev.sigstore.cosign/bundle"])["Payload"]
    assert _entry(case).canonical_payload() == rfc8785.dumps(payload)


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(min_size=1, max_size=200).map(lambda b: base64.b64encode(b).decode()),
    integrated_time=st.integers(min_value=0, max_value=253402300799),
    log_index=st.integers(min_value=0, max_value=2**53 - 1),
    log_id=st.binary(min_size=32, max_size=32).map(bytes.hex),
)
def test_canonical_payload_matches_rfc8785_for_any_valid_entry(
    body: str, integrated_time: int, log_index: int, log_id: str
) -> None:
    entry = RekorEntry(b"s", body, base64.b64decode(body), integrated_time, log_index, log_id)
    expected = rfc8785.dumps(
        {"body": body, "integratedTime": integrated_time, "logIndex": log_index, "logID": log_id}
    )
    assert entry.canonical_payload() == expected


def _annotation(**changes: Any) -> bytes:
    sig, _ = legacy_signature(CONNAISSEUR)
    doc = json.loads(sig.annotations["dev.sigstore.cosign/bundle"])
    for key, value in changes.items():
        if key == "SignedEntryTimestamp":
            doc[key] = value
        elif value is None:
            del doc["Payload"][key]
        else:
            doc["Payload"][key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b"{}",
        _annotation(SignedEntryTimestamp="!!!"),
        _annotation(SignedEntryTimestamp=""),
        _annotation(SignedEntryTimestamp=5),
        _annotation(body="not base64!"),
        _annotation(body=""),
        _annotation(body={"kind": "hashedrekord"}),
        _annotation(integratedTime="1717082297"),
        _annotation(integratedTime=-1),
        _annotation(integratedTime=1.5),
        _annotation(integratedTime=2**53),
        _annotation(integratedTime=253402300800),
        _annotation(logIndex=True),
        _annotation(logID="C0D23D6AD406973F9559F3BA2D1CA01F84147D8FFC5B8445C224F98B9591801D"),
        _annotation(logID="c0d2"),
        _annotation(logID=None),
        _annotation(extra=1),
    ],
)
def test_malformed_annotation_is_tlog_entry_invalid(data: bytes) -> None:
    assert _reason(parse_rekor_entry, data) is Reason.TLOG_ENTRY_INVALID


def test_unknown_log_is_tlog_entry_invalid(public_good: TrustRoot) -> None:
    entry = replace(_entry(CONNAISSEUR), log_id_hex="00" * 32)
    assert _reason(verify_set, entry, public_good) is Reason.TLOG_ENTRY_INVALID


def test_set_over_other_fields_is_tlog_entry_invalid(public_good: TrustRoot) -> None:
    entry = _entry(CONNAISSEUR)
    other = _entry(RATIFY)
    swapped = replace(entry, body=other.body, body_bytes=other.body_bytes)
    assert _reason(verify_set, swapped, public_good) is Reason.TLOG_ENTRY_INVALID
    assert (
        _reason(verify_set, replace(entry, signed_entry_timestamp=other.signed_entry_timestamp), public_good)
        is Reason.TLOG_ENTRY_INVALID
    )


def test_entry_before_the_log_key_was_valid_is_tlog_entry_invalid(public_good: TrustRoot) -> None:
    entry = replace(_entry(CONNAISSEUR), integrated_time=1)  # 1970: before the key's validFor
    assert _reason(verify_set, entry, public_good) is Reason.TLOG_ENTRY_INVALID


def test_ed25519_rekor_key_verifies_a_set() -> None:
    sigstore = Sigstore(rekor_key=ed25519.Ed25519PrivateKey.generate())
    root = sigstore.trust_root()
    key, cert = sigstore.issue_leaf()
    payload = b"{}"
    annotation = sigstore.rekor_bundle(payload=payload, signature=sign(key, payload), cert=cert)
    entry = parse_rekor_entry(annotation.encode())
    assert verify_set(entry, root).key_details == "PKIX_ED25519"


def _body(kind: str = "hashedrekord", **spec_changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "0.0.1",
        "kind": kind,
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": "00" * 32}},
            "signature": {"content": "AAAA", "publicKey": {"content": "AAAA"}},
        },
    }
    if kind == "rekord":
        body["spec"]["signature"]["format"] = "x509"
    body["spec"].update(spec_changes)
    return body


def _entry_with_body(body: Any) -> RekorEntry:
    text = (body if isinstance(body, str) else json.dumps(body)).encode()
    return RekorEntry(b"s", base64.b64encode(text).decode(), text, 0, 0, "00" * 32)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        [],
        {**_body(), "apiVersion": "0.0.2"},
        {**_body(), "kind": "intoto"},
        _body(data={}),
        _body(data={"hash": {"algorithm": "sha256"}}),
        _body(signature={"content": "AAAA"}),
        _body("rekord", signature={"content": "AAAA", "format": "pgp", "publicKey": {"content": "AAAA"}}),
        _body("rekord", signature={"content": "AAAA", "publicKey": {"content": "AAAA"}}),
        _body(extra=1),
    ],
)
def test_malformed_body_is_tlog_entry_invalid(body: Any) -> None:
    assert _reason(parse_body, _entry_with_body(body)) is Reason.TLOG_ENTRY_INVALID


def test_body_must_describe_this_signature(sigstore: Sigstore) -> None:
    key, cert = sigstore.issue_leaf()
    leaf = check_leaf_profile(cert.public_bytes(serialization.Encoding.DER))
    payload = b'{"x": 1}'
    signature = sign(key, payload)
    digest = hashlib.sha256(payload).hexdigest()

    def body(**signature_changes: Any) -> Any:
        spec_signature = {
            "content": base64.b64encode(signature).decode(),
            "publicKey": {"content": base64.b64encode(pem(cert).encode()).decode()},
        }
        spec_signature.update(signature_changes)
        return parse_body(
            _entry_with_body(
                _body(data={"hash": {"algorithm": "sha256", "value": digest}}, signature=spec_signature)
            )
        )

    check_body(body(), payload_sha256=digest, signature=signature, leaf=leaf)

    other_key, other_cert = sigstore.issue_leaf()
    public_key_pem = other_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    mismatches = [
        (body(), hashlib.sha256(b"other").hexdigest(), signature),
        (body(), digest, sign(key, b"other")),
        (body(content="!!!"), digest, signature),
        (body(publicKey={"content": base64.b64encode(pem(other_cert).encode()).decode()}), digest, signature),
        (body(publicKey={"content": base64.b64encode(public_key_pem).decode()}), digest, signature),
        (body(publicKey={"content": "!!!"}), digest, signature),
    ]
    for parsed, payload_digest, sig_bytes in mismatches:
        assert (
            _reason(check_body, parsed, payload_sha256=payload_digest, signature=sig_bytes, leaf=leaf)
            is Reason.TLOG_BODY_MISMATCH
        )
    sha512_body = replace(body(), hash_algorithm="sha512")
    assert _reason(check_body, sha512_body, payload_sha256=digest, signature=signature, leaf=leaf) is (
        Reason.TLOG_BODY_MISMATCH
    )


def test_integrated_time_bounds_are_inclusive(sigstore: Sigstore) -> None:
    _, cert = sigstore.issue_leaf()
    leaf = check_leaf_profile(cert.public_bytes(serialization.Encoding.DER))
    start = int(leaf.not_before.timestamp())
    end = int(leaf.not_after.timestamp())
    base = RekorEntry(b"s", "AAAA", b"\x00\x00\x00", start, 0, "00" * 32)
    check_integrated_time(base, leaf)
    check_integrated_time(replace(base, integrated_time=end), leaf)
    for outside in (start - 1, end + 1, end + int(timedelta(days=1).total_seconds())):
        assert _reason(check_integrated_time, replace(base, integrated_time=outside), leaf) is (
            Reason.CERTIFICATE_EXPIRED
        )


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_annotation_raises_only_tlog_entry_invalid(data: bytes) -> None:
    try:
        parse_rekor_entry(data)
    except EvidenceError as e:
        assert e.reason is Reason.TLOG_ENTRY_INVALID


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_body_raises_only_tlog_entry_invalid(body: bytes) -> None:
    try:
        parse_body(RekorEntry(b"s", base64.b64encode(body).decode(), body, 0, 0, "00" * 32))
    except EvidenceError as e:
        assert e.reason is Reason.TLOG_ENTRY_INVALID


@pytest.mark.parametrize("from_pem", [True, False])
def test_body_certificate_is_compared_as_der_whatever_its_pem_text(
    sigstore: Sigstore, from_pem: bool
) -> None:
    key, cert = sigstore.issue_leaf()
    text = pem(cert)
    leaf = (
        parse_leaf(text.encode())
        if from_pem
        else check_leaf_profile(cert.public_bytes(serialization.Encoding.DER))
    )
    payload = b'{"x": 1}'
    signature = sign(key, payload)
    digest = hashlib.sha256(payload).hexdigest()

    def check(logged_pem: str) -> Reason | None:
        spec_signature = {
            "content": base64.b64encode(signature).decode(),
            "publicKey": {"content": base64.b64encode(logged_pem.encode()).decode()},
        }
        body = parse_body(
            _entry_with_body(
                _body(data={"hash": {"algorithm": "sha256", "value": digest}}, signature=spec_signature)
            )
        )
        try:
            check_body(body, payload_sha256=digest, signature=signature, leaf=leaf)
        except EvidenceError as e:
            return e.reason
        return None

    # the same certificate, whether or not its PEM text is the annotation's
    for same in (text, text.replace("\n", "\r\n"), "\n " + text + "\n\n"):
        assert check(same) is None
    _, other = sigstore.issue_leaf()
    for different in (pem(other), text + text, text.replace("-----END", "x-----END")):
        assert check(different) is Reason.TLOG_BODY_MISMATCH
