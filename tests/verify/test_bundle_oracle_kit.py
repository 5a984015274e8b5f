"""sigstore-python as a differential oracle on kit-made bundles, case by case.

Every keyless variant of the tamper matrix, intact and with one defect each, goes to both verifiers
(with the kit's trust root, the identity matched exactly). The verdicts must agree, except where
:data:`KNOWN_DISAGREEMENTS` says why; a listed disagreement that no longer happens fails too.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.kit import bundles
from tests.kit.sigstore import DEFAULT_IDENTITY, SigstoreKit
from tests.verify import bundle_variants as matrix
from tests.verify.test_oracle import NOW, Run, ours, theirs

Doc = dict[str, Any]

# variant name -> (ours, sigstore-python's) on the intact bundle, and why they differ
KNOWN_DISAGREEMENTS: dict[str, tuple[bool, bool, str]] = {
    "v0.1-set-only": (
        True,
        False,
        "sigstore-python requires an inclusion proof; cosign and sigstore-go accept a SET",
    ),
    "attestation-intoto": (
        True,
        False,
        "sigstore-python refuses intoto 0.0.2 entries, which cosign attest wrote",
    ),
    "rekor2-dsse": (True, False, "sigstore-python 4.5.1 does not support dsse 0.0.2 (Rekor v2) entries"),
}
KEYLESS = [variant for variant in matrix.VARIANTS if not variant.keyed]


def _flip(text: str, at: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _signature(doc: Doc) -> None:
    holder, key = matrix.signature_holder(doc)
    holder[key] = _flip(holder[key], 12)


def _log_id(doc: Doc) -> None:
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    entry["logId"]["keyId"] = _flip(entry["logId"]["keyId"], 0)


def _proof_hash(doc: Doc) -> None:
    proof = doc["verificationMaterial"]["tlogEntries"][0].get("inclusionProof")
    if proof is None:  # a SET-only entry: break the SET instead
        promise = doc["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
        promise["signedEntryTimestamp"] = _flip(promise["signedEntryTimestamp"], 8)
        return
    proof["hashes"][0] = _flip(proof["hashes"][0], 0)


def _body(doc: Doc) -> None:
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    entry["canonicalizedBody"] = base64.b64encode(b'{"apiVersion":"0.0.1"}').decode()


def _certificate(doc: Doc, kit: SigstoreKit) -> None:
    material = doc["verificationMaterial"]
    der = base64.b64encode(bundles.leaf_der(kit.issue_leaf(DEFAULT_IDENTITY))).decode()
    if "certificate" in material:
        material["certificate"]["rawBytes"] = der
    else:
        material["x509CertificateChain"]["certificates"][0]["rawBytes"] = der


DEFECTS: dict[str, Callable[[Doc, SigstoreKit], None]] = {
    "signature": lambda doc, _kit: _signature(doc),
    "log-id": lambda doc, _kit: _log_id(doc),
    "proof-or-set": lambda doc, _kit: _proof_hash(doc),
    "body": lambda doc, _kit: _body(doc),
    "certificate": _certificate,
}


@pytest.fixture(scope="module")
def verdicts() -> dict[str, tuple[bool, bool]]:
    kit = SigstoreKit(now=NOW)  # signed a minute before the oracle's NOW
    root = bundles.trusted_root_json(kit)
    out: dict[str, tuple[bool, bool]] = {}
    for variant in KEYLESS:
        intact = matrix.make(variant, kit, None)  # keyless: no key
        docs = {variant.name: intact}
        for defect, apply in DEFECTS.items():
            doc = copy.deepcopy(intact)
            apply(doc, kit)
            docs[f"{variant.name}/{defect}"] = doc
        for name, doc in docs.items():
            run = Run(
                name,
                bundles.dump(doc),
                variant.digest,
                root,
                DEFAULT_IDENTITY.subject,
                DEFAULT_IDENTITY.issuer,
            )
            out[name] = (ours(run), theirs(run))
    return out


def test_kit_bundles_verdicts_agree_case_by_case(verdicts: dict[str, tuple[bool, bool]]) -> None:
    disagreements = {name: pair for name, pair in verdicts.items() if pair[0] != pair[1]}
    assert disagreements == {name: (o, t) for name, (o, t, _) in KNOWN_DISAGREEMENTS.items()}
    for variant in KEYLESS:
        assert verdicts[variant.name][0] is True, variant.name
        for defect in DEFECTS:
            assert verdicts[f"{variant.name}/{defect}"] == (False, False), (variant.name, defect)
