"""The bundle variants of the tamper matrix, and their helpers (not a test module; each test module makes its own fixtures).

Variants (:data:`VARIANTS`): v0.1 with a SET only, v0.2 with an inclusion proof and the chain, v0.3
(both media types), cosign v3 image signatures and attestations (dsse 0.0.1, intoto 0.0.2), Rekor
v2 (hashedrekord/dsse 0.0.2 with a TSA timestamp, no SET) and key-signed bundles, each made by
:mod:`tests.kit.bundles` with the kit's PKI around :data:`NOW`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.errors import ImprimaturError, Reason
from controller.model import COSIGN_SIGNATURE_PREDICATE, Digest, TrustedKey, VerifiedSignature
from controller.verify import TrustRoot, VerifyOptions, verify_blob
from tests.kit import bundles
from tests.kit.attest import trusted_key
from tests.kit.sigstore import DEFAULT_IDENTITY, SigningKey, SigstoreKit

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


def make_all(kit: SigstoreKit, key: SigningKey) -> dict[str, Doc]:
    """Every variant, made once per test module; tests deep-copy before changing one."""
    return {v.name: make(v, kit, key) for v in VARIANTS}


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


def first_entry(doc: Doc) -> Doc:
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    assert isinstance(entry, dict)
    return entry


def flip_b64(text: str, at: int = -1) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at if at >= 0 else len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def signature_holder(doc: Doc) -> tuple[Doc, str]:
    if "dsseEnvelope" in doc:
        return doc["dsseEnvelope"]["signatures"][0], "sig"
    return doc["messageSignature"], "signature"


def root_with(kit: SigstoreKit, **windows: Any) -> TrustRoot:
    return TrustRoot.from_json(bundles.trusted_root_json(kit, **windows), "kit-windows")


def window_around(when: datetime, window: str) -> tuple[datetime, datetime | None]:
    """A trust-root validity window placed against ``when``: ending just before it, starting just
    after it, ending exactly at it (inclusive), or open-ended; each starting 30 days before NOW."""
    start = NOW - timedelta(days=30)
    windows: dict[str, tuple[datetime, datetime | None]] = {
        "ends-before": (start, when - timedelta(seconds=1)),
        "starts-after": (when + timedelta(seconds=1), None),
        "ends-at": (start, when),
        "open": (start, None),
    }
    return windows[window]
