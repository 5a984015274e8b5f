"""The bundle tamper matrix, part two: times of signing (SET, RFC 3161 timestamps, the validity
windows of the leaf, the TSA and the log), keys against certificates, and the version rules, each
defect refused with its exact Reason. Variants: :mod:`tests.verify.bundle_variants`.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.errors import Reason
from controller.verify import TrustRoot, VerifyOptions, verify_blob
from tests.kit import bundles
from tests.kit.attest import trusted_key
from tests.kit.sigstore import KeyType, SigningKey, SigstoreKit, generate_key
from tests.kit.transparency import TestTSA
from tests.verify.bundle_variants import (
    BY_NAME,
    DEFAULT_IDENTITY,
    KEYLESS,
    NAMES,
    NOW,
    REKOR2,
    WITH_SET,
    Doc,
    first_entry,
    make,
    reason,
    root_with,
    verify,
    window_around,
)

# The shared module-scoped fixtures: kit, root, signing_key, made.
pytest_plugins = ["tests.verify.bundle_fixtures"]


# --- timestamps and the validity windows of the TSA and of the log


@pytest.mark.parametrize("name", REKOR2)
def test_timestamp_imprint(
    name: str, made: dict[str, Doc], kit: SigstoreKit, root: TrustRoot, signing_key: SigningKey
) -> None:
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    token = bundles.infrastructure(kit).tsa.response(data=b"another signature", when=kit.default_sign_time())
    doc["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]["signedTimestamp"] = (
        base64.b64encode(token).decode()
    )
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.TIMESTAMP_INVALID


@pytest.mark.parametrize("name", REKOR2)
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no-timestamp", Reason.TIMESTAMP_INVALID),
        ("untrusted-tsa", Reason.TIMESTAMP_INVALID),
        ("untrusted-tsa-embedded", Reason.TIMESTAMP_INVALID),
        ("trusted-tsa-embedded", Reason.VERIFIED),
        ("in-the-future", Reason.TIMESTAMP_INVALID),
        ("after-leaf-expiry", Reason.CERTIFICATE_EXPIRED),
        ("before-leaf", Reason.CERTIFICATE_EXPIRED),
        ("garbage", Reason.TIMESTAMP_INVALID),
    ],
)
def test_timestamp_defect(  # noqa: PLR0917 (pytest parameters and fixtures)
    name: str,
    case: str,
    expected: Reason,
    kit: SigstoreKit,
    root: TrustRoot,
    signing_key: SigningKey,
) -> None:
    variant = BY_NAME[name]
    when = kit.default_sign_time()
    options: dict[str, Any] = {
        "no-timestamp": {"timestamps": 0},
        "untrusted-tsa": {"tsa": TestTSA.create(NOW, name="rogue-tsa")},
        "untrusted-tsa-embedded": {"tsa": TestTSA.create(NOW, name="rogue-tsa"), "embed_tsa_chain": True},
        "trusted-tsa-embedded": {"embed_tsa_chain": True},
        "in-the-future": {"timestamp_time": NOW + timedelta(minutes=5)},
        "after-leaf-expiry": {"timestamp_time": when + timedelta(minutes=20)},
        "before-leaf": {"timestamp_time": when - timedelta(minutes=5)},
        "garbage": {},
    }[case]
    if variant.keyed and case in {"after-leaf-expiry", "before-leaf"}:
        expected = Reason.VERIFIED  # a key has no validity window: the TSA time is only a time
    doc = make(variant, kit, signing_key, **options)
    if case == "garbage":
        stamps = doc["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
        stamps[0]["signedTimestamp"] = base64.b64encode(b"\x30\x03\x02\x01\x00").decode()
    now = NOW if case == "in-the-future" else NOW + timedelta(hours=1)  # later than every stamp made
    got = reason(lambda: verify(variant, doc, root, signing_key, now=now))
    assert (got or Reason.VERIFIED) is expected


@pytest.mark.parametrize("name", REKOR2)
@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("ends-before", Reason.TIMESTAMP_INVALID),
        ("starts-after", Reason.TIMESTAMP_INVALID),
        ("ends-at", None),
    ],
)
def test_tsa_authority_window(
    name: str, window: str, expected: Reason | None, kit: SigstoreKit, signing_key: SigningKey
) -> None:
    """The TSA's trust-root validFor, inclusive at the end (sigstore-go's rule)."""
    variant = BY_NAME[name]
    when = kit.default_sign_time()
    doc = make(variant, kit, signing_key, timestamp_time=when)
    root = root_with(kit, tsa_window=window_around(when, window))
    assert reason(lambda: verify(variant, doc, root, signing_key)) is expected


@pytest.mark.parametrize("name", REKOR2)
@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("ends-before", Reason.TLOG_ENTRY_INVALID),
        ("starts-after", Reason.TLOG_ENTRY_INVALID),
        ("ends-at", None),
        ("open", None),
    ],
)
def test_rekor2_log_window_at_tsa_time(
    name: str, window: str, expected: Reason | None, kit: SigstoreKit, signing_key: SigningKey
) -> None:
    """A Rekor v2 entry has no integrated time: its log key must be valid at the TSA time."""
    variant = BY_NAME[name]
    when = kit.default_sign_time()
    doc = make(variant, kit, signing_key, timestamp_time=when)
    root = root_with(kit, rekor_v2_window=window_around(when, window))
    assert reason(lambda: verify(variant, doc, root, signing_key)) is expected


@pytest.mark.parametrize("name", WITH_SET)
@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("ends-before", Reason.TLOG_ENTRY_INVALID),
        ("starts-after", Reason.TLOG_ENTRY_INVALID),
        ("ends-at", None),
    ],
)
def test_rekor1_log_window_at_integrated_time(
    name: str, window: str, expected: Reason | None, kit: SigstoreKit, signing_key: SigningKey
) -> None:
    variant = BY_NAME[name]
    when = kit.default_sign_time()
    doc = make(variant, kit, signing_key, sign_time=when)
    root = root_with(kit, rekor_v1_window=window_around(when, window))
    assert reason(lambda: verify(variant, doc, root, signing_key)) is expected


def test_integrated_time_in_the_future(kit: SigstoreKit, root: TrustRoot, signing_key: SigningKey) -> None:
    variant = BY_NAME["v0.3"]
    doc = make(variant, kit, signing_key)
    integrated = int(first_entry(doc)["integratedTime"])
    now = datetime.fromtimestamp(integrated - 1, UTC)
    assert reason(lambda: verify(variant, doc, root, signing_key, now=now)) is Reason.TLOG_ENTRY_INVALID


# --- keys: wrong key, key against certificate


@pytest.mark.parametrize("name", [n for n in NAMES if BY_NAME[n].keyed])
@pytest.mark.parametrize("keys", ["wrong", "none", "rsa"])
def test_wrong_key(
    name: str, keys: str, made: dict[str, Doc], root: TrustRoot, signing_key: SigningKey
) -> None:
    variant = BY_NAME[name]
    trusted = {
        "wrong": (trusted_key(generate_key(KeyType.ECDSA_P256)),),
        "none": (),
        "rsa": (trusted_key(generate_key(KeyType.RSA_2048)),),
    }[keys]
    doc = copy.deepcopy(made[name])
    assert reason(lambda: verify(variant, doc, root, signing_key, keys=trusted)) is Reason.KEY_MISMATCH


@pytest.mark.parametrize("name", KEYLESS)
def test_keyless_bundle_trusted_key_is_still_keyless(
    name: str, made: dict[str, Doc], root: TrustRoot, signing_key: SigningKey
) -> None:
    """A key given by the policy does not turn a certificate bundle into a key-signed one."""
    variant = BY_NAME[name]
    verified = verify(variant, copy.deepcopy(made[name]), root, signing_key, keys=(trusted_key(signing_key),))
    assert (verified.key_id, verified.subject) == ("", DEFAULT_IDENTITY.subject)


@pytest.mark.parametrize("name", [n for n in NAMES if BY_NAME[n].keyed])
def test_key_signed_presented_as_certificate(
    name: str, kit: SigstoreKit, root: TrustRoot, signing_key: SigningKey
) -> None:
    """A leaf for the trusted key from a CA we do not trust: its log entry names the bare key."""
    variant = BY_NAME[name]
    doc = make(variant, kit, signing_key)
    leaf = kit.issue_leaf(DEFAULT_IDENTITY, private_key=signing_key, ca=kit.new_ca(common_name="rogue"))
    material = doc["verificationMaterial"]
    del material["publicKey"]
    doc["verificationMaterial"] = {
        "certificate": {"rawBytes": base64.b64encode(bundles.leaf_der(leaf)).decode()},
        **material,
    }
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.TLOG_BODY_MISMATCH


@pytest.mark.parametrize("name", KEYLESS)
def test_certificate_bundle_logged_with_bare_key(
    name: str, kit: SigstoreKit, root: TrustRoot, signing_key: SigningKey
) -> None:
    """The entry records the leaf's bare public key instead of the certificate: not this verifier."""
    variant = BY_NAME[name]
    leaf = kit.issue_leaf(DEFAULT_IDENTITY)
    doc = make(variant, kit, signing_key, leaf=leaf, body_signer=leaf.private_key)
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.TLOG_BODY_MISMATCH


