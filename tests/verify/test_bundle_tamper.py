"""The bundle tamper matrix: every variant the kit makes verifies, and every single defect is refused
with its exact Reason.

Variants (:data:`VARIANTS`): v0.1 with a SET only, v0.2 with an inclusion proof and the chain, v0.3
(both media types), cosign v3 image signatures and attestations (dsse 0.0.1, intoto 0.0.2), Rekor
v2 (hashedrekord/dsse 0.0.2 with a TSA timestamp, no SET) and key-signed bundles. Each defect is
made by changing one thing and, where the log would have signed it, re-signing what is downstream
(``mutate_body`` re-logs the body, checkpoints are re-signed with the log key), so that exactly one
check can fail.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.errors import ImprimaturError, Reason
from controller.model import COSIGN_SIGNATURE_PREDICATE, Digest, TrustedKey, VerifiedSignature
from controller.verify import TrustRoot, VerifyOptions, verify_blob
from tests.kit import bundles
from tests.kit.attest import key_id_of, trusted_key
from tests.kit.sigstore import DEFAULT_IDENTITY, KeyType, SigningKey, SigstoreKit, generate_key
from tests.kit.transparency import TestTSA

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ARTIFACT = b"a release artifact\n"
IMAGE = Digest.of(b"an image manifest")
OTHER = Digest.of(b"another image manifest")
SLSA = "https://slsa.dev/provenance/v1"
Doc = dict[str, Any]


@dataclass(frozen=True)
class Variant:
    """One kind of bundle: how to make it, and what it must verify to."""

    name: str
    build: Callable[..., Doc]  # (kit, key, **build_bundle options) -> doc
    digest: Digest
    keyed: bool = False
    dsse: bool = False
    tlog: str = "v1"
    kind: str = "signature"
    predicate_type: str = ""
    options: dict[str, Any] = field(default_factory=dict)


def _blob(kit: SigstoreKit, key: SigningKey | None, **options: Any) -> Doc:
    signer = key if key is not None else options.pop("leaf", None) or kit.issue_leaf(DEFAULT_IDENTITY)
    content = bundles.MessageContent(Digest.of(ARTIFACT), ARTIFACT)
    return bundles.build_bundle(kit, content, signer, **options)


def _image_signature(kit: SigstoreKit, key: SigningKey | None, **options: Any) -> Doc:
    signer = key if key is not None else options.pop("leaf", None) or kit.issue_leaf(DEFAULT_IDENTITY)
    payload = options.pop("statement", None) or bundles.statement_v1(IMAGE, COSIGN_SIGNATURE_PREDICATE, {})
    return bundles.build_bundle(kit, bundles.DsseContent(payload), signer, **options)


def _attestation(kit: SigstoreKit, key: SigningKey | None, **options: Any) -> Doc:
    signer = key if key is not None else options.pop("leaf", None) or kit.issue_leaf(DEFAULT_IDENTITY)
    payload = options.pop("statement", None) or bundles.statement_v1(
        IMAGE, SLSA, {"buildDefinition": {"buildType": "https://example.test/build/v1"}}, name="repo"
    )
    return bundles.build_bundle(kit, bundles.DsseContent(payload), signer, **options)


VARIANTS = [
    Variant(
        "v0.1-set-only", _blob, Digest.of(ARTIFACT), options={"version": "0.1", "inclusion_proof": False}
    ),
    Variant("v0.2-proof-chain", _blob, Digest.of(ARTIFACT), options={"version": "0.2", "chain": True}),
    Variant("v0.3", _blob, Digest.of(ARTIFACT)),
    Variant(
        "v0.3-alt-media-type", _blob, Digest.of(ARTIFACT), options={"media_type": bundles.MEDIA_TYPE_V03_ALT}
    ),
    Variant(
        "cosign-v3-signature", _image_signature, IMAGE, dsse=True, predicate_type=COSIGN_SIGNATURE_PREDICATE
    ),
    Variant("attestation-dsse", _attestation, IMAGE, dsse=True, kind="attestation", predicate_type=SLSA),
    Variant(
        "attestation-intoto",
        _attestation,
        IMAGE,
        dsse=True,
        kind="attestation",
        predicate_type=SLSA,
        options={"entry_kind": "intoto"},
    ),
    Variant("rekor2-message", _blob, Digest.of(ARTIFACT), tlog="v2", options={"tlog": "v2"}),
    Variant(
        "rekor2-dsse",
        _image_signature,
        IMAGE,
        dsse=True,
        tlog="v2",
        predicate_type=COSIGN_SIGNATURE_PREDICATE,
        options={"tlog": "v2"},
    ),
    Variant(
        "rekor2-dsse-as-hashedrekord",
        _attestation,
        IMAGE,
        dsse=True,
        tlog="v2",
        kind="attestation",
        predicate_type=SLSA,
        options={"tlog": "v2", "entry_kind": "hashedrekord"},
    ),
    Variant("key-message", _blob, Digest.of(ARTIFACT), keyed=True),
    Variant(
        "key-dsse", _image_signature, IMAGE, keyed=True, dsse=True, predicate_type=COSIGN_SIGNATURE_PREDICATE
    ),
    Variant("key-rekor2-message", _blob, Digest.of(ARTIFACT), keyed=True, tlog="v2", options={"tlog": "v2"}),
]
BY_NAME = {variant.name: variant for variant in VARIANTS}
NAMES = list(BY_NAME)
WITH_PROOF = [v.name for v in VARIANTS if v.name != "v0.1-set-only"]
WITH_SET = [v.name for v in VARIANTS if v.tlog == "v1"]
KEYLESS = [v.name for v in VARIANTS if not v.keyed]
REKOR2 = [v.name for v in VARIANTS if v.tlog == "v2"]


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit(now=NOW)


@pytest.fixture(scope="module")
def root(kit: SigstoreKit) -> TrustRoot:
    return TrustRoot.from_json(bundles.trusted_root_json(kit), "kit")


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return generate_key(KeyType.ECDSA_P256)


@pytest.fixture(scope="module")
def made(kit: SigstoreKit, signing_key: SigningKey) -> dict[str, Doc]:
    """Every variant, made once; tests deep-copy before changing one."""
    return {v.name: make(v, kit, signing_key) for v in VARIANTS}


def make(variant: Variant, kit: SigstoreKit, key: SigningKey | None, **options: Any) -> Doc:
    return variant.build(kit, key if variant.keyed else None, **{**variant.options, **options})


def verify(
    variant: Variant,
    doc: Doc,
    root: TrustRoot,
    key: SigningKey,
    *,
    digest: Digest | None = None,
    keys: tuple[TrustedKey, ...] | None = None,
    now: datetime = NOW,
) -> VerifiedSignature:
    trusted = keys if keys is not None else ((trusted_key(key),) if variant.keyed else ())
    return verify_blob(
        bundles.dump(doc),
        artifact_digest=digest or variant.digest,
        trust_root=root,
        now=now,
        options=VerifyOptions(keys=trusted),
    )


def reason(call: Callable[[], object]) -> Reason | None:
    try:
        call()
    except ImprimaturError as e:
        return e.reason
    return None


def _entry(doc: Doc) -> Doc:
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    assert isinstance(entry, dict)
    return entry


def _flip_b64(text: str, at: int = -1) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at if at >= 0 else len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _signature_holder(doc: Doc) -> tuple[Doc, str]:
    if "dsseEnvelope" in doc:
        return doc["dsseEnvelope"]["signatures"][0], "sig"
    return doc["messageSignature"], "signature"


# --- positive cases


@pytest.mark.parametrize("name", NAMES)
def test_every_variant_verifies(
    name: str, made: dict[str, Doc], root: TrustRoot, signing_key: SigningKey
) -> None:
    variant = BY_NAME[name]
    doc = made[name]
    verified = verify(variant, copy.deepcopy(doc), root, signing_key)
    entry = _entry(doc)
    assert verified.kind == variant.kind
    assert verified.predicate_type == variant.predicate_type
    assert verified.digest == variant.digest
    assert verified.log_index == int(entry["logIndex"])
    if variant.tlog == "v1":
        assert verified.integrated_time == datetime.fromtimestamp(int(entry["integratedTime"]), UTC)
    else:  # Rekor v2: no integrated time; the time of signing is the TSA's
        assert verified.integrated_time is None
    if variant.keyed:
        assert (verified.key_id, verified.subject, verified.issuer) == (key_id_of(signing_key), "", "")
    else:
        assert verified.key_id == ""
        assert (verified.subject, verified.issuer) == (DEFAULT_IDENTITY.subject, DEFAULT_IDENTITY.issuer)
    if variant.dsse:
        assert json.loads(verified.statement)["predicateType"] == variant.predicate_type
    else:
        assert verified.statement == b""


# --- the content: signature, digest, DSSE


@pytest.mark.parametrize("name", NAMES)
def test_signature_flipped(name: str, made: dict[str, Doc], root: TrustRoot, signing_key: SigningKey) -> None:
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    holder, key = _signature_holder(doc)
    holder[key] = _flip_b64(holder[key])
    expected = Reason.KEY_MISMATCH if variant.keyed else Reason.SIGNATURE_INVALID
    assert reason(lambda: verify(variant, doc, root, signing_key)) is expected


@pytest.mark.parametrize("name", NAMES)
def test_another_artifact(name: str, made: dict[str, Doc], root: TrustRoot, signing_key: SigningKey) -> None:
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    got = reason(lambda: verify(variant, doc, root, signing_key, digest=OTHER))
    assert got is Reason.PAYLOAD_DIGEST_MISMATCH


@pytest.mark.parametrize("name", [n for n in NAMES if not BY_NAME[n].dsse])
def test_message_digest_hint(
    name: str, made: dict[str, Doc], root: TrustRoot, signing_key: SigningKey
) -> None:
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    hint = doc["messageSignature"]["messageDigest"]
    hint["digest"] = _flip_b64(hint["digest"])
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.PAYLOAD_DIGEST_MISMATCH


def _edit_envelope(doc: Doc, field_name: str) -> None:
    envelope = doc["dsseEnvelope"]
    if field_name == "payload":
        statement = json.loads(base64.b64decode(envelope["payload"]))
        statement["predicate"] = {"changed": True}
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    elif field_name == "payloadType":
        envelope["payloadType"] = "application/vnd.cncf.notary.payload.v1+json"
    else:
        envelope["signatures"][0]["sig"] = _flip_b64(envelope["signatures"][0]["sig"], 5)


@pytest.mark.parametrize("name", [n for n in NAMES if BY_NAME[n].dsse])
@pytest.mark.parametrize(
    ("field_name", "keyless", "keyed"),
    [
        ("payload", Reason.SIGNATURE_INVALID, Reason.KEY_MISMATCH),
        ("payloadType", Reason.PAYLOAD_INVALID, Reason.PAYLOAD_INVALID),
        ("sig", Reason.SIGNATURE_INVALID, Reason.KEY_MISMATCH),
    ],
)
def test_dsse_envelope(  # noqa: PLR0917 (pytest parameters and fixtures)
    name: str,
    field_name: str,
    keyless: Reason,
    keyed: Reason,
    made: dict[str, Doc],
    root: TrustRoot,
    signing_key: SigningKey,
) -> None:
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    _edit_envelope(doc, field_name)
    assert reason(lambda: verify(variant, doc, root, signing_key)) is (keyed if variant.keyed else keyless)


@pytest.mark.parametrize("name", [n for n in NAMES if BY_NAME[n].dsse])
def test_statement_subject_resigned(
    name: str, kit: SigstoreKit, root: TrustRoot, signing_key: SigningKey
) -> None:
    """A validly signed and logged statement about another image is not about this one."""
    variant = BY_NAME[name]
    statement = bundles.statement_v1(OTHER, variant.predicate_type, {})
    doc = make(variant, kit, signing_key, statement=statement)
    assert verify(variant, copy.deepcopy(doc), root, signing_key, digest=OTHER).digest == OTHER
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.PAYLOAD_DIGEST_MISMATCH


# --- the certificate, its chain and SCT


@pytest.mark.parametrize("name", KEYLESS)
def test_certificate_swapped(
    name: str, made: dict[str, Doc], kit: SigstoreKit, root: TrustRoot, signing_key: SigningKey
) -> None:
    """Another valid leaf of the same identity: the signature is not its key's."""
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    der = bundles.leaf_der(kit.issue_leaf(DEFAULT_IDENTITY))
    material = doc["verificationMaterial"]
    if "certificate" in material:
        material["certificate"]["rawBytes"] = base64.b64encode(der).decode()
    else:
        material["x509CertificateChain"]["certificates"][0]["rawBytes"] = base64.b64encode(der).decode()
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.SIGNATURE_INVALID


