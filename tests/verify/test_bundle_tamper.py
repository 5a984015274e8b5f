"""The bundle tamper matrix, part one: every variant verifies to the expected fields, and every
single defect of its content, certificate and log entry is refused with its exact Reason.

Each defect changes one thing and, where the log would have signed it, re-signs what is downstream
(``mutate_body`` re-logs the body, checkpoints are re-signed with the log key), so that exactly one
check can fail. Variants: :mod:`tests.verify.bundle_variants`; times, keys and versions:
:mod:`tests.verify.test_bundle_tamper_times`.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.errors import Reason
from controller.verify import TrustRoot
from tests.kit import bundles
from tests.kit.attest import key_id_of
from tests.kit.sigstore import SigningKey, SigstoreKit
from tests.verify.bundle_variants import (
    BY_NAME,
    DEFAULT_IDENTITY,
    KEYLESS,
    NAMES,
    OTHER,
    REKOR2,
    WITH_PROOF,
    WITH_SET,
    Doc,
    Variant,
    first_entry,
    flip_b64,
    make,
    reason,
    signature_holder,
    verify,
)

# The shared module-scoped fixtures: kit, root, signing_key, made.
pytest_plugins = ["tests.verify.bundle_fixtures"]


# --- positive cases


@pytest.mark.parametrize("name", NAMES)
def test_every_variant_verifies(
    name: str, made: dict[str, Doc], root: TrustRoot, signing_key: SigningKey
) -> None:
    variant = BY_NAME[name]
    doc = made[name]
    verified = verify(variant, copy.deepcopy(doc), root, signing_key)
    entry = first_entry(doc)
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
    holder, key = signature_holder(doc)
    holder[key] = flip_b64(holder[key])
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
    hint["digest"] = flip_b64(hint["digest"])
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
        envelope["signatures"][0]["sig"] = flip_b64(envelope["signatures"][0]["sig"], 5)


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
    promise = first_entry(doc)["inclusionPromise"]
    promise["signedEntryTimestamp"] = flip_b64(promise["signedEntryTimestamp"], 8)
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.TLOG_ENTRY_INVALID


@pytest.mark.parametrize("name", WITH_SET)
@pytest.mark.parametrize("field_name", ["logIndex", "integratedTime"])
def test_set_covered_field_changed(
    name: str, field_name: str, made: dict[str, Doc], root: TrustRoot, signing_key: SigningKey
) -> None:
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    entry = first_entry(doc)
    entry[field_name] = str(int(entry[field_name]) - 1)
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.TLOG_ENTRY_INVALID


@pytest.mark.parametrize("name", NAMES)
def test_unknown_log(name: str, made: dict[str, Doc], root: TrustRoot, signing_key: SigningKey) -> None:
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    log_id = first_entry(doc)["logId"]
    log_id["keyId"] = flip_b64(log_id["keyId"], 0)
    assert reason(lambda: verify(variant, doc, root, signing_key)) is Reason.TLOG_ENTRY_INVALID


def _proof_edit(doc: Doc, what: str) -> None:
    proof = first_entry(doc)["inclusionProof"]
    if what == "hash":
        proof["hashes"][0] = flip_b64(proof["hashes"][0], 0)
    elif what == "root":
        proof["rootHash"] = flip_b64(proof["rootHash"], 0)
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
    checkpoint = first_entry(doc)["inclusionProof"]["checkpoint"]
    envelope: str = checkpoint["envelope"]
    text, _, signatures = envelope.partition("\n\n")
    origin, size, root_hash, *rest = text.split("\n")
    infra = bundles.infrastructure(kit)
    log = infra.rekor_v2 if variant.tlog == "v2" else infra.rekor_v1
    if what == "root":  # re-signed by the log: a checkpoint of another tree
        lines = [origin, size, flip_b64(root_hash, 0), *rest]
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
    return flip_b64(value)


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
    body = json.loads(base64.b64decode(first_entry(made[name])["canonicalizedBody"]))
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


@pytest.mark.parametrize("name", REKOR2)
def test_rekor2_log_index_is_the_proofs(
    name: str, made: dict[str, Doc], root: TrustRoot, signing_key: SigningKey
) -> None:
    """A Rekor v2 entry has no SET over its logIndex: it must be the index the Merkle path proves."""
    variant = BY_NAME[name]
    doc = copy.deepcopy(made[name])
    entry = first_entry(doc)
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
    checkpoint = first_entry(doc)["inclusionProof"]["checkpoint"]
    text = checkpoint["envelope"].partition("\n\n")[0] + "\n"
    origin, _, rest = text.partition("\n")
    infra = bundles.infrastructure(kit)
    log = infra.rekor_v2 if variant.tlog == "v2" else infra.rekor_v1
    checkpoint["envelope"] = bundles.sign_checkpoint(
        log, "other.log.test" + origin[len(log.host) :] + "\n" + rest
    )
    expected = Reason.TLOG_ENTRY_INVALID if variant.tlog == "v2" else None
    assert reason(lambda: verify(variant, doc, root, signing_key)) is expected