@pytest.mark.parametrize("name", [n for n in NAMES if BY_NAME[n].keyed])
def test_key_bundle_logged_with_a_certificate(
    name: str, kit: SigstoreKit, root: TrustRoot, signing_key: SigningKey
) -> None:
    """A key-signed bundle whose entry records a certificate for that key: not this verifier."""
    variant = BY_NAME[name]
    leaf = kit.issue_leaf(DEFAULT_IDENTITY, private_key=signing_key)
    doc = make(variant, kit, signing_key, body_signer=leaf)
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.TLOG_BODY_MISMATCH


# --- versions and media types


def _both_contents(doc: Doc) -> None:
    doc["dsseEnvelope"] = {"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": []}


@pytest.mark.parametrize(
    ("base", "options", "edit", "expected"),
    [
        ("v0.1-set-only", {"inclusion_promise": False, "inclusion_proof": True}, None, Reason.BUNDLE_INVALID),
        ("v0.1-set-only", {"tlog": "v2"}, None, Reason.BUNDLE_INVALID),  # a Rekor v2 entry has no SET
        (
            "v0.3",
            {"chain": True, "version": "0.2", "media_type": bundles.MEDIA_TYPES["0.3"]},
            None,
            Reason.BUNDLE_INVALID,
        ),
        ("v0.2-proof-chain", {"checkpoint": False}, None, Reason.BUNDLE_INVALID),
        ("v0.3", {"inclusion_proof": False}, None, Reason.BUNDLE_INVALID),
        ("rekor2-message", {"inclusion_proof": False}, None, Reason.BUNDLE_INVALID),
        (
            "v0.3",
            {"media_type": "application/vnd.dev.sigstore.bundle+json;version=0.4"},
            None,
            Reason.BUNDLE_INVALID,
        ),
        ("v0.3", {}, _both_contents, Reason.BUNDLE_INVALID),
        ("v0.1-set-only", {"inclusion_proof": True, "checkpoint": False}, None, None),  # v0.1 allows it
        ("v0.1-set-only", {"chain": True}, None, None),  # leaf and intermediate, no root
    ],
    ids=[
        "v0.1-without-set",
        "v0.1-with-rekor2-entry",
        "v0.3-with-chain",
        "v0.2-without-checkpoint",
        "v0.3-set-only",
        "rekor2-without-proof",
        "unknown-version",
        "two-contents",
        "v0.1-proof-without-checkpoint",
        "v0.1-with-chain",
    ],
)
def test_version_rules(  # noqa: PLR0917 (pytest parameters and fixtures)
    base: str,
    options: dict[str, Any],
    edit: Callable[[Doc], None] | None,
    expected: Reason | None,
    kit: SigstoreKit,
    root: TrustRoot,
    signing_key: SigningKey,
) -> None:
    variant = BY_NAME[base]
    doc = make(variant, kit, signing_key, **options)
    if edit is not None:
        edit(doc)
    assert reason(lambda: verify(variant, doc, root, signing_key)) is expected