@pytest.mark.parametrize("name", KEYLESS)
@pytest.mark.parametrize(
    ("leaf_options", "expected"),
    [
        ({"ca": "untrusted"}, Reason.CERTIFICATE_CHAIN_INVALID),
        ({"sct": False}, Reason.SCT_MISSING),
        ({"sct_signing_key": "other"}, Reason.SCT_INVALID),
        ({"issuer_extensions": "none"}, Reason.ISSUER_MISSING),
        ({"eku": None}, Reason.CERTIFICATE_INVALID),
    ],
    ids=["untrusted-ca", "no-sct", "bad-sct", "no-issuer", "no-eku"],
)
def test_leaf_defect(  # noqa: PLR0917 (pytest parameters and fixtures)
    name: str,
    leaf_options: dict[str, Any],
    expected: Reason,
    kit: SigstoreKit,
    root: TrustRoot,
    signing_key: SigningKey,
) -> None:
    variant = BY_NAME[name]
    options = dict(leaf_options)
    if options.get("ca") == "untrusted":
        options["ca"] = kit.new_ca(common_name="untrusted")
    if options.get("sct_signing_key") == "other":
        options["sct_signing_key"] = kit.new_log_key("https://ct.other.test").private_key
    leaf = kit.issue_leaf(DEFAULT_IDENTITY, **options)
    doc = make(variant, kit, signing_key, leaf=leaf)
    assert reason(lambda: verify(variant, doc, root, signing_key)) is expected


