"""RFC 3161 timestamps: real Sigstore TSA tokens, a generated TSA, a tamper matrix and fuzzing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import EvidenceError, Reason
from controller.verify import TrustRoot
from controller.verify.timestamp import verify_timestamp
from tests.kit.transparency import SHA512_OID, TestTSA
from tests.sigstore_real import real_data_dir
from tests.verify.builders import NOW, Sigstore

SIGNATURE = b"the bundle's signature bytes"


def _conformance(case: str) -> tuple[bytes, bytes, TrustRoot]:
    folder = real_data_dir().parent / "sigstore-conformance" / "bundle-verify" / case
    bundle = json.loads((folder / "bundle.sigstore.json").read_text())
    (stamp,) = bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    if "dsseEnvelope" in bundle:
        signature = base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"])
    else:
        signature = base64.b64decode(bundle["messageSignature"]["signature"])
    root = folder / "trusted_root.json"
    data = (
        root.read_bytes()
        if root.exists()
        else (real_data_dir() / "trusted_root.production.json").read_bytes()
    )
    return base64.b64decode(stamp["signedTimestamp"]), signature, TrustRoot.from_json(data, case)


def _reason(token: bytes, signed: bytes, trust_root: TrustRoot) -> Reason:
    with pytest.raises(EvidenceError) as info:
        verify_timestamp(token, signed_data=signed, trust_root=trust_root)
    return info.value.reason


ACCEPTED = {
    "rekor2-happy-path": datetime(2025, 6, 12, 12, 2, 20, tzinfo=UTC),
    "rekor2-timestamp-with-embedded-cert": datetime(2025, 8, 6, 18, 51, 36, tzinfo=UTC),
    "rekor2-timestamp-without-embedded-cert": datetime(2025, 8, 6, 19, 3, 51, tzinfo=UTC),
    "rekor2-timestamp-with-expired-cert-chain": datetime(2025, 8, 7, 15, 32, 26, tzinfo=UTC),
    "trust-root-tsa-validity-end-inclusive": datetime(2025, 6, 12, 12, 2, 20, tzinfo=UTC),  # == validFor.end
    "rekor2-dsse-happy-path": datetime(2026, 5, 13, 19, 23, 33, tzinfo=UTC),
    "intoto-with-custom-trust-root": datetime(2023, 2, 1, tzinfo=UTC),
}
REJECTED = [
    "rekor2-timestamp-outside-trust-root-tsa-validity_fail",
    "rekor2-timestamp-outside-tsa-cert-validity_fail",
    "rekor2-timestamp-payload-mismatch_fail",
    "rekor2-timestamp-untrusted-tsa-with-embedded-cert_fail",
    "rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail",
]


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_real_timestamps_verify(case: str) -> None:
    token, signature, trust_root = _conformance(case)
    when = verify_timestamp(token, signed_data=signature, trust_root=trust_root)
    assert when == ACCEPTED[case]
    assert when.tzinfo is UTC


@pytest.mark.parametrize("case", REJECTED)
def test_real_bad_timestamps_fail(case: str) -> None:
    token, signature, trust_root = _conformance(case)
    assert _reason(token, signature, trust_root) is Reason.TIMESTAMP_INVALID


def test_real_token_over_other_bytes_fails() -> None:
    token, signature, trust_root = _conformance("rekor2-happy-path")
    assert _reason(token, signature + b"x", trust_root) is Reason.TIMESTAMP_INVALID


# --- the generated TSA


@pytest.fixture(scope="module")
def tsa() -> TestTSA:
    return TestTSA.create(NOW, intermediate=True)


def _root(sigstore: Sigstore, *entries: dict[str, Any]) -> TrustRoot:
    return sigstore.trust_root(lambda doc: doc.__setitem__("timestampAuthorities", list(entries)))


@pytest.mark.parametrize("embed", [True, False])
@pytest.mark.parametrize("intermediate", [True, False])
def test_generated_tokens_verify(embed: bool, intermediate: bool, sigstore: Sigstore) -> None:
    authority = TestTSA.create(NOW, intermediate=intermediate)
    trust_root = _root(sigstore, authority.trusted_root_entry(start=NOW - timedelta(days=1)))
    token = authority.response(data=SIGNATURE, when=NOW, embed=embed)
    assert verify_timestamp(token, signed_data=SIGNATURE, trust_root=trust_root) == NOW


def test_sha512_imprint_verifies(tsa: TestTSA, sigstore: Sigstore) -> None:
    trust_root = _root(sigstore, tsa.trusted_root_entry(start=NOW - timedelta(days=1)))
    token = tsa.response(data=SIGNATURE, when=NOW, imprint_oid=SHA512_OID)
    assert verify_timestamp(token, signed_data=SIGNATURE, trust_root=trust_root) == NOW


def test_authority_window_is_inclusive_at_both_ends(tsa: TestTSA, sigstore: Sigstore) -> None:
    token = tsa.response(data=SIGNATURE, when=NOW)
    exact = _root(sigstore, tsa.trusted_root_entry(start=NOW, end=NOW))
    assert verify_timestamp(token, signed_data=SIGNATURE, trust_root=exact) == NOW
    before = _root(
        sigstore, tsa.trusted_root_entry(start=NOW - timedelta(days=2), end=NOW - timedelta(seconds=1))
    )
    assert _reason(token, SIGNATURE, before) is Reason.TIMESTAMP_INVALID
    after = _root(sigstore, tsa.trusted_root_entry(start=NOW + timedelta(seconds=1)))
    assert _reason(token, SIGNATURE, after) is Reason.TIMESTAMP_INVALID


def test_second_authority_is_tried(tsa: TestTSA, sigstore: Sigstore) -> None:
    other = TestTSA.create(NOW, name="other-tsa")
    trust_root = _root(
        sigstore,
        other.trusted_root_entry(start=NOW - timedelta(days=1)),
        tsa.trusted_root_entry(start=NOW - timedelta(days=1)),
    )
    assert (
        verify_timestamp(tsa.response(data=SIGNATURE, when=NOW), signed_data=SIGNATURE, trust_root=trust_root)
        == NOW
    )


def _tamper(tsa: TestTSA, name: str) -> tuple[bytes, TestTSA]:
    """A token (and the TSA the trust root trusts) for one tamper case."""
    good = tsa.response(data=SIGNATURE, when=NOW)
    if name == "imprint over other data":
        return tsa.response(data=SIGNATURE + b"!", when=NOW), tsa
    if name == "time before the leaf":
        late = TestTSA.create(NOW, leaf_not_before=NOW + timedelta(hours=1))
        return late.response(data=SIGNATURE, when=NOW), late
    if name == "time after the leaf":
        early = TestTSA.create(NOW, leaf_not_after=NOW - timedelta(hours=1))
        return early.response(data=SIGNATURE, when=NOW), early
    if name in {"untrusted TSA, embedded chain", "untrusted TSA, no chain"}:
        rogue = TestTSA.create(NOW, name="test-tsa")  # same names, other keys
        return rogue.response(data=SIGNATURE, when=NOW, embed=name.endswith("embedded chain")), tsa
    if name == "signed by another key":
        rogue = TestTSA.create(NOW)
        return tsa.response(data=SIGNATURE, when=NOW, signer=rogue.leaf_key), tsa
    if name == "status rejection":
        return tsa.response(data=SIGNATURE, when=NOW, status=2), tsa
    if name == "EKU not critical":
        lax = TestTSA.create(NOW, eku_critical=False)
        return lax.response(data=SIGNATURE, when=NOW), lax
    if name == "TSTInfo swapped after signing":
        other = tsa.tst_info(data=SIGNATURE, when=NOW - timedelta(days=1))
        signed = tsa.tst_info(data=SIGNATURE, when=NOW)
        return good.replace(signed, other), tsa
    if name == "truncated":
        return good[:-10], tsa
    if name == "trailing bytes":
        return good + b"\x00", tsa
    if name == "empty":
        return b"", tsa
    if name == "too large":
        return good + b"\x00" * (64 * 1024), tsa
    raise AssertionError(name)


TAMPER = [
    "imprint over other data",
    "time before the leaf",
    "time after the leaf",
    "untrusted TSA, embedded chain",
    "untrusted TSA, no chain",
    "signed by another key",
    "status rejection",
    "EKU not critical",
    "TSTInfo swapped after signing",
    "truncated",
    "trailing bytes",
    "empty",
    "too large",
]


@pytest.mark.parametrize("name", TAMPER)
def test_tamper_matrix(name: str, tsa: TestTSA, sigstore: Sigstore) -> None:
    token, trusted = _tamper(tsa, name)
    trust_root = _root(sigstore, trusted.trusted_root_entry(start=NOW - timedelta(days=1)))
    assert _reason(token, SIGNATURE, trust_root) is Reason.TIMESTAMP_INVALID


def test_no_timestamp_authority_in_the_root(tsa: TestTSA, sigstore: Sigstore) -> None:
    assert (
        _reason(tsa.response(data=SIGNATURE, when=NOW), SIGNATURE, _root(sigstore))
        is Reason.TIMESTAMP_INVALID
    )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_raise_only_timestamp_invalid(data: bytes) -> None:
    token, signature, trust_root = _conformance("rekor2-happy-path")
    del token
    try:
        verify_timestamp(data, signed_data=signature, trust_root=trust_root)
    except EvidenceError as e:
        assert e.reason is Reason.TIMESTAMP_INVALID
    else:
        pytest.fail("arbitrary bytes verified")


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, 10_000), value=st.integers(0, 255))
def test_any_single_byte_change_of_a_real_token_fails_or_is_the_same_token(position: int, value: int) -> None:
    token, signature, trust_root = _conformance("rekor2-happy-path")
    at = position % len(token)
    if token[at] == value:
        return
    mutated = token[:at] + bytes([value]) + token[at + 1 :]
    try:
        when = verify_timestamp(mutated, signed_data=signature, trust_root=trust_root)
    except EvidenceError as e:
        assert e.reason is Reason.TIMESTAMP_INVALID
    else:
        assert when == ACCEPTED["rekor2-happy-path"]
    # a change the CMS signature does not cover (unsigned certificates, the status's encoding)
    # may still verify: it then is the same signed statement


def test_every_byte_change_of_a_real_token_is_reasoned() -> None:
    """Deterministic sweep (the hypothesis test above samples): each byte of a real token, changed
    two ways (its low and high bit), verifies to the same time or fails with TimestampInvalid, never another exception.
    It found rfc3161-client raising KeyError and cryptography's InvalidVersion."""
    token, signature, trust_root = _conformance("rekor2-happy-path")
    for at in range(len(token)):
        for value in (token[at] ^ 0x01, token[at] ^ 0x80):
            mutated = token[:at] + bytes([value]) + token[at + 1 :]
            try:
                when = verify_timestamp(mutated, signed_data=signature, trust_root=trust_root)
            except EvidenceError as e:
                assert e.reason is Reason.TIMESTAMP_INVALID, (at, value)
            else:
                assert when == ACCEPTED["rekor2-happy-path"], (at, value)
