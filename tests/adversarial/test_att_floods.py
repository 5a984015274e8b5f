"""A hostile registry's ``.att`` tag: floods of layers, oversized manifests and layers, endless bodies.

The image and its ``.sig`` are real (the session docker-registry over TLS); a scripted mirror in front of
it answers only the ``.att`` manifest (and the blobs it names) with hostility, everything else 404s there
and comes from the upstream. An attestation policy must deny, transient and within its deadline, without
holding more than its bounds; a signature-only policy on the same image must not notice.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from controller.config import Settings
from controller.engine import Engine, builtin_trust_roots
from controller.errors import Reason
from controller.model import Digest
from controller.policy import PolicySet, compile_policy_lenient
from controller.registry import RegistryClient, RegistryConfig
from controller.registry.manifest import OCI_MANIFEST
from controller.verify import TrustRoot
from tests.adversarial.support import att_layer, att_manifest, endless_json
from tests.fixtures.registry import RegistryServer
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, SigstoreKit
from tests.registry.fakes import Route, scripted

KIT = "test-kit"
ALICE = "alice@example.com"
SLSA = "https://slsa.dev/provenance/v1"
DEADLINE = 3.0


def _floods() -> dict[str, tuple[Route, dict[str, Route]]]:
    """name -> (the .att manifest's route, routes of the blobs it names, by digest)."""
    many = att_manifest(att_layer(b"%d" % i) for i in range(5000))
    huge_layer = b"x" * 64
    distinct = [bytes([i % 256]) * 1024 + b"%d" % i for i in range(64)]
    json_headers = {"Content-Type": OCI_MANIFEST}
    return {
        "5000 layers": (Route(body=many, headers=json_headers), {}),
        "endless manifest": (Route(raw=endless_json, headers=json_headers, content_length=-1), {}),
        "a layer claiming 1 GiB": (
            Route(body=att_manifest([att_layer(huge_layer, size=1 << 30)]), headers=json_headers),
            {},
        ),
        "endless blobs": (
            Route(body=att_manifest(att_layer(d) for d in distinct), headers=json_headers),
            {str(Digest.of(d)): Route(raw=endless_json, content_length=-1) for d in distinct},
        ),
    }


@pytest.fixture(scope="module")
def image(registry: RegistryServer, sigstore_kit: SigstoreKit) -> tuple[str, Digest]:
    digest = registry.push_random_image("flood/app", "v1")
    sig = sigstore_kit.sign_image(str(digest), f"{registry.host}/flood/app")
    registry.push_signature_manifest(
        "flood/app", f"sha256-{digest.hex}.sig", [(sig.payload, sig.annotations)]
    )
    return f"{registry.host}/flood/app@{digest}", digest


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


@pytest.mark.parametrize("flood", list(_floods()))
def test_an_att_flood_denies_within_bounds_and_spares_signature_decisions(
    flood: str, image: tuple[str, Digest], registry: RegistryServer, sigstore_kit: SigstoreKit
) -> None:
    reference, digest = image
    manifest_route, blob_routes = _floods()[flood]
    roots = builtin_trust_roots()
    roots[KIT] = TrustRoot.from_json(sigstore_kit.trusted_root_json(), KIT)
    with scripted() as mirror:
        mirror.routes[f"/v2/flood/app/manifests/sha256-{digest.hex}.att"] = manifest_route
        for blob, route in blob_routes.items():
            mirror.routes[f"/v2/flood/app/blobs/{blob}"] = route
        config = RegistryConfig.from_yaml(registry.registries_yaml({registry.host: [mirror.url]}))

        def engine(*docs: dict[str, object]) -> Engine:
            return Engine(
                registry=RegistryClient(config),
                policies=PolicySet([compile_policy_lenient(d) for d in docs]),
                trust_roots=roots,
                settings=Settings(decision_timeout_seconds=DEADLINE, fetch_timeout_seconds=DEADLINE),
            )

        attesting = engine(_policy("att", attestations=[{"name": "provenance", "predicateType": SLSA}]))
        signing = engine(_policy("sig"))
        try:
            started = time.monotonic()
            (denied,) = attesting.decide_images([reference]).verdicts
            took = time.monotonic() - started
            # a failed fetch is never cached (a .att merely absent would be: this proves the flood hit)
            retried = attesting.cached_decision([reference]) is None
            seen = len(mirror.paths())
            started = time.monotonic()
            (admitted,) = signing.decide_images([reference]).verdicts
            spared = time.monotonic() - started
            after_signing = mirror.paths()[seen:]
        finally:
            attesting.close()
            signing.close()

    assert not denied.allowed
    assert denied.reason in {Reason.LIMIT_EXCEEDED, Reason.ATTESTATION_MISSING}, denied.message()
    assert took < DEADLINE + 1.0
    assert retried
    assert admitted.allowed, admitted.message()
    assert spared < 1.0
    assert not any(path.endswith(".att") for path in after_signing)  # never asked for it