def test_chain_with_root_is_refused(kit: SigstoreKit, root: TrustRoot, signing_key: SigningKey) -> None:
    variant = BY_NAME["v0.2-proof-chain"]
    doc = make(variant, kit, signing_key)
    chain = doc["verificationMaterial"]["x509CertificateChain"]["certificates"]
    chain.append({"rawBytes": base64.b64encode(bundles.der_of(kit.ca.root)).decode()})
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.CERTIFICATE_CHAIN_INVALID


def test_chain_with_foreign_intermediate_is_refused(
    kit: SigstoreKit, root: TrustRoot, signing_key: SigningKey
) -> None:
    variant = BY_NAME["v0.2-proof-chain"]
    doc = make(variant, kit, signing_key)
    other = kit.new_ca(common_name="other")
    assert other.intermediate is not None
    chain = doc["verificationMaterial"]["x509CertificateChain"]["certificates"]
    chain[1] = {"rawBytes": base64.b64encode(bundles.der_of(other.intermediate)).decode()}
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.CERTIFICATE_CHAIN_INVALID


# --- the log entry: SET, log ID, inclusion proof, checkpoint


@pytest.mark.parametrize("name", WITH_SET)
def test_set_flipped(name: str, made: dict[str, Doc], root: TrustRoot, signing_key: SigningKey) -> None:
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    promise = _entry(doc)["inclusionPromise"]
    promise["signedEntryTimestamp"] = _flip_b64(promise["signedEntryTimestamp"], 8)
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.TLOG_ENTRY_INVALID