# --- times of signing with Rekor v1: SET-covered, or a TSA beside an entry without a SET


@pytest.mark.parametrize("name", [n for n in WITH_SET if not BY_NAME[n].keyed])
def test_integrated_time_outside_the_leaf(
    name: str, kit: SigstoreKit, root: TrustRoot, signing_key: SigningKey
) -> None:
    variant = BY_NAME[name]
    when = kit.default_sign_time()
    leaf = kit.issue_leaf(DEFAULT_IDENTITY, issued_at=when - timedelta(minutes=30))
    doc = make(variant, kit, signing_key, leaf=leaf, sign_time=when)
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.CERTIFICATE_EXPIRED


@pytest.mark.parametrize(
    ("timestamp_offset", "window_end_offset", "expected"),
    [
        (timedelta(0), None, None),
        (timedelta(minutes=20), None, Reason.CERTIFICATE_EXPIRED),  # every signing time is checked
        (timedelta(0), timedelta(seconds=-1), Reason.TLOG_ENTRY_INVALID),  # no SET: log valid at TSA time
        (timedelta(0), timedelta(0), None),
    ],
    ids=["tsa-ok", "tsa-after-leaf", "log-ended-before-tsa", "log-ends-at-tsa"],
)
def test_rekor1_entry_without_set_is_timed_by_the_tsa(
    timestamp_offset: timedelta,
    window_end_offset: timedelta | None,
    expected: Reason | None,
    kit: SigstoreKit,
    signing_key: SigningKey,
) -> None:
    variant = BY_NAME["v0.3"]
    when = kit.default_sign_time()
    doc = make(
        variant,
        kit,
        signing_key,
        inclusion_promise=False,
        timestamps=1,
        timestamp_time=when + timestamp_offset,
    )
    end = None if window_end_offset is None else when + window_end_offset
    root = root_with(kit, rekor_v1_window=(NOW - timedelta(days=30), end))
    got = reason(lambda: verify(variant, doc, root, signing_key, now=NOW + timedelta(hours=1)))
    assert got is expected


