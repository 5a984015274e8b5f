"""verify_simplesigning: real production signatures, their mutations, and the order of checks."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.errors import EvidenceError, ImprimaturError, InputError, Reason
from controller.model import Digest, Signature, TrustedKey, VerifiedSignature
from controller.verify import TrustRoot, VerifyOptions, verify_simplesigning
from controller.verify.keyed import load_key
from tests.kit.attest import KitLayer, key_id_of, key_sign_image, rebundle_layer
from tests.kit.attest import public_key_pem as kit_public_key_pem
from tests.kit.attest import trusted_key as kit_trusted_key
from tests.kit.sigstore import KeyType, SigningKey, SigstoreKit, generate_key
from tests.kit.sigstore import hashedrekord_body as kit_hashedrekord_body
from tests.kit.sigstore import payload_bytes as kit_payload_bytes
from tests.verify.builders import IMAGE, LeafSpec, Sigstore, der_utf8, pem, with_annotations
from tests.verify.realdata import (
    CONNAISSEUR,
    EXPECTED,
    EXPECTED_2021,
    RATIFY,
    SALRASHID,
    SIGSTORE_RS,
    keybased_signatures,
    legacy_signature,
)

NOW = datetime(2026, 11, 25, tzinfo=UTC)
DEFAULT = VerifyOptions()
LENIENT_2021 = VerifyOptions(require_sct=False, require_issuer_extension=False)


def verify(
    sig: Signature, digest: Digest, root: TrustRoot, options: VerifyOptions = DEFAULT, now: datetime = NOW
) -> VerifiedSignature:
    return verify_simplesigning(sig, digest=digest, trust_root=root, options=options, now=now)


def reason_of(sig: Signature, digest: Digest, root: TrustRoot, **kwargs: object) -> Reason:
    with pytest.raises(ImprimaturError) as info:
        verify(sig, digest, root, **kwargs)  # type: ignore[arg-type]
    return info.value.reason


# --- the real production signatures


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_real_signature_verifies_with_embedded_root(case: str, public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(case)
    verified = verify(sig, digest, public_good)
    expected = EXPECTED[case]
    assert verified.subject == expected.subject
    assert verified.issuer == expected.issuer
    assert verified.log_index == expected.log_index
    assert verified.integrated_time == expected.integrated_time
    assert verified.integrated_time.tzinfo is not None
    assert verified.annotations == expected.annotations
    assert verified.log_id == "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"
    assert verified.digest == digest
    assert verified.trust_root == "public-good"
    assert verified.source == sig.source
    assert verified.warnings == ()
    assert verified.claims == {}


@pytest.mark.parametrize("case", [*sorted(EXPECTED), SIGSTORE_RS])
def test_real_signature_for_another_digest_is_payload_digest_mismatch(
    case: str, public_good: TrustRoot
) -> None:
    sig, _ = legacy_signature(case)
    other = Digest.parse("sha256:" + "0" * 64)
    assert reason_of(sig, other, public_good, options=LENIENT_2021) is Reason.PAYLOAD_DIGEST_MISMATCH


def test_2021_rekord_case_is_rejected_by_default_with_sct_missing(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(SIGSTORE_RS)
    assert reason_of(sig, digest, public_good) is Reason.SCT_MISSING


def test_2021_rekord_case_without_sct_requirement_stops_at_issuer_missing(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(SIGSTORE_RS)
    options = VerifyOptions(require_sct=False)
    assert reason_of(sig, digest, public_good, options=options) is Reason.ISSUER_MISSING


def test_2021_rekord_case_without_issuer_requirement_still_needs_the_sct(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(SIGSTORE_RS)
    options = VerifyOptions(require_issuer_extension=False)
    assert reason_of(sig, digest, public_good, options=options) is Reason.SCT_MISSING


def test_2021_rekord_case_verifies_when_both_are_waived(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(SIGSTORE_RS)
    verified = verify(sig, digest, public_good, options=LENIENT_2021)
    assert verified.subject == EXPECTED_2021.subject
    assert verified.issuer == ""
    assert verified.log_index == EXPECTED_2021.log_index
    assert verified.integrated_time == EXPECTED_2021.integrated_time
    assert len(verified.warnings) == 2


def test_waived_checks_are_logged(public_good: TrustRoot, caplog: pytest.LogCaptureFixture) -> None:
    sig, digest = legacy_signature(SIGSTORE_RS)
    with caplog.at_level("WARNING", logger="controller.verify.simplesigning"):
        verify(sig, digest, public_good, options=LENIENT_2021)
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 2


def test_kms_key_layer_is_not_keyless(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(SALRASHID, "annotations_layer0_kms_key_signature.json")
    assert reason_of(sig, digest, public_good) is Reason.NOT_KEYLESS


def test_keybased_negative_cases_are_not_keyless(public_good: TrustRoot) -> None:
    cases = keybased_signatures()
    assert len(cases) == 4
    for sig, digest in cases:
        assert reason_of(sig, digest, public_good) is Reason.NOT_KEYLESS


def test_real_signature_with_staging_root_has_an_unknown_log(staging: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    assert reason_of(sig, digest, staging) is Reason.TLOG_ENTRY_INVALID


# --- mutations of a real signature


def _bundle(sig: Signature) -> dict[str, object]:
    return json.loads(sig.annotations["dev.sigstore.cosign/bundle"])


def test_flipped_set_byte_is_tlog_entry_invalid(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    bundle = _bundle(sig)
    raw = bytearray(base64.b64decode(bundle["SignedEntryTimestamp"]))  # type: ignore[arg-type]
    raw[-5] ^= 0x01
    bundle["SignedEntryTimestamp"] = base64.b64encode(bytes(raw)).decode()
    assert (
        reason_of(with_annotations(sig, bundle=json.dumps(bundle)), digest, public_good)
        is Reason.TLOG_ENTRY_INVALID
    )


@pytest.mark.parametrize("field", ["integratedTime", "logIndex"])
def test_changed_set_field_is_tlog_entry_invalid(field: str, public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(RATIFY)
    bundle = _bundle(sig)
    bundle["Payload"][field] += 1  # type: ignore[index]
    assert (
        reason_of(with_annotations(sig, bundle=json.dumps(bundle)), digest, public_good)
        is Reason.TLOG_ENTRY_INVALID
    )


def test_changed_signature_is_signature_invalid(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    other, _ = legacy_signature(RATIFY)
    swapped = with_annotations(sig, signature=other.annotations["dev.cosignproject.cosign/signature"])
    assert reason_of(swapped, digest, public_good) is Reason.SIGNATURE_INVALID


def test_payload_with_an_extra_space_is_signature_invalid(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    assert (
        reason_of(replace(sig, payload=sig.payload + b" "), digest, public_good) is Reason.SIGNATURE_INVALID
    )


def test_bundle_of_another_signature_is_tlog_body_mismatch(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    other, _ = legacy_signature(RATIFY)
    swapped = with_annotations(sig, bundle=other.annotations["dev.sigstore.cosign/bundle"])
    assert reason_of(swapped, digest, public_good) is Reason.TLOG_BODY_MISMATCH


def test_missing_bundle_is_tlog_entry_missing(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    assert reason_of(with_annotations(sig, bundle=None), digest, public_good) is Reason.TLOG_ENTRY_MISSING


def test_missing_bundle_when_optional_checks_the_chain_now(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    no_tlog = VerifyOptions(require_tlog=False)
    # Years later, the ten-minute certificate has long expired.
    assert reason_of(with_annotations(sig, bundle=None), digest, public_good, options=no_tlog) is (
        Reason.CERTIFICATE_EXPIRED
    )
    # Inside its validity, it verifies, with a warning and no log entry.
    during = datetime(2024, 5, 30, 15, 20, tzinfo=UTC)
    verified = verify(with_annotations(sig, bundle=None), digest, public_good, options=no_tlog, now=during)
    assert verified.log_index is None
    assert verified.integrated_time is None
    assert verified.log_id is None
    assert verified.subject == EXPECTED[CONNAISSEUR].subject
    assert len(verified.warnings) == 1


def test_chain_annotation_without_root_is_chain_invalid(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    chain = sig.annotations["dev.sigstore.cosign/chain"]
    intermediate_only = chain[: chain.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    assert reason_of(with_annotations(sig, chain=intermediate_only), digest, public_good) is (
        Reason.CERTIFICATE_CHAIN_INVALID
    )


def test_garbage_chain_annotation_is_chain_invalid(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    assert (
        reason_of(with_annotations(sig, chain="not pem"), digest, public_good)
        is Reason.CERTIFICATE_CHAIN_INVALID
    )


def test_chain_annotation_is_optional(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(RATIFY)
    assert verify(with_annotations(sig, chain=None), digest, public_good).subject == EXPECTED[RATIFY].subject


def test_certificate_of_another_signature_is_signature_invalid(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    other, _ = legacy_signature(RATIFY)
    swapped = with_annotations(sig, certificate=other.annotations["dev.sigstore.cosign/certificate"])
    assert reason_of(swapped, digest, public_good) is Reason.SIGNATURE_INVALID


def test_trust_root_ca_valid_only_later_is_chain_invalid(public_good: TrustRoot) -> None:
    doc = json.loads(public_good.raw)
    for authority in doc["certificateAuthorities"]:
        authority["validFor"] = {"start": "2025-01-01T00:00:00Z"}
    shifted = TrustRoot.from_json(json.dumps(doc).encode(), "shifted")
    sig, digest = legacy_signature(CONNAISSEUR)
    assert reason_of(sig, digest, shifted) is Reason.CERTIFICATE_CHAIN_INVALID


def test_rekor_key_not_yet_valid_at_integrated_time_is_tlog_entry_invalid(public_good: TrustRoot) -> None:
    doc = json.loads(public_good.raw)
    doc["tlogs"][0]["publicKey"]["validFor"] = {"start": "2025-01-01T00:00:00Z"}
    shifted = TrustRoot.from_json(json.dumps(doc).encode(), "shifted")
    sig, digest = legacy_signature(CONNAISSEUR)
    assert reason_of(sig, digest, shifted) is Reason.TLOG_ENTRY_INVALID


def test_ct_log_removed_from_trust_root_is_sct_invalid(public_good: TrustRoot) -> None:
    doc = json.loads(public_good.raw)
    doc["ctlogs"] = [log for log in doc["ctlogs"] if not log["baseUrl"].endswith("/2022")]
    reduced = TrustRoot.from_json(json.dumps(doc).encode(), "reduced")
    sig, digest = legacy_signature(CONNAISSEUR)
    assert reason_of(sig, digest, reduced) is Reason.SCT_INVALID
    lenient = verify(sig, digest, reduced, options=VerifyOptions(require_sct=False))
    assert lenient.warnings


# --- the first check that fails decides the reason


def test_order_certificate_before_sizes_before_signature(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    huge = replace(sig, payload=b" " * (200 * 1024))
    assert reason_of(with_annotations(huge, certificate=None), digest, public_good) is Reason.NOT_KEYLESS
    assert reason_of(with_annotations(huge, signature=None), digest, public_good) is Reason.LIMIT_EXCEEDED
    assert reason_of(with_annotations(sig, signature="%%%"), digest, public_good) is Reason.SIGNATURE_INVALID
    assert reason_of(with_annotations(sig, signature=None), digest, public_good) is Reason.SIGNATURE_INVALID


def test_order_payload_before_certificate(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    bad = with_annotations(replace(sig, payload=b"[]"), certificate="garbage")
    assert reason_of(bad, digest, public_good) is Reason.PAYLOAD_INVALID
    assert (
        reason_of(with_annotations(sig, certificate="garbage"), digest, public_good)
        is Reason.CERTIFICATE_INVALID
    )


def test_order_signature_before_tlog(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    other, _ = legacy_signature(RATIFY)
    both = with_annotations(
        sig, signature=other.annotations["dev.cosignproject.cosign/signature"], bundle="{}"
    )
    assert reason_of(both, digest, public_good) is Reason.SIGNATURE_INVALID


@pytest.mark.parametrize(
    ("annotation", "limit"),
    [("certificate", 16 * 1024), ("chain", 64 * 1024), ("bundle", 64 * 1024), ("signature", 4 * 1024)],
)
def test_oversized_annotation_is_limit_exceeded(annotation: str, limit: int, public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    with pytest.raises(EvidenceError) as info:
        verify(with_annotations(sig, **{annotation: "A" * (limit + 1)}), digest, public_good)
    assert info.value.reason is Reason.LIMIT_EXCEEDED
    assert not info.value.transient


def test_empty_certificate_annotation_is_not_keyless(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    assert reason_of(with_annotations(sig, certificate=""), digest, public_good) is Reason.NOT_KEYLESS


def test_bundle_kind_is_refused(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    assert reason_of(replace(sig, kind="bundle"), digest, public_good) is Reason.PAYLOAD_INVALID


def test_naive_now_is_refused(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    with pytest.raises(InputError):
        verify(sig, digest, public_good, now=datetime(2026, 1, 1))


# --- end to end with the test Sigstore: every key type and identity shape


@pytest.mark.parametrize("kind", ["p256", "p384", "p521", "rsa2048", "ed25519"])
def test_every_fulcio_key_type_verifies(kind: str, sigstore: Sigstore, trust_root: TrustRoot) -> None:
    leaf = sigstore.issue_leaf(LeafSpec(key=sigstore.leaf_key(kind)))
    sig = sigstore.sign_image(IMAGE, leaf=leaf)
    assert verify(sig, IMAGE, trust_root, now=sigstore.now).subject == "alice@example.com"


@pytest.mark.parametrize(("kind", "algorithm"), [("p384", hashes.SHA256()), ("p521", hashes.SHA256())])
def test_cosign_v2_sha256_with_larger_curves_verifies(
    kind: str, algorithm: hashes.HashAlgorithm, sigstore: Sigstore, trust_root: TrustRoot
) -> None:
    leaf = sigstore.issue_leaf(LeafSpec(key=sigstore.leaf_key(kind)))
    sig = sigstore.sign_image(IMAGE, leaf=leaf, hash_algorithm=algorithm)
    assert verify(sig, IMAGE, trust_root, now=sigstore.now).subject == "alice@example.com"


def test_p256_with_sha384_is_signature_invalid(sigstore: Sigstore, trust_root: TrustRoot) -> None:
    sig = sigstore.sign_image(IMAGE, hash_algorithm=hashes.SHA384())
    assert reason_of(sig, IMAGE, trust_root, now=sigstore.now) is Reason.SIGNATURE_INVALID


def test_github_actions_identity_and_claims(sigstore: Sigstore, trust_root: TrustRoot) -> None:
    workflow = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1"
    spec = LeafSpec(
        san=x509.UniformResourceIdentifier(workflow),
        issuer_v2="https://token.actions.githubusercontent.com",
        issuer_v1="https://token.actions.githubusercontent.com",
        raw_claims={
            "1.3.6.1.4.1.57264.1.5": b"acme/app",
            "1.3.6.1.4.1.57264.1.6": b"refs/tags/v1",
            "1.3.6.1.4.1.57264.1.12": der_utf8("https://github.com/acme/app"),
            "1.3.6.1.4.1.57264.1.14": der_utf8("refs/tags/v1"),
        },
    )
    sig = sigstore.sign_image(IMAGE, leaf=sigstore.issue_leaf(spec), optional={"n": 1, "ok": True})
    verified = verify(sig, IMAGE, trust_root, now=sigstore.now)
    assert verified.subject == workflow
    assert verified.issuer == "https://token.actions.githubusercontent.com"
    assert verified.claims == {
        "githubWorkflowRepository": "acme/app",
        "githubWorkflowRef": "refs/tags/v1",
        "sourceRepositoryURI": "https://github.com/acme/app",
        "sourceRepositoryRef": "refs/tags/v1",
    }
    assert verified.annotations == {"n": "1", "ok": "true"}
    assert verified.log_index == 42
    assert verified.integrated_time == sigstore.now


def test_integrated_after_certificate_expiry_is_certificate_expired(
    sigstore: Sigstore, trust_root: TrustRoot
) -> None:
    late = int((sigstore.now + timedelta(minutes=30)).timestamp())
    sig = sigstore.sign_image(IMAGE, integrated_time=late)
    assert reason_of(sig, IMAGE, trust_root, now=sigstore.now) is Reason.CERTIFICATE_EXPIRED


def test_leaf_from_an_untrusted_ca_is_chain_invalid(trust_root: TrustRoot) -> None:
    stranger = Sigstore()  # its own root and intermediate, same names, other keys
    sig = stranger.sign_image(IMAGE)
    # Same Rekor? No: the stranger's log is unknown too, which step 5 reports first.
    assert reason_of(sig, IMAGE, trust_root, now=stranger.now) is Reason.TLOG_ENTRY_INVALID
    no_tlog = VerifyOptions(require_tlog=False)
    assert reason_of(
        with_annotations(sig, bundle=None, chain=None), IMAGE, trust_root, options=no_tlog, now=stranger.now
    ) is (Reason.CERTIFICATE_CHAIN_INVALID)


def test_chain_annotation_of_another_ca_is_chain_invalid(sigstore: Sigstore, trust_root: TrustRoot) -> None:
    stranger = Sigstore()
    sig = sigstore.sign_image(IMAGE)
    forged = with_annotations(sig, chain=pem(stranger.intermediate) + pem(stranger.root))
    assert reason_of(forged, IMAGE, trust_root, now=sigstore.now) is Reason.CERTIFICATE_CHAIN_INVALID


# --- fuzz: arbitrary annotation values only ever raise our errors


_ANNOTATION_KEYS = st.sampled_from(
    [
        "dev.cosignproject.cosign/signature",
        "dev.sigstore.cosign/certificate",
        "dev.sigstore.cosign/chain",
        "dev.sigstore.cosign/bundle",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.dictionaries(_ANNOTATION_KEYS, st.text(max_size=300), max_size=4),
    payload=st.binary(max_size=300),
)
def test_fuzzed_layer_raises_only_our_errors(
    changes: dict[str, str], payload: bytes, public_good: TrustRoot
) -> None:
    sig, digest = legacy_signature(CONNAISSEUR)
    annotations = {**sig.annotations, **changes}
    mutated = replace(sig, annotations=annotations, payload=payload or sig.payload)
    try:
        verify(mutated, digest, public_good)
    except ImprimaturError as e:
        assert isinstance(e.reason, Reason)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_bundle_json_raises_only_our_errors(data: st.DataObject, public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(RATIFY)
    bundle = _bundle(sig)
    payload = dict(bundle["Payload"])  # type: ignore[call-overload]
    key = data.draw(st.sampled_from(["body", "integratedTime", "logIndex", "logID", "SignedEntryTimestamp"]))
    value = data.draw(
        st.one_of(
            st.integers(),
            st.text(max_size=80),
            st.none(),
            st.booleans(),
            st.floats(),
            st.lists(st.integers()),
        )
    )
    if key == "SignedEntryTimestamp":
        bundle[key] = value
    else:
        payload[key] = value
        bundle["Payload"] = payload
    with pytest.raises(EvidenceError) as info:
        verify(with_annotations(sig, bundle=json.dumps(bundle)), digest, public_good)
    assert info.value.reason in {
        Reason.TLOG_ENTRY_INVALID,
        Reason.TLOG_BODY_MISMATCH,
        Reason.CERTIFICATE_EXPIRED,
    }


# --- key-signed .sig layers (options.keys): real connaisseur keys, then the kit's tamper matrix

# sse-secure-systems/connaisseur test/testdata/cosign/{alice,bob,charlie}.key (public keys, commit
# 7fc50759): the signers of the negative/connaisseur_keybased_testimage layers, in manifest order.
CONNAISSEUR_KEYS = {
    "alice": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEusIAt6EJ3YrTHdg2qkWVS0KuotWQ\n"
    "wHDtyaXlq7Nhj8279+1u/l5pZhXJPW8PnGRRLdO5NbsuM6aT7pOcP100uw==",
    "bob": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE01DasuXJ4rfzAEXsURSnbq4QzJ6o\n"
    "EJ2amYV/CBKqEhhl8fDESxsmbdqtBiZkDV2C3znIwV16SsJlRRYO+UrrAQ==",
    "charlie": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEHBUYJVrH+aFYJPuryEkRyE6m0m4\n"
    "ANj+o/oW5fLRiEiXp0kbhkpLJR1LSwKYiX5Toxe3ePcuYpcWZn8Vqe3+oA==",
}
CONNAISSEUR_SIGNERS = ["alice", "alice", "bob", "charlie"]  # per layer of keybased_signatures()


def _connaisseur_key(name: str) -> TrustedKey:
    pem = f"-----BEGIN PUBLIC KEY-----\n{CONNAISSEUR_KEYS[name]}\n-----END PUBLIC KEY-----\n"
    return TrustedKey(pem=pem.encode(), source=f"connaisseur {name}")


def test_real_key_signed_layers_verify_with_their_real_keys(public_good: TrustRoot) -> None:
    cases = keybased_signatures()
    assert len(cases) == len(CONNAISSEUR_SIGNERS)
    everyone = tuple(_connaisseur_key(name) for name in CONNAISSEUR_KEYS)
    for (sig, digest), signer in zip(cases, CONNAISSEUR_SIGNERS, strict=True):
        # they carry no Rekor bundle: TlogEntryMissing unless the policy makes the tlog optional
        assert (
            reason_of(sig, digest, public_good, options=VerifyOptions(keys=everyone))
            is Reason.TLOG_ENTRY_MISSING
        )
        relaxed = VerifyOptions(require_tlog=False, keys=everyone)
        verified = verify(sig, digest, public_good, relaxed)
        assert verified.key_id == load_key(_connaisseur_key(signer)).key_id
        assert (verified.subject, verified.issuer, verified.log_index) == ("", "", None)
        assert verified.warnings
        others = tuple(_connaisseur_key(n) for n in CONNAISSEUR_KEYS if n != signer)
        wrong = VerifyOptions(require_tlog=False, keys=others)
        assert reason_of(sig, digest, public_good, options=wrong) is Reason.KEY_MISMATCH


def test_keyless_real_signature_never_verifies_as_key_signed(public_good: TrustRoot) -> None:
    sig, digest = legacy_signature(RATIFY)
    keys = VerifyOptions(keys=tuple(_connaisseur_key(n) for n in CONNAISSEUR_KEYS))
    verified = verify(sig, digest, public_good, keys)
    assert verified.key_id == ""
    assert verified.subject == EXPECTED[RATIFY].subject


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit(KIT_NOW)


@pytest.fixture(scope="module")
def kit_root(kit: SigstoreKit) -> TrustRoot:
    return TrustRoot.from_json(kit.trusted_root_json(), "kit")


KIT_NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
KIT_DIGEST = Digest.of(b"kit image")
SIGNING_KEY = generate_key(KeyType.ECDSA_P256)
WRONG_KEY = generate_key(KeyType.ECDSA_P256)
WITH_KEY = VerifyOptions(keys=(kit_trusted_key(SIGNING_KEY),))


def _key_layer(kit: SigstoreKit, key: SigningKey = SIGNING_KEY, **kwargs: object) -> KitLayer:
    return key_sign_image(kit, str(KIT_DIGEST), "registry.test/acme/app", key, **kwargs)  # type: ignore[arg-type]


def _kit_reason(layer: KitLayer, root: TrustRoot, options: VerifyOptions = WITH_KEY) -> Reason:
    return reason_of(layer.to_signature(), KIT_DIGEST, root, options=options, now=KIT_NOW)


@pytest.mark.parametrize("key_type", list(KeyType))
def test_key_signed_each_key_type(key_type: KeyType, kit: SigstoreKit, kit_root: TrustRoot) -> None:
    key = generate_key(key_type)
    verified = verify(
        _key_layer(kit, key).to_signature(),
        KIT_DIGEST,
        kit_root,
        VerifyOptions(keys=(kit_trusted_key(key),)),
        KIT_NOW,
    )
    assert verified.key_id == key_id_of(key)
    assert verified.kind == "signature"
    assert verified.log_index is not None
    assert (verified.subject, verified.issuer) == ("", "")


@pytest.mark.parametrize(
    ("key_type", "kwargs"),
    [
        (KeyType.ECDSA_P384, {"hash_algorithm": hashes.SHA384()}),  # sigstore-go's P-384 hash
        (KeyType.ECDSA_P384, {}),  # cosign v2: SHA-256 (the fallback)
        (KeyType.RSA_3072, {"pss": True}),
        (KeyType.RSA_4096, {}),
    ],
)
def test_key_signed_schemes(
    key_type: KeyType, kwargs: dict[str, object], kit: SigstoreKit, kit_root: TrustRoot
) -> None:
    key = generate_key(key_type)
    layer = _key_layer(kit, key, **kwargs)
    options = VerifyOptions(keys=(kit_trusted_key(key),))
    assert verify(layer.to_signature(), KIT_DIGEST, kit_root, options, KIT_NOW).key_id == key_id_of(key)


def test_key_signed_rekord_body_verifies(kit: SigstoreKit, kit_root: TrustRoot) -> None:
    layer = _key_layer(kit, rekor_kind="rekord")
    assert verify(layer.to_signature(), KIT_DIGEST, kit_root, WITH_KEY, KIT_NOW).log_index is not None


KEY_TAMPERS: dict[str, tuple[Callable[[SigstoreKit, KitLayer], KitLayer], Reason, VerifyOptions]] = {
    "no keys given": (lambda k, a: a, Reason.NOT_KEYLESS, VerifyOptions()),
    "wrong key": (lambda k, a: a, Reason.KEY_MISMATCH, VerifyOptions(keys=(kit_trusted_key(WRONG_KEY),))),
    "payload changed": (
        lambda k, a: a.with_payload(a.payload.replace(b"registry.test", b"registry.evil")),
        Reason.KEY_MISMATCH,
        WITH_KEY,
    ),
    "payload for another digest, re-signed": (
        lambda k, a: _key_layer(k, payload=kit_payload_bytes(str(Digest.of(b"x")), "registry.test/acme/app")),
        Reason.PAYLOAD_DIGEST_MISMATCH,
        WITH_KEY,
    ),
    "signature flipped": (
        lambda k, a: a.with_annotation(
            "dev.cosignproject.cosign/signature",
            "A" + a.annotations["dev.cosignproject.cosign/signature"][1:],
        ),
        Reason.KEY_MISMATCH,
        WITH_KEY,
    ),
    "signature not base64": (
        lambda k, a: a.with_annotation("dev.cosignproject.cosign/signature", "%%%"),
        Reason.SIGNATURE_INVALID,
        WITH_KEY,
    ),
    "no bundle": (
        lambda k, a: a.with_annotation("dev.sigstore.cosign/bundle", None),
        Reason.TLOG_ENTRY_MISSING,
        WITH_KEY,
    ),
    "SET flipped": (
        lambda k, a: a.with_annotation(
            "dev.sigstore.cosign/bundle",
            a.annotations["dev.sigstore.cosign/bundle"].replace(
                '"SignedEntryTimestamp":"M', '"SignedEntryTimestamp":"N'
            ),
        ),
        Reason.TLOG_ENTRY_INVALID,
        WITH_KEY,
    ),
    "body records another key": (
        lambda k, a: rebundle_layer(k, a, _keyed_body(a, kit_public_key_pem(WRONG_KEY))),
        Reason.TLOG_BODY_MISMATCH,
        WITH_KEY,
    ),
    "body records a certificate": (
        lambda k, a: rebundle_layer(k, a, _keyed_body(a, k.issue_leaf().pem)),
        Reason.TLOG_BODY_MISMATCH,
        WITH_KEY,
    ),
    "body records another payload": (
        lambda k, a: rebundle_layer(k, a, _keyed_body(a, kit_public_key_pem(SIGNING_KEY), payload=b"other")),
        Reason.TLOG_BODY_MISMATCH,
        WITH_KEY,
    ),
    "body records another signature": (
        lambda k, a: rebundle_layer(
            k, a, _keyed_body(a, kit_public_key_pem(SIGNING_KEY), signature=b"\x30\x00")
        ),
        Reason.TLOG_BODY_MISMATCH,
        WITH_KEY,
    ),
    "a certificate is added (keyless path)": (
        lambda k, a: a.with_annotation("dev.sigstore.cosign/certificate", k.issue_leaf().pem),
        Reason.SIGNATURE_INVALID,
        WITH_KEY,
    ),
}


def _keyed_body(
    layer: KitLayer, pem_text: str, *, payload: bytes | None = None, signature: bytes | None = None
) -> bytes:
    sig = base64.b64decode(layer.annotations["dev.cosignproject.cosign/signature"])
    return kit_hashedrekord_body(
        payload=payload if payload is not None else layer.payload,
        signature=signature if signature is not None else sig,
        certificate_pem_text=pem_text,
    )


@pytest.mark.parametrize("name", sorted(KEY_TAMPERS))
def test_key_signed_tamper(name: str, kit: SigstoreKit, kit_root: TrustRoot) -> None:
    tamper, expected, options = KEY_TAMPERS[name]
    assert _kit_reason(tamper(kit, _key_layer(kit)), kit_root, options) is expected


def test_key_signed_tlog_optional_warns(kit: SigstoreKit, kit_root: TrustRoot) -> None:
    layer = _key_layer(kit, tlog=False)
    assert _kit_reason(layer, kit_root) is Reason.TLOG_ENTRY_MISSING
    relaxed = VerifyOptions(require_tlog=False, keys=WITH_KEY.keys)
    verified = verify(layer.to_signature(), KIT_DIGEST, kit_root, relaxed, KIT_NOW)
    assert (verified.key_id, verified.log_index, len(verified.warnings)) == (key_id_of(SIGNING_KEY), None, 1)