@pytest.mark.parametrize("name", WITH_SET)
@pytest.mark.parametrize("field_name", ["logIndex", "integratedTime"])
def test_set_covered_field_changed(
    name: str, field_name: str, made: dict[str, Doc], root: TrustRoot, signing_key: SigningKey
) -> None:
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    entry = _entry(doc)
    entry[field_name] = str(int(entry[field_name]) - 1)
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.TLOG_ENTRY_INVALID


@pytest.mark.parametrize("name", NAMES)
def test_unknown_log(name: str, made: dict[str, Doc], root: TrustRoot, signing_key: SigningKey) -> None:
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    log_id = _entry(doc)["logId"]
    log_id["keyId"] = _flip_b64(log_id["keyId"], 0)
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.TLOG_ENTRY_INVALID


def _proof_edit(doc: Doc, what: str) -> None:
    proof = _entry(doc)["inclusionProof"]
    if what == "hash":
        proof["hashes"][0] = _flip_b64(proof["hashes"][0], 0)
    elif what == "root":
        proof["rootHash"] = _flip_b64(proof["rootHash"], 0)
    elif what == "drop-hash":
        proof["hashes"].pop()
    else:
        proof[what] = str(int(proof[what]) + 1)


@pytest.mark.parametrize("name", WITH_PROOF)
@pytest.mark.parametrize("what", ["hash", "root", "drop-hash", "logIndex", "treeSize"])
def test_inclusion_proof(
    name: str, what: str, made: dict[str, Doc], root: TrustRoot, signing_key: SigningKey
) -> None:
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    _proof_edit(doc, what)
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.TLOG_ENTRY_INVALID


