"""verify_attestation_layer: cosign ≤ 2's legacy ``.att`` layers, keyless and key-signed, and their tampers.

Each tamper changes one thing and re-signs what is downstream of it (tests/kit/attest.py), so that it
meets exactly one check; the test asserts that check's reason code.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.errors import EvidenceError, ImprimaturError, Reason
from controller.model import COSIGN_SIGNATURE_PREDICATE, Digest, Signature, VerifiedSignature
from controller.verify import TrustRoot, VerifyOptions
from controller.verify.attestation import verify_attestation_layer
from tests.kit.attest import (
    COSIGN_CUSTOM_PREDICATE,
    DSSE_MEDIA_TYPE,
    SLSA_PROVENANCE_V02,
    KitLayer,
    attest_image,
    dsse_sign,
    envelope_bytes,
    intoto_v002_body,
    key_id_of,
    pae,
    public_key_pem,
    rebundle_layer,
    resign_envelope,
    sign_with_key,
    statement_bytes,
    trusted_key,
)
from tests.kit.gojson import go_json
from tests.kit.sigstore import (
    ANNOTATION_BUNDLE,
    ANNOTATION_CERTIFICATE,
    ANNOTATION_CHAIN,
    CosignBundle,
    Identity,
    KeyType,
    SigstoreKit,
    b64,
    generate_key,
)
from tests.verify.realdata import bundle_bytes

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
DIGEST = Digest.of(b"the image manifest")
OTHER = Digest.of(b"another image")
REPO = "registry.test/acme/app"
KEY = generate_key(KeyType.ECDSA_P256)
OTHER_KEY = generate_key(KeyType.ECDSA_P256)


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit(NOW)


@pytest.fixture(scope="module")
def root(kit: SigstoreKit) -> TrustRoot:
    return TrustRoot.from_json(kit.trusted_root_json(), "kit")


@pytest.fixture(scope="module")
def layer(kit: SigstoreKit) -> KitLayer:
    return attest_image(
        kit, str(DIGEST), REPO, predicate_type=SLSA_PROVENANCE_V02, predicate={"builder": {"id": "x"}}
    )


@pytest.fixture(scope="module")
def keyed(kit: SigstoreKit) -> KitLayer:
    return attest_image(kit, str(DIGEST), REPO, key=KEY)


def verify(
    sig: Signature | KitLayer,
    root: TrustRoot,
    options: VerifyOptions | None = None,
    digest: Digest = DIGEST,
    now: datetime = NOW,
) -> VerifiedSignature:
    signature = sig.to_signature() if isinstance(sig, KitLayer) else sig
    return verify_attestation_layer(
        signature, digest=digest, trust_root=root, options=options or VerifyOptions(), now=now
    )


def reason(
    sig: Signature | KitLayer, root: TrustRoot, options: VerifyOptions | None = None, **kw: object
) -> Reason:
    with pytest.raises(ImprimaturError) as info:
        verify(sig, root, options, **kw)  # type: ignore[arg-type]
    return info.value.reason


KEYS = VerifyOptions(keys=(trusted_key(KEY),))


# --- what verifies


def test_keyless_attestation_verifies(layer: KitLayer, root: TrustRoot) -> None:
    verified = verify(layer, root)
    assert verified.kind == "attestation"
    assert verified.predicate_type == SLSA_PROVENANCE_V02
    assert json.loads(verified.statement)["predicate"] == {"builder": {"id": "x"}}
    assert (verified.subject, verified.issuer, verified.key_id) == (
        "alice@example.com",
        "https://github.com/login/oauth",
        "",
    )
    assert verified.log_index is not None
    assert verified.integrated_time is not None
    assert verified.digest == DIGEST
    assert not verified.warnings


def test_cosign_signature_predicate_is_a_signature(kit: SigstoreKit, root: TrustRoot) -> None:
    att = attest_image(kit, str(DIGEST), REPO, predicate_type=COSIGN_SIGNATURE_PREDICATE, predicate={})
    assert verify(att, root).kind == "signature"


@pytest.mark.parametrize("key_type", list(KeyType))
def test_keyless_leaf_key_types(kit: SigstoreKit, root: TrustRoot, key_type: KeyType) -> None:
    assert (
        verify(attest_image(kit, str(DIGEST), REPO, key_type=key_type), root).subject == "alice@example.com"
    )


def test_github_workflow_identity_and_claims(kit: SigstoreKit, root: TrustRoot) -> None:
    identity = Identity.github_workflow("acme/app", ".github/workflows/release.yml", "refs/tags/v1")
    verified = verify(attest_image(kit, str(DIGEST), REPO, identity=identity), root)
    assert verified.subject == identity.subject
    assert verified.claims["sourceRepositoryURI"] == "https://github.com/acme/app"


def test_key_signed_attestation_verifies(keyed: KitLayer, root: TrustRoot) -> None:
    verified = verify(keyed, root, KEYS)
    assert (verified.subject, verified.issuer, verified.key_id) == ("", "", key_id_of(KEY))
    assert verified.kind == "attestation"
    assert verified.predicate_type == COSIGN_CUSTOM_PREDICATE
    assert verified.log_index is not None


@pytest.mark.parametrize("key_type", list(KeyType))
def test_key_signed_each_key_type(kit: SigstoreKit, root: TrustRoot, key_type: KeyType) -> None:
    key = generate_key(key_type)
    att = attest_image(kit, str(DIGEST), REPO, key=key)
    assert verify(att, root, VerifyOptions(keys=(trusted_key(key),))).key_id == key_id_of(key)


def test_tlog_optional_verifies_with_a_warning(kit: SigstoreKit, root: TrustRoot) -> None:
    att = attest_image(kit, str(DIGEST), REPO, tlog=False, sign_time=NOW - timedelta(seconds=30))
    assert reason(att, root) == Reason.TLOG_ENTRY_MISSING
    verified = verify(att, root, VerifyOptions(require_tlog=False))
    assert verified.log_index is None
    assert verified.warnings


def test_statement_v1_verifies(kit: SigstoreKit, layer: KitLayer, root: TrustRoot) -> None:
    statement = statement_bytes(
        str(DIGEST),
        REPO,
        predicate_type=SLSA_PROVENANCE_V02,
        statement_type="https://in-toto.io/Statement/v1",
    )
    assert verify(resign_envelope(kit, layer, statement), root).predicate_type == SLSA_PROVENANCE_V02


def _dsse_body(layer: KitLayer) -> bytes:
    envelope = json.loads(layer.payload)
    statement = base64.b64decode(envelope["payload"])
    signature = {
        "signature": envelope["signatures"][0]["sig"],
        "verifier": b64(layer.annotations[ANNOTATION_CERTIFICATE].encode()),
    }
    return go_json(
        {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": Digest.of(layer.payload).hex},
                "payloadHash": {"algorithm": "sha256", "value": Digest.of(statement).hex},
                "signatures": [signature],
            },
        }
    )


def test_dsse_v001_entry_verifies(kit: SigstoreKit, layer: KitLayer, root: TrustRoot) -> None:
    assert verify(rebundle_layer(kit, layer, _dsse_body(layer)), root).log_index is not None


# --- the tamper matrix: one change, one reason


def _set_envelope(layer: KitLayer, **changes: object) -> KitLayer:
    envelope = json.loads(layer.payload)
    envelope.update(changes)
    return layer.with_payload(go_json(envelope))


def _statement_for(digest: str, predicate_type: str = SLSA_PROVENANCE_V02) -> bytes:
    return statement_bytes(digest, REPO, predicate_type=predicate_type, predicate={"builder": {"id": "x"}})


TAMPERS: dict[str, tuple[Callable[[SigstoreKit, KitLayer], KitLayer], Reason]] = {
    # the envelope and its statement
    "payload changed, not re-signed": (
        lambda k, a: _set_envelope(a, payload=b64(_statement_for(str(DIGEST), "https://x.test/p"))),
        Reason.PAYLOAD_INVALID,  # the predicateType annotation no longer matches: caught first
    ),
    "payload changed (same predicate), not re-signed": (
        lambda k, a: _set_envelope(a, payload=b64(_statement_for(str(DIGEST)).replace(b'"x"', b'"y"'))),
        Reason.SIGNATURE_INVALID,
    ),
    "payloadType changed, not re-signed": (
        lambda k, a: _set_envelope(a, payloadType="application/vnd.in-toto+json; x"),
        Reason.PAYLOAD_INVALID,
    ),
    "payloadType changed and re-signed": (
        lambda k, a: resign_envelope(k, a, _statement_for(str(DIGEST)), payload_type="application/json"),
        Reason.PAYLOAD_INVALID,
    ),
    "signature bytes flipped": (
        lambda k, a: _set_envelope(
            a,
            signatures=[
                {
                    "keyid": "",
                    "sig": b64(
                        base64.b64decode(json.loads(a.payload)["signatures"][0]["sig"])[:-1] + b"\x00"
                    ),
                }
            ],
        ),
        Reason.SIGNATURE_INVALID,
    ),
    "no signatures": (lambda k, a: _set_envelope(a, signatures=[]), Reason.PAYLOAD_INVALID),
    "not JSON": (lambda k, a: a.with_payload(b"{not json"), Reason.PAYLOAD_INVALID),
    "statement not in-toto, re-signed": (
        lambda k, a: resign_envelope(
            k,
            a,
            b'{"_type":"x","predicateType":"'
            + SLSA_PROVENANCE_V02.encode()
            + b'","subject":[{"digest":{}}]}',
        ),
        Reason.PAYLOAD_INVALID,
    ),
    "subject is another digest, re-signed": (
        lambda k, a: resign_envelope(k, a, _statement_for(str(OTHER))),
        Reason.PAYLOAD_DIGEST_MISMATCH,
    ),
    "predicateType annotation differs": (
        lambda k, a: a.with_annotation("predicateType", "https://slsa.dev/provenance/v1"),
        Reason.PAYLOAD_INVALID,
    ),
    "statement predicateType differs, re-signed": (
        lambda k, a: resign_envelope(k, a, _statement_for(str(DIGEST), "https://spdx.dev/Document")),
        Reason.PAYLOAD_INVALID,
    ),
    # certificate and chain
    "certificate of another leaf": (
        lambda k, a: a.with_annotation(ANNOTATION_CERTIFICATE, k.issue_leaf().pem),
        Reason.SIGNATURE_INVALID,
    ),
    "certificate garbage": (
        lambda k, a: a.with_annotation(
            ANNOTATION_CERTIFICATE, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        ),
        Reason.CERTIFICATE_INVALID,
    ),
    "chain of another CA": (
        lambda k, a: a.with_annotation(ANNOTATION_CHAIN, k.new_ca().chain_pem()),
        Reason.CERTIFICATE_CHAIN_INVALID,
    ),
    "certificate removed (no keys)": (
        lambda k, a: a.with_annotation(ANNOTATION_CERTIFICATE, None),
        Reason.NOT_KEYLESS,
    ),
    # transparency log
    "no bundle": (lambda k, a: a.with_annotation(ANNOTATION_BUNDLE, None), Reason.TLOG_ENTRY_MISSING),
    "SET flipped": (
        lambda k, a: a.with_annotation(
            ANNOTATION_BUNDLE,
            a.annotations[ANNOTATION_BUNDLE].replace(
                '"SignedEntryTimestamp":"M', '"SignedEntryTimestamp":"N'
            ),
        ),
        Reason.TLOG_ENTRY_INVALID,
    ),
    "SET by an unknown log": (
        lambda k, a: a.with_annotation(
            ANNOTATION_BUNDLE,
            k.make_bundle(
                _logged_body(a),
                integrated_time=int(NOW.timestamp()) - 60,
                rekor=k.new_log_key("https://other.test"),
            ).to_json(),
        ),
        Reason.TLOG_ENTRY_INVALID,
    ),
    "body is a hashedrekord": (
        lambda k, a: rebundle_layer(
            k, a, go_json({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {}})
        ),
        Reason.TLOG_ENTRY_INVALID,
    ),
    "body of another envelope": (
        lambda k, a: rebundle_layer(
            k,
            a,
            intoto_v002_body(
                dsse_sign(a.signer, _statement_for(str(DIGEST)).replace(b'"x"', b'"z"')),
                a.annotations[ANNOTATION_CERTIFICATE],
            ),
        ),
        Reason.TLOG_BODY_MISMATCH,
    ),
    "body with another certificate": (
        lambda k, a: rebundle_layer(k, a, intoto_v002_body(a.payload, k.issue_leaf().pem)),
        Reason.TLOG_BODY_MISMATCH,
    ),
    "body with a public key instead of the certificate": (
        lambda k, a: rebundle_layer(k, a, intoto_v002_body(a.payload, public_key_pem(a.signer))),
        Reason.TLOG_BODY_MISMATCH,
    ),
    "body with the signature once-encoded": (
        lambda k, a: rebundle_layer(k, a, _once_encoded_body(a)),
        Reason.TLOG_BODY_MISMATCH,
    ),
    "logged after the certificate expired": (
        lambda k, a: rebundle_layer(
            k,
            a,
            intoto_v002_body(a.payload, a.annotations[ANNOTATION_CERTIFICATE]),
            integrated_time=int(NOW.timestamp()) + 3600,
        ),
        Reason.CERTIFICATE_EXPIRED,
    ),
}


def _logged_body(layer: KitLayer) -> bytes:
    return base64.b64decode(json.loads(layer.annotations[ANNOTATION_BUNDLE])["Payload"]["body"])


def _once_encoded_body(layer: KitLayer) -> bytes:
    body = json.loads(intoto_v002_body(layer.payload, layer.annotations[ANNOTATION_CERTIFICATE]))
    signature = body["spec"]["content"]["envelope"]["signatures"][0]
    signature["sig"] = json.loads(layer.payload)["signatures"][0]["sig"]
    return go_json(body)


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_tamper(name: str, kit: SigstoreKit, layer: KitLayer, root: TrustRoot) -> None:
    tamper, expected = TAMPERS[name]
    assert reason(tamper(kit, layer), root) == expected


def test_wrong_digest_is_payload_digest_mismatch(layer: KitLayer, root: TrustRoot) -> None:
    assert reason(layer, root, digest=OTHER) == Reason.PAYLOAD_DIGEST_MISMATCH


def test_not_an_attestation_layer(layer: KitLayer, root: TrustRoot) -> None:
    sig = layer.to_signature()
    for changed in (
        Signature("simplesigning", sig.payload, sig.annotations, sig.layer_digest, "x", sig.media_type),
        Signature("attestation", sig.payload, sig.annotations, sig.layer_digest, "x", "application/json"),
    ):
        assert reason(changed, root) == Reason.PAYLOAD_INVALID


def test_oversized_annotations_are_limit_exceeded(layer: KitLayer, root: TrustRoot) -> None:
    assert reason(layer.with_annotation("predicateType", "x" * 5000), root) == Reason.LIMIT_EXCEEDED
    assert reason(layer.with_annotation(ANNOTATION_BUNDLE, "x" * 100_000), root) == Reason.LIMIT_EXCEEDED


# --- key-signed .att: key vs certificate, wrong key, its Rekor body


def test_key_signed_without_keys_is_not_keyless(keyed: KitLayer, root: TrustRoot) -> None:
    assert reason(keyed, root) == Reason.NOT_KEYLESS


def test_key_signed_with_a_wrong_key_is_key_mismatch(keyed: KitLayer, root: TrustRoot) -> None:
    assert reason(keyed, root, VerifyOptions(keys=(trusted_key(OTHER_KEY),))) == Reason.KEY_MISMATCH


def test_a_layer_with_a_certificate_never_verifies_as_key_signed(kit: SigstoreKit, root: TrustRoot) -> None:
    # signed by KEY, but carrying a (valid, unrelated) certificate: keyless path, signature fails
    att = attest_image(kit, str(DIGEST), REPO, key=KEY).with_annotation(
        ANNOTATION_CERTIFICATE, kit.issue_leaf().pem
    )
    assert reason(att, root, KEYS) == Reason.SIGNATURE_INVALID


def test_key_signed_body_with_another_key(kit: SigstoreKit, keyed: KitLayer, root: TrustRoot) -> None:
    tampered = rebundle_layer(kit, keyed, intoto_v002_body(keyed.payload, public_key_pem(OTHER_KEY)))
    assert reason(tampered, root, KEYS) == Reason.TLOG_BODY_MISMATCH


def test_key_signed_body_with_a_certificate(kit: SigstoreKit, keyed: KitLayer, root: TrustRoot) -> None:
    tampered = rebundle_layer(kit, keyed, intoto_v002_body(keyed.payload, kit.issue_leaf().pem))
    assert reason(tampered, root, KEYS) == Reason.TLOG_BODY_MISMATCH


def test_key_signed_tlog_optional(kit: SigstoreKit, root: TrustRoot) -> None:
    att = attest_image(kit, str(DIGEST), REPO, key=KEY, tlog=False)
    assert reason(att, root, KEYS) == Reason.TLOG_ENTRY_MISSING
    verified = verify(att, root, VerifyOptions(require_tlog=False, keys=KEYS.keys))
    assert (verified.key_id, verified.log_index) == (key_id_of(KEY), None)


def test_second_envelope_signature_may_be_the_trusted_one(kit: SigstoreKit, root: TrustRoot) -> None:
    statement = statement_bytes(str(DIGEST), REPO)
    data = pae("application/vnd.in-toto+json", statement)
    envelope = envelope_bytes(
        "application/vnd.in-toto+json", statement, [sign_with_key(OTHER_KEY, data), sign_with_key(KEY, data)]
    )
    sig = Signature(
        "attestation",
        envelope,
        {"predicateType": COSIGN_CUSTOM_PREDICATE},
        Digest.of(envelope),
        "x",
        "application/vnd.dsse.envelope.v1+json",
    )
    verified = verify(sig, root, VerifyOptions(require_tlog=False, keys=KEYS.keys))
    assert verified.key_id == key_id_of(KEY)


# --- property tests: the parsers meet any input with a reason, never a crash


def _att(payload: bytes, annotations: dict[str, str]) -> Signature:
    return Signature(
        "attestation",
        payload,
        annotations,
        Digest.of(payload),
        "fuzz",
        "application/vnd.dsse.envelope.v1+json",
    )


_json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    envelope=st.fixed_dictionaries(
        {},
        optional={
            "payloadType": st.sampled_from(["application/vnd.in-toto+json", "", "x"]) | st.text(max_size=10),
            "payload": st.text(max_size=40)
            | st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
            "signatures": st.lists(
                st.fixed_dictionaries({}, optional={"sig": st.text(max_size=20), "keyid": _json_scalars}),
                max_size=3,
            ),
            "extra": _json,
        },
    ),
)
def test_any_envelope_is_a_reason(envelope: dict[str, object], layer: KitLayer, root: TrustRoot) -> None:
    annotations = dict(layer.annotations)
    try:
        verify(_att(json.dumps(envelope).encode(), annotations), root)
    except EvidenceError as e:
        assert e.reason in {
            Reason.PAYLOAD_INVALID,
            Reason.SIGNATURE_INVALID,
            Reason.LIMIT_EXCEEDED,
            Reason.PAYLOAD_DIGEST_MISMATCH,
        }
    else:
        pytest.fail("a random envelope verified")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    annotations=st.dictionaries(
        st.sampled_from(
            [
                ANNOTATION_BUNDLE,
                ANNOTATION_CERTIFICATE,
                ANNOTATION_CHAIN,
                "predicateType",
                "dev.cosignproject.cosign/signature",
            ]
        ),
        st.text(max_size=60),
    )
)
def test_any_annotations_are_a_reason(annotations: dict[str, str], layer: KitLayer, root: TrustRoot) -> None:
    merged = {**layer.annotations, **annotations}
    try:
        verify(_att(layer.payload, merged), root)
    except ImprimaturError as e:
        assert isinstance(e, EvidenceError), e
    # unchanged certificate and bundle may still verify: that is fine


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_json, kind=st.sampled_from([("intoto", "0.0.2"), ("dsse", "0.0.1"), ("x", "1")]))
def test_any_logged_body_is_entry_invalid_or_mismatch(
    body: object, kind: tuple[str, str], kit: SigstoreKit, layer: KitLayer, root: TrustRoot
) -> None:
    document = {"apiVersion": kind[1], "kind": kind[0], "spec": body}
    tampered = rebundle_layer(kit, layer, json.dumps(document).encode())
    with pytest.raises(EvidenceError) as info:
        verify(tampered, root)
    assert info.value.reason in {Reason.TLOG_ENTRY_INVALID, Reason.TLOG_BODY_MISMATCH}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_json)
def test_any_body_document_is_entry_invalid(
    body: object, kit: SigstoreKit, layer: KitLayer, root: TrustRoot
) -> None:
    tampered = rebundle_layer(kit, layer, json.dumps(body).encode())
    with pytest.raises(EvidenceError) as info:
        verify(tampered, root)
    assert info.value.reason in {Reason.TLOG_ENTRY_INVALID, Reason.TLOG_BODY_MISMATCH}


# --- a real cosign attestation, as the legacy .att layer cosign v2 (--rekor-entry-type dsse) pushes
#
# ../shared/testdata/sigstore-real has no legacy .att layer, but cosign__oci-attestation.sigstore.json
# is a production cosign attestation whose Rekor entry is dsse 0.0.1 with a SET: the same envelope,
# certificate and entry that a v2 .att layer carries. Its logged envelopeHash is the sha256 of the
# exact envelope bytes cosign submitted, and the kit's Go-marshalled envelope reproduces them.


def _real_att_layer() -> tuple[Signature, Digest, str]:
    bundle = json.loads(bundle_bytes("cosign__oci-attestation.sigstore.json"))
    dsse = bundle["dsseEnvelope"]
    envelope = envelope_bytes(
        dsse["payloadType"],
        base64.b64decode(dsse["payload"]),
        [base64.b64decode(s["sig"]) for s in dsse["signatures"]],
    )
    entry = bundle["verificationMaterial"]["tlogEntries"][0]
    logged = json.loads(base64.b64decode(entry["canonicalizedBody"]))
    assert logged["spec"]["envelopeHash"]["value"] == Digest.of(envelope).hex  # byte-exact envelope
    leaf = x509.load_der_x509_certificate(
        base64.b64decode(bundle["verificationMaterial"]["certificate"]["rawBytes"])
    )
    cosign_bundle = CosignBundle(
        entry["inclusionPromise"]["signedEntryTimestamp"],
        entry["canonicalizedBody"],
        int(entry["integratedTime"]),
        int(entry["logIndex"]),
        base64.b64decode(entry["logId"]["keyId"]).hex(),
    )
    statement = json.loads(base64.b64decode(dsse["payload"]))
    annotations = {
        "dev.cosignproject.cosign/signature": "",
        ANNOTATION_CERTIFICATE: leaf.public_bytes(serialization.Encoding.PEM).decode(),
        ANNOTATION_BUNDLE: cosign_bundle.to_json(),
        "predicateType": statement["predicateType"],
    }
    digest = Digest.parse("sha256:" + statement["subject"][0]["digest"]["sha256"])
    sig = Signature("attestation", envelope, annotations, Digest.of(envelope), "real .att", DSSE_MEDIA_TYPE)
    return sig, digest, statement["predicateType"]


def test_real_cosign_attestation_verifies_as_a_legacy_att_layer(public_good: TrustRoot) -> None:
    sig, digest, predicate_type = _real_att_layer()
    verified = verify(sig, public_good, digest=digest, now=datetime.now(UTC))
    assert (verified.subject, verified.issuer) == ("cody@soyland.com", "https://github.com/login/oauth")
    assert (verified.kind, verified.predicate_type) == ("attestation", predicate_type)
    assert verified.integrated_time == datetime(2025, 2, 28, 19, 18, 11, tzinfo=UTC)
    assert reason(sig, public_good, digest=OTHER, now=datetime.now(UTC)) == Reason.PAYLOAD_DIGEST_MISMATCH
    respaced = Signature(
        "attestation", sig.payload + b" ", sig.annotations, sig.layer_digest, "x", DSSE_MEDIA_TYPE
    )  # the same envelope, other bytes: not the envelope cosign logged
    assert reason(respaced, public_good, digest=digest, now=datetime.now(UTC)) == Reason.TLOG_BODY_MISMATCH


def test_dsse_envelope_hash_must_be_the_layer_bytes(
    kit: SigstoreKit, layer: KitLayer, root: TrustRoot
) -> None:
    body = json.loads(_logged_body(rebundle_layer(kit, layer, _dsse_body(layer))))
    body["spec"]["envelopeHash"]["value"] = Digest.of(layer.payload + b" ").hex
    assert reason(rebundle_layer(kit, layer, go_json(body)), root) == Reason.TLOG_BODY_MISMATCH