@pytest.mark.parametrize("name", ["v0.3", "cosign-v3-signature", "key-message"])
def test_no_tlog_entry(name: str, kit: SigstoreKit, root: TrustRoot, signing_key: SigningKey) -> None:
    variant = BY_NAME[name]
    doc = make(variant, kit, signing_key, tlog="none")
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.TLOG_ENTRY_MISSING
    keys = (trusted_key(signing_key),) if variant.keyed else ()
    relaxed = verify_blob(
        bundles.dump(doc),
        artifact_digest=variant.digest,
        trust_root=root,
        now=NOW,
        options=VerifyOptions(keys=keys, require_tlog=False),
    )
    assert relaxed.log_index is None
    assert relaxed.warnings


@pytest.mark.parametrize("name", [n for n in REKOR2 if not BY_NAME[n].keyed])
@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (None, None),
        (timedelta(0), None),
        (timedelta(minutes=-30), Reason.CERTIFICATE_EXPIRED),
        (timedelta(minutes=30), Reason.CERTIFICATE_EXPIRED),
    ],
    ids=["absent", "at-signing", "before-leaf", "after-leaf"],
)
def test_integrated_time_without_set_must_fit_the_leaf(
    name: str, offset: timedelta | None, expected: Reason | None, kit: SigstoreKit, signing_key: SigningKey
) -> None:
    """No SET covers it, so it is no time of signing; but sigstore-go refuses one outside the leaf."""
    variant = BY_NAME[name]
    when = kit.default_sign_time()
    doc = make(variant, kit, signing_key, timestamp_time=when)
    if offset is not None:
        first_entry(doc)["integratedTime"] = str(int((when + offset).timestamp()))
    root = root_with(kit)
    assert reason(lambda: verify(variant, doc, root, signing_key, now=NOW + timedelta(hours=1))) is expected
