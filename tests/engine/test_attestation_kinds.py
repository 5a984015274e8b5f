"""At the engine, over the real registry: an attestation satisfies only ``attestations:`` entries, a
signature only ``identities``, and a ``.att`` tag that cannot be read is a transient fetch failure.

* an image with a legacy ``.att`` by the trusted identity but no ``.sig``: ``SignatureNotFound`` for
  a signature policy and for an attestation policy alike (the attestation never stands in);
* an image with a ``.sig`` only, under an entry whose predicate type is cosign's signature predicate:
  ``AttestationMissing`` (a signature never stands in for an attestation);
* an image whose ``.att`` manifest lists 5000 layers: ``LimitExceeded``, transient, naming the entry,
  never a plain ``AttestationMissing``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from controller.config import Settings
from controller.engine import Engine, builtin_trust_roots
from controller.errors import Reason
from controller.model import COSIGN_SIGNATURE_PREDICATE, Digest, ImageVerdict
from controller.policy import PolicySet, compile_policy_lenient
from controller.registry import RegistryClient, RegistryConfig
from controller.registry.manifest import OCI_MANIFEST
from controller.registry.signatures import DSSE_ENVELOPE
from controller.verify import TrustRoot
from tests.fixtures.registry import RegistryServer
from tests.kit.attest import attest_image
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, SigstoreKit
from tests.registry.fakes import Route, scripted

KIT = "test-kit"
ALICE = "alice@example.com"
SLSA = "https://slsa.dev/provenance/v1"


def _policy(name: str, **spec: Any) -> dict[str, object]:
    return {
        "apiVersion": "imprimatur.dev/v1alpha1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": name},
        "spec": {
            "images": [{"glob": "**"}],
            "identities": [{"issuer": GITHUB_OAUTH_ISSUER, "subject": ALICE}],
            "trustRoot": KIT,
            **spec,
        },
    }


def _entry(predicate_type: str) -> list[dict[str, object]]:
    return [{"name": "wanted", "predicateType": predicate_type}]


def _decide(registry_yaml: str, kit: SigstoreKit, image: str, doc: dict[str, object]) -> ImageVerdict:
    roots = builtin_trust_roots()
    roots[KIT] = TrustRoot.from_json(kit.trusted_root_json(), KIT)
    engine = Engine(
        registry=RegistryClient(RegistryConfig.from_yaml(registry_yaml)),
        policies=PolicySet([compile_policy_lenient(doc)]),
        trust_roots=roots,
        settings=Settings(),
    )
    try:
        (verdict,) = engine.decide_images([image]).verdicts
    finally:
        engine.close()
    return verdict


@pytest.fixture(scope="module")
def only_attested(registry: RegistryServer, sigstore_kit: SigstoreKit) -> str:
    """An image with a legacy .att (SLSA, by alice) and no .sig at all."""
    digest = registry.push_random_image("kinds/att-only", "v1")
    att = attest_image(sigstore_kit, str(digest), f"{registry.host}/kinds/att-only", predicate_type=SLSA)
    registry.push_signature_manifest(
        "kinds/att-only",
        f"sha256-{digest.hex}.att",
        [(att.payload, att.annotations)],
        layer_media_type=DSSE_ENVELOPE,
    )
    return f"{registry.host}/kinds/att-only@{digest}"


@pytest.fixture(scope="module")
def only_signed(registry: RegistryServer, sigstore_kit: SigstoreKit) -> Iterator[tuple[str, Digest]]:
    digest = registry.push_random_image("kinds/sig-only", "v1")
    sig = sigstore_kit.sign_image(str(digest), f"{registry.host}/kinds/sig-only")
    registry.push_signature_manifest(
        "kinds/sig-only", f"sha256-{digest.hex}.sig", [(sig.payload, sig.annotations)]
    )
    yield f"{registry.host}/kinds/sig-only@{digest}", digest


@pytest.mark.parametrize(
    "spec", [{}, {"attestations": _entry(SLSA)}], ids=["signature policy", "attestation policy"]
)
def test_an_attestation_alone_never_stands_in_for_a_signature(
    registry: RegistryServer, sigstore_kit: SigstoreKit, only_attested: str, spec: dict[str, Any]
) -> None:
    verdict = _decide(registry.registries_yaml(), sigstore_kit, only_attested, _policy("p", **spec))
    assert not verdict.allowed
    assert verdict.reason == Reason.SIGNATURE_NOT_FOUND, verdict.message()


def test_a_signature_never_stands_in_for_an_attestation(
    registry: RegistryServer, sigstore_kit: SigstoreKit, only_signed: tuple[str, Digest]
) -> None:
    image, _ = only_signed
    doc = _policy("p", attestations=_entry(COSIGN_SIGNATURE_PREDICATE))
    verdict = _decide(registry.registries_yaml(), sigstore_kit, image, doc)
    assert not verdict.allowed
    assert verdict.reason == Reason.ATTESTATION_MISSING, verdict.message()
    assert not verdict.transient


def test_an_unreadable_att_tag_is_a_transient_fetch_failure_not_missing(
    registry: RegistryServer, sigstore_kit: SigstoreKit, only_signed: tuple[str, Digest]
) -> None:
    image, digest = only_signed
    config = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": str(Digest.of(b"{}")),
        "size": 2,
    }
    layers = [
        {"mediaType": DSSE_ENVELOPE, "digest": str(Digest.of(b"%d" % i)), "size": 1} for i in range(5000)
    ]
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers})
    with scripted() as mirror:
        mirror.routes[f"/v2/kinds/sig-only/manifests/sha256-{digest.hex}.att"] = Route(
            body=body.encode(), headers={"Content-Type": OCI_MANIFEST}
        )
        registries = registry.registries_yaml({registry.host: [mirror.url]})
        verdict = _decide(registries, sigstore_kit, image, _policy("p", attestations=_entry(SLSA)))
    assert not verdict.allowed
    assert verdict.reason == Reason.LIMIT_EXCEEDED, verdict.message()
    assert verdict.transient
    assert "attestation wanted" in verdict.detail
    assert f"sha256-{digest.hex}.att" in verdict.detail
