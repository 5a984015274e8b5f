"""TrustRoot.from_json: the embedded roots, strictness, and fuzzing."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import PolicyError, Reason
from controller.verify import TrustRoot
from controller.verify.trustroot import parse_timestamp
from tests.verify.builders import Sigstore
from tests.verify.realdata import EMBEDDED_PUBLIC_GOOD, EMBEDDED_STAGING, real_data_dir

REKOR_V1 = bytes.fromhex("c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d")
CT_2022 = bytes.fromhex("dd3d306ac6c7113263191e1c99673702a24a5eb8de3cadff878a72802f29ee8e")


def test_embedded_public_good_root_is_the_production_root() -> None:
    assert (
        EMBEDDED_PUBLIC_GOOD.read_bytes() == (real_data_dir() / "trusted_root.production.json").read_bytes()
    )


def test_public_good_root_parses(public_good: TrustRoot) -> None:
    assert public_good.name == "public-good"
    assert public_good.raw == EMBEDDED_PUBLIC_GOOD.read_bytes()
    assert len(public_good.certificate_authorities) == 2
    fulcio_2021, fulcio_v2 = public_good.certificate_authorities
    assert len(fulcio_2021.chain) == 1  # the 2021 CA is a lone root
    assert fulcio_2021.valid_for.end == datetime(2022, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    assert len(fulcio_v2.chain) == 2
    assert fulcio_v2.valid_for.end is None
    assert all(ca.is_ca for authority in public_good.certificate_authorities for ca in authority.chain)
    (rekor,) = public_good.tlog(REKOR_V1)
    assert rekor.key_details == "PKIX_ECDSA_P256_SHA_256"
    assert rekor.key is not None
    assert len(public_good.tlogs) == 2  # Rekor v1 and log2025-1 (Ed25519)
    (ct,) = public_good.ctlog(CT_2022)
    assert ct.base_url == "https://ctfe.sigstore.dev/2022"
    assert len(public_good.timestamp_authorities) == 1


def test_staging_root_parses_with_its_rsa_ct_log(staging: TrustRoot) -> None:
    details = {log.key_details for logs in staging.ctlogs.values() for log in logs}
    assert "PKCS1_RSA_PKCS1V5" in details
    assert all(log.key is not None for logs in staging.ctlogs.values() for log in logs)
    assert EMBEDDED_STAGING.read_bytes() == staging.raw


def test_issuer_index_finds_each_ca_certificate(public_good: TrustRoot) -> None:
    fulcio_v2 = public_good.certificate_authorities[1]
    intermediate = fulcio_v2.chain[0]
    assert public_good.issuers_named(intermediate.subject) == ((fulcio_v2, 0),)
    # Both roots are named "O=sigstore.dev, CN=sigstore".
    assert len(public_good.issuers_named(fulcio_v2.chain[1].subject)) == 2


def _mutated(mutate: Callable[[dict[str, Any]], None]) -> bytes:
    doc = json.loads(EMBEDDED_PUBLIC_GOOD.read_bytes())
    mutate(doc)
    return json.dumps(doc).encode()


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _swap_chain(doc: dict[str, Any]) -> None:
    chain = doc["certificateAuthorities"][1]["certChain"]["certificates"]
    chain.reverse()


def _ed25519_details_for_ec_key(doc: dict[str, Any]) -> None:
    doc["tlogs"][0]["publicKey"]["keyDetails"] = "PKIX_ED25519"


INVALID = {
    "media type": _set(("mediaType",), "application/json"),
    "unknown top-level field": _set(("extra",), 1),
    "unknown tlog field": _set(("tlogs", 0, "extra"), 1),
    "no CAs field": _delete(("certificateAuthorities",)),
    "empty CA list": _set(("certificateAuthorities",), []),
    "tlogs not a list": _set(("tlogs",), {}),
    "log id not base64": _set(("tlogs", 0, "logId", "keyId"), "***"),
    "log id empty": _set(("tlogs", 0, "logId", "keyId"), ""),
    "key bytes not a key": _set(("tlogs", 0, "publicKey", "rawBytes"), base64.b64encode(b"nope").decode()),
    "key missing": _delete(("tlogs", 0, "publicKey", "rawBytes")),
    "key details unknown": _set(("tlogs", 0, "publicKey", "keyDetails"), "PKIX_MAGIC"),
    "key details not the key": _ed25519_details_for_ec_key,
    "hash algorithm unknown": _set(("tlogs", 0, "hashAlgorithm"), "MD5"),
    "timestamp malformed": _set(("tlogs", 0, "publicKey", "validFor", "start"), "yesterday"),
    "timestamp impossible": _set(("tlogs", 0, "publicKey", "validFor", "start"), "2021-02-30T00:00:00Z"),
    "end before start": _set(
        ("certificateAuthorities", 0, "validFor"),
        {"start": "2022-01-01T00:00:00Z", "end": "2021-01-01T00:00:00Z"},
    ),
    "certificate not DER": _set(
        ("certificateAuthorities", 0, "certChain", "certificates", 0, "rawBytes"),
        base64.b64encode(b"x").decode(),
    ),
    "empty chain": _set(("certificateAuthorities", 0, "certChain", "certificates"), []),
    "chain links broken": _swap_chain,
    "string where object": _set(("certificateAuthorities", 0, "validFor"), "always"),
    "integer where string": _set(("mediaType",), 1),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_trust_root_is_trust_root_invalid(name: str) -> None:
    with pytest.raises(PolicyError) as info:
        TrustRoot.from_json(_mutated(INVALID[name]), "bad")
    assert info.value.reason is Reason.TRUST_ROOT_INVALID


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"null",
        b"[]",
        b"\xff\xfe{}",
        b'{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1", "mediaType": "x"}',
        b"[" * 5000,
        b" " * (1024 * 1024 + 1),
    ],
)
def test_malformed_documents_are_trust_root_invalid(data: bytes) -> None:
    with pytest.raises(PolicyError) as info:
        TrustRoot.from_json(data, "bad")
    assert info.value.reason is Reason.TRUST_ROOT_INVALID


def test_unsupported_registry_scheme_keeps_an_unusable_entry() -> None:
    data = _mutated(_set(("tlogs", 1, "publicKey", "keyDetails"), "ML_DSA_65"))
    root = TrustRoot.from_json(data, "pq")
    unusable = [log for logs in root.tlogs.values() for log in logs if log.key_details == "ML_DSA_65"]
    assert len(unusable) == 1
    assert unusable[0].key is None


def test_optional_fields_and_v02_media_type_are_accepted() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        doc["mediaType"] = "application/vnd.dev.sigstore.trustedroot.v0.2+json"
        doc["tlogs"][0]["operator"] = "sigstore.dev"
        doc["tlogs"][0]["checkpointKeyId"] = {"keyId": doc["tlogs"][0]["logId"]["keyId"]}
        doc["certificateAuthorities"][0]["operator"] = "sigstore.dev"
        del doc["ctlogs"]
        del doc["timestampAuthorities"]

    root = TrustRoot.from_json(_mutated(mutate), "v02")
    assert root.ctlogs == {}
    assert root.timestamp_authorities == ()


def test_generated_trust_root_round_trips(sigstore: Sigstore, trust_root: TrustRoot) -> None:
    (rekor,) = trust_root.tlog(sigstore.rekor_log_id)
    assert rekor.key is not None
    (ct,) = trust_root.ctlog(sigstore.ctlog_id)
    assert ct.valid_for.contains(sigstore.now)
    (authority,) = trust_root.certificate_authorities
    assert [c.subject for c in authority.chain] == [sigstore.intermediate.subject, sigstore.root.subject]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2022-12-31T23:59:59.999Z", datetime(2022, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
        ("2022-12-31T23:59:59.123456789Z", datetime(2022, 12, 31, 23, 59, 59, 123456, tzinfo=UTC)),
        ("2022-01-01T02:00:00+02:00", datetime(2022, 1, 1, 0, 0, tzinfo=UTC)),
        ("2022-01-01T00:00:00-01:30", datetime(2022, 1, 1, 1, 30, tzinfo=UTC)),
    ],
)
def test_timestamps(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text, "t")
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["2022-01-01T00:00:00", "2022-01-01 00:00:00Z", "2022-13-01T00:00:00Z", "x"])
def test_bad_timestamps(text: str) -> None:
    with pytest.raises(ValueError, match="t"):
        parse_timestamp(text, "t")


def test_validity_period_is_closed() -> None:
    root = TrustRoot.from_json(EMBEDDED_PUBLIC_GOOD.read_bytes(), "x")
    period = root.certificate_authorities[0].valid_for
    assert period.end is not None
    assert period.contains(period.start)
    assert period.contains(period.end)
    assert not period.contains(period.end + timedelta(microseconds=1))
    assert not period.contains(period.start - timedelta(microseconds=1))
    assert period.contains(period.start.astimezone(timezone(timedelta(hours=5))))


# --- fuzz


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_only_trust_root_invalid(data: bytes) -> None:
    with pytest.raises(PolicyError) as info:
        TrustRoot.from_json(data, "fuzz")
    assert info.value.reason is Reason.TRUST_ROOT_INVALID


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_PRODUCTION = json.loads(EMBEDDED_PUBLIC_GOOD.read_bytes())


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.extend(_paths(item, (*prefix, index)))
    return out


_ALL_PATHS = [p for p in _paths(_PRODUCTION) if p]


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(_ALL_PATHS), value=_JSON)
def test_any_single_replacement_parses_or_raises_trust_root_invalid(
    path: tuple[Any, ...], value: Any
) -> None:
    doc = copy.deepcopy(_PRODUCTION)
    _set(path, value)(doc)
    try:
        TrustRoot.from_json(json.dumps(doc).encode(), "fuzz")
    except PolicyError as e:
        assert e.reason is Reason.TRUST_ROOT_INVALID


def test_issuer_lookup_by_der_is_the_lookup_by_name(public_good: TrustRoot, staging: TrustRoot) -> None:
    for root in (public_good, staging):
        for authority in root.certificate_authorities:
            for ca_cert in authority.chain:
                subject = ca_cert.subject
                expected = root.issuers_named(subject)
                assert expected
                for name_der in (subject.public_bytes(), None, b"not the DER of any CA subject"):
                    assert root.issuers_of(subject, name_der) == expected


# --- proto3 JSON null semantics, Rekor v2 (Ed25519) logs, TSAs, checkpoint key IDs


def _conformance_root(case: str) -> bytes:
    return (
        real_data_dir().parent / "sigstore-conformance" / "bundle-verify" / case / "trusted_root.json"
    ).read_bytes()


def test_null_operator_is_unset_as_in_proto3_json() -> None:
    root = TrustRoot.from_json(_conformance_root("trust-root-tlog-validity-end-inclusive"), "null-operator")
    logs = [log for group in root.tlogs.values() for log in group]
    assert {log.operator for log in logs} == {""}
    (v1,) = [log for log in logs if log.base_url == "https://rekor.sigstore.dev"]
    assert v1.valid_for.end == datetime(2023, 7, 12, 15, 56, 36, tzinfo=UTC)
    assert v1.valid_for.contains(v1.valid_for.end)  # inclusive at the end


def test_missing_validity_start_stays_invalid() -> None:
    with pytest.raises(PolicyError) as info:
        TrustRoot.from_json(_conformance_root("trust-root-tlog-missing-validity-start_fail"), "no-start")
    assert info.value.reason is Reason.TRUST_ROOT_INVALID


NULLED_VALID = {
    "null operator": _set(("tlogs", 0, "operator"), None),
    "null validFor end": _set(("tlogs", 0, "publicKey", "validFor", "end"), None),
    "null checkpointKeyId": _set(("tlogs", 0, "checkpointKeyId"), None),
    "null CA uri": _set(("certificateAuthorities", 0, "uri"), None),
    "null subject": _set(("certificateAuthorities", 0, "subject"), None),
    "null ctlogs": _set(("ctlogs",), None),
    "null timestampAuthorities": _set(("timestampAuthorities",), None),
}
NULLED_INVALID = {
    "null start": _set(("tlogs", 0, "publicKey", "validFor", "start"), None),
    "null logId": _set(("tlogs", 0, "logId"), None),
    "null mediaType": _set(("mediaType",), None),
    "null certificateAuthorities": _set(("certificateAuthorities",), None),
    "null list item": _set(("certificateAuthorities", 0, "certChain", "certificates", 0), None),
    "null rawBytes of a usable key": _set(("tlogs", 0, "publicKey", "rawBytes"), None),
}


@pytest.mark.parametrize("name", sorted(NULLED_VALID))
def test_null_fields_read_as_unset(name: str) -> None:
    root = TrustRoot.from_json(_mutated(NULLED_VALID[name]), name)
    assert root.certificate_authorities


@pytest.mark.parametrize("name", sorted(NULLED_INVALID))
def test_null_required_fields_are_missing(name: str) -> None:
    with pytest.raises(PolicyError) as info:
        TrustRoot.from_json(_mutated(NULLED_INVALID[name]), name)
    assert info.value.reason is Reason.TRUST_ROOT_INVALID


def test_rekor_v2_ed25519_log_and_tsa_are_parsed(public_good: TrustRoot) -> None:
    logs = [log for group in public_good.tlogs.values() for log in group]
    (v2,) = [log for log in logs if log.key_details == "PKIX_ED25519"]
    assert v2.key is not None
    assert v2.origin == "log2025-1.rekor.sigstore.dev"
    (tsa,) = public_good.timestamp_authorities
    assert tsa.chain[-1].is_ca
    assert tsa.valid_for.start.tzinfo is UTC


def test_checkpoint_key_id_and_operator_are_kept() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        doc["tlogs"][0]["operator"] = "sigstore.dev"
        doc["tlogs"][0]["checkpointKeyId"] = {"keyId": base64.b64encode(b"\x01\x02\x03\x04").decode()}

    root = TrustRoot.from_json(_mutated(mutate), "ckid")
    (log,) = [log for group in root.tlogs.values() for log in group if log.operator]
    assert log.operator == "sigstore.dev"
    assert log.checkpoint_key_id == b"\x01\x02\x03\x04"