def _checkpoint_edit(doc: Doc, what: str, kit: SigstoreKit, variant: Variant) -> None:
    checkpoint = _entry(doc)["inclusionProof"]["checkpoint"]
    envelope: str = checkpoint["envelope"]
    text, _, signatures = envelope.partition("\n\n")
    origin, size, root_hash, *rest = text.split("\n")
    infra = bundles.infrastructure(kit)
    log = infra.rekor_v2 if variant.tlog == "v2" else infra.rekor_v1
    if what == "root":  # re-signed by the log: a checkpoint of another tree
        lines = [origin, size, _flip_b64(root_hash, 0), *rest]
        checkpoint["envelope"] = bundles.sign_checkpoint(log, "\n".join(lines) + "\n")
    elif what == "size":
        lines = [origin, str(int(size) + 1), root_hash, *rest]
        checkpoint["envelope"] = bundles.sign_checkpoint(log, "\n".join(lines) + "\n")
    elif what == "origin":  # not re-signed
        checkpoint["envelope"] = envelope.replace(origin, origin + "x", 1)
    else:
        prefix, name, blob = signatures.rstrip("\n").split(" ")
        raw = bytearray(base64.b64decode(blob))
        raw[0 if what == "keyhint" else 10] ^= 0x01
        line = f"{prefix} {name} {base64.b64encode(bytes(raw)).decode()}\n"
        checkpoint["envelope"] = text + "\n\n" + line


@pytest.mark.parametrize("name", WITH_PROOF)
@pytest.mark.parametrize("what", ["root", "size", "signature", "origin", "keyhint"])
def test_checkpoint(  # noqa: PLR0917 (pytest parameters and fixtures)
    name: str, what: str, made: dict[str, Doc], kit: SigstoreKit, root: TrustRoot, signing_key: SigningKey
) -> None:
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    _checkpoint_edit(doc, what, kit, variant)
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.TLOG_ENTRY_INVALID


def _string_leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _string_leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _string_leaves(item, (*path, str(index)))
    elif isinstance(value, str):
        yield path


_REPLACEMENTS = {
    "sha256": "sha512",
    "SHA2_256": "SHA2_512",
    "PKIX_ECDSA_P256_SHA_256": "PKIX_ED25519",
    "hashedrekord": "rekord",
    "dsse": "intoto",
    "intoto": "dsse",
    "0.0.1": "0.0.2",
    "0.0.2": "0.0.1",
    "application/vnd.in-toto+json": "text/plain",
}


def _changed(value: str) -> str:
    if value in _REPLACEMENTS:
        return _REPLACEMENTS[value]
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:-1] + ("0" if value[-1] != "0" else "1")
    return _flip_b64(value)


def _set_path(doc: Any, path: tuple[str, ...]) -> None:
    *parents, last = path
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    if isinstance(doc, list):
        doc[int(last)] = _changed(doc[int(last)])
    else:
        doc[last] = _changed(doc[last])


# Hashes that no verifier can recompute from a bundle (the envelope JSON Rekor hashed is not in it):
# sigstore-go and sigstore-python leave them unchecked too. They are logged, so still bound by the log.
_UNCHECKABLE = {("dsse", "spec.envelopeHash.value"), ("intoto", "spec.content.hash.value")}


def _expected_for_body(kind: str, dotted: str) -> Reason | None:
    if (kind, dotted) in _UNCHECKABLE:
        return None
    if dotted in {"apiVersion", "kind"}:
        return Reason.TLOG_ENTRY_INVALID
    return Reason.TLOG_BODY_MISMATCH


@pytest.mark.parametrize("name", NAMES)
def test_every_body_field(
    name: str, made: dict[str, Doc], kit: SigstoreKit, root: TrustRoot, signing_key: SigningKey
) -> None:
    """Each string of the entry body changed, then logged and SET-signed as the log would: refused."""
    variant = BY_NAME[name]
    body = json.loads(base64.b64decode(_entry(made[name])["canonicalizedBody"]))
    kind = body["kind"]
    got: dict[str, Reason | None] = {}
    expected: dict[str, Reason | None] = {}
    for path in _string_leaves(body):
        dotted = ".".join(path)

        def mutate(doc: dict[str, Any], path: tuple[str, ...] = path) -> None:
            _set_path(doc, path)

        tampered = make(variant, kit, signing_key, mutate_body=mutate)
        got[dotted] = reason(lambda tampered=tampered: verify(variant, tampered, root, signing_key))
        expected[dotted] = _expected_for_body(kind, dotted)
    assert len(got) >= 5
    assert got == expected


# --- timestamps and the validity windows of the TSA and of the log


def _root_with(kit: SigstoreKit, **windows: Any) -> TrustRoot:
    return TrustRoot.from_json(bundles.trusted_root_json(kit, **windows), "kit-windows")


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
    start = NOW - timedelta(days=30)
    windows = {
        "ends-before": (start, when - timedelta(seconds=1)),
        "starts-after": (when + timedelta(seconds=1), None),
        "ends-at": (start, when),
    }
    root = _root_with(kit, tsa_window=windows[window])
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
    start = NOW - timedelta(days=30)
    windows = {
        "ends-before": (start, when - timedelta(seconds=1)),
        "starts-after": (when + timedelta(seconds=1), None),
        "ends-at": (start, when),
        "open": (start, None),
    }
    root = _root_with(kit, rekor_v2_window=windows[window])
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
    start = NOW - timedelta(days=30)
    windows = {
        "ends-before": (start, when - timedelta(seconds=1)),
        "starts-after": (when + timedelta(seconds=1), None),
        "ends-at": (start, when),
    }
    root = _root_with(kit, rekor_v1_window=windows[window])
    assert reason(lambda: verify(variant, doc, root, signing_key)) is expected


def test_integrated_time_in_the_future(kit: SigstoreKit, root: TrustRoot, signing_key: SigningKey) -> None:
    variant = BY_NAME["v0.3"]
    doc = make(variant, kit, signing_key)
    integrated = int(_entry(doc)["integratedTime"])
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
        ("v0.1-set-only", {"version": "0.2", "media_type": bundles.MEDIA_TYPES["0.1"]}, None, None),
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
    root = _root_with(kit, rekor_v1_window=(NOW - timedelta(days=30), end))
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
        _entry(doc)["integratedTime"] = str(int((when + offset).timestamp()))
    root = _root_with(kit)
    assert reason(lambda: verify(variant, doc, root, signing_key, now=NOW + timedelta(hours=1))) is expected


@pytest.mark.parametrize("name", REKOR2)
def test_rekor2_log_index_is_the_proofs(
    name: str, made: dict[str, Doc], root: TrustRoot, signing_key: SigningKey
) -> None:
    """A Rekor v2 entry has no SET over its logIndex: it must be the index the Merkle path proves."""
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    entry = _entry(doc)
    entry["logIndex"] = str(int(entry["logIndex"]) + 1)
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.TLOG_ENTRY_INVALID


@pytest.mark.parametrize("name", WITH_PROOF)
def test_checkpoint_of_another_origin_signed_by_the_log(
    name: str, made: dict[str, Doc], kit: SigstoreKit, root: TrustRoot, signing_key: SigningKey
) -> None:
    """The log's key signs a checkpoint naming another origin. Rekor v2 (and sigstore-go) bind the
    origin to the log; Rekor v1 checkpoints are verified by key alone, by sigstore-go as by us."""
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    checkpoint = _entry(doc)["inclusionProof"]["checkpoint"]
    text = checkpoint["envelope"].partition("\n\n")[0] + "\n"
    origin, _, rest = text.partition("\n")
    infra = bundles.infrastructure(kit)
    log = infra.rekor_v2 if variant.tlog == "v2" else infra.rekor_v1
    checkpoint["envelope"] = bundles.sign_checkpoint(
        log, "other.log.test" + origin[len(log.host) :] + "\n" + rest
    )
    expected = Reason.TLOG_ENTRY_INVALID if variant.tlog == "v2" else None
    assert reason(lambda: verify(variant, doc, root, signing_key)) is expected
