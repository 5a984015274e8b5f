"""Attestations and key-signed images end to end: the real docker-registry over TLS, the Engine, the CLI.

* a keyless-signed image with a legacy ``.att`` (cosign ≤ 2) of an SLSA provenance statement;
* a key-signed image (``cosign sign --key``);
* a real cosign v3 attestation bundle attached as an OCI 1.1 referrer (the registry has no referrers
  API, so the referrers tag schema), from ``../shared/testdata/sigstore-real``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.config import Settings
from controller.engine import Engine, builtin_trust_roots
from controller.errors import Reason
from controller.model import Digest
from controller.policy import PolicySet, compile_policy_lenient
from controller.registry import RegistryClient, RegistryConfig
from controller.registry.signatures import DSSE_ENVELOPE
from controller.verify import TrustRoot
from tests.engine.test_sources import CountingSession
from tests.fixtures.registry import RegistryServer
from tests.kit.attest import attest_image, key_sign_image, public_key_pem
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, KeyType, SigstoreKit, generate_key
from tests.verify.realdata import bundle_bytes

SLSA = "https://slsa.dev/provenance/v1"
ALICE = "alice@example.com"
KIT = "test-kit"
V3_BUNDLE = "cosign__oci-attestation.sigstore.json"
V3_IMAGE = Digest.parse("sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4")
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"


@dataclass(frozen=True)
class World:
    attested: str  # keyless .sig + legacy .att (SLSA, builder ci)
    keyed: str  # key-signed .sig
    key_pem: str
    v3: str  # the real v3 attestation bundle as a referrer, pinned


@pytest.fixture(scope="module")
def world(registry: RegistryServer, sigstore_kit: SigstoreKit) -> World:
    host = registry.host
    digest = registry.push_random_image("att/app", "v1")
    sig = sigstore_kit.sign_image(str(digest), f"{host}/att/app")
    registry.push_signature_manifest("att/app", f"sha256-{digest.hex}.sig", [(sig.payload, sig.annotations)])
    att = attest_image(
        sigstore_kit,
        str(digest),
        f"{host}/att/app",
        predicate_type=SLSA,
        predicate={"buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1"}},
    )
    registry.push_signature_manifest(
        "att/app",
        f"sha256-{digest.hex}.att",
        [(att.payload, att.annotations)],
        layer_media_type=DSSE_ENVELOPE,
    )

    key = generate_key(KeyType.ECDSA_P256)
    keyed = registry.push_random_image("att/keyed", "v1")
    layer = key_sign_image(sigstore_kit, str(keyed), f"{host}/att/keyed", key)
    registry.push_signature_manifest(
        "att/keyed", f"sha256-{keyed.hex}.sig", [(layer.payload, layer.annotations)]
    )

    bundle = bundle_bytes(V3_BUNDLE)
    referrer, size = registry.push_referrer_bundle("att/v3", V3_IMAGE, bundle)
    registry.push_referrers_index("att/v3", V3_IMAGE, [(referrer, size, BUNDLE_V03)])
    return World(
        f"{host}/att/app@{digest}",
        f"{host}/att/keyed@{keyed}",
        public_key_pem(key),
        f"{host}/att/v3@{V3_IMAGE}",
    )


def _policy(name: str, glob: str, *, identities: list[Any] | None = None, **spec: Any) -> dict[str, object]:
    return {
        "apiVersion": "imprimatur.dev/v1alpha1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": name},
        "spec": {
            "images": [{"glob": glob}],
            "identities": identities or [{"issuer": GITHUB_OAUTH_ISSUER, "subject": ALICE}],
            "trustRoot": KIT,
            **spec,
        },
    }


def _provenance(expression: str) -> list[dict[str, object]]:
    return [
        {
            "name": "provenance",
            "predicateType": SLSA,
            "conditions": [{"expression": expression, "message": "built by GitHub Actions"}],
        }
    ]


GITHUB_BUILD = 'predicate.buildDefinition.buildType == "https://actions.github.io/buildtypes/workflow/v1"'


@pytest.fixture
def decide(registry: RegistryServer, sigstore_kit: SigstoreKit) -> Iterator[Any]:
    engines: list[Engine] = []

    def run(image: str, *docs: dict[str, object]) -> tuple[Any, CountingSession]:
        session = CountingSession()
        roots = builtin_trust_roots()
        roots[KIT] = TrustRoot.from_json(sigstore_kit.trusted_root_json(), KIT)
        engine = Engine(
            registry=RegistryClient(RegistryConfig.from_yaml(registry.registries_yaml()), session=session),
            policies=PolicySet([compile_policy_lenient(d) for d in docs]),
            trust_roots=roots,
            settings=Settings(),
        )
        engines.append(engine)
        (verdict,) = engine.decide_images([image]).verdicts
        return verdict, session

    yield run
    for engine in engines:
        engine.close()


def test_an_attestation_policy_with_a_condition_admits(world: World, decide: Any) -> None:
    verdict, session = decide(world.attested, _policy("prov", "**", attestations=_provenance(GITHUB_BUILD)))
    assert verdict.allowed, verdict.message()
    assert session.att_reads() == 1


def test_a_failed_condition_names_the_attestation_and_the_condition(world: World, decide: Any) -> None:
    verdict, _ = decide(
        world.attested,
        _policy("prov", "**", attestations=_provenance('predicate.buildDefinition.buildType == "x"')),
    )
    assert not verdict.allowed
    assert verdict.reason is Reason.ATTESTATION_CONDITION_FAILED
    assert "provenance" in verdict.detail
    assert "built by GitHub Actions" in verdict.detail


def test_a_missing_predicate_type_is_attestation_missing(world: World, decide: Any) -> None:
    wanted = [{"name": "sbom", "predicateType": "https://spdx.dev/Document"}]
    verdict, _ = decide(world.attested, _policy("sbom", "**", attestations=wanted))
    assert not verdict.allowed
    assert verdict.reason is Reason.ATTESTATION_MISSING


def test_a_signature_policy_never_reads_the_att_tag(world: World, decide: Any) -> None:
    verdict, session = decide(world.attested, _policy("sig", "**"))
    assert verdict.allowed, verdict.message()
    assert session.att_reads() == 0


def test_a_key_signed_image_passes_only_a_key_identity(world: World, decide: Any) -> None:
    by_key = [{"key": {"pem": world.key_pem}}]
    verdict, _ = decide(world.keyed, _policy("key", "**", identities=by_key))
    assert verdict.allowed, verdict.message()
    (signer,) = verdict.signers
    assert signer.key_id.startswith("sha256:")

    keyless, _ = decide(world.keyed, _policy("keyless", "**"))
    assert not keyless.allowed

    other = [{"key": {"pem": public_key_pem(generate_key(KeyType.ECDSA_P256))}}]
    wrong, _ = decide(world.keyed, _policy("other", "**", identities=other))
    assert not wrong.allowed
    assert wrong.reason is Reason.KEY_MISMATCH

    # and the keyless-signed image does not satisfy a key identity either
    crossed, _ = decide(world.attested, _policy("key", "**", identities=by_key))
    assert not crossed.allowed


def test_a_v3_attestation_bundle_is_not_a_signature(world: World, decide: Any) -> None:
    cody = {"issuer": GITHUB_OAUTH_ISSUER, "subject": "cody@soyland.com"}
    verdict, _ = decide(
        world.v3,
        {
            **_policy("v3", "**", identities=[cody]),
            "spec": {"images": [{"glob": "**"}], "identities": [cody], "trustRoot": "public-good"},
        },
    )
    assert not verdict.allowed
    assert verdict.reason is Reason.SIGNATURE_NOT_FOUND


# --- the CLI


def _cli(registry: RegistryServer, tmp_path: Path, *args: str) -> tuple[int, str]:
    config = tmp_path / "registries.yaml"
    config.write_text(registry.registries_yaml())
    out = io.StringIO()
    code = main(["verify-attestation", "--registry-config", str(config), *args], out)
    return code, out.getvalue()


def test_cli_prints_the_verified_legacy_statement(
    world: World, registry: RegistryServer, sigstore_trusted_root_file: Path, tmp_path: Path
) -> None:
    identity = ("--certificate-identity", ALICE, "--certificate-oidc-issuer", GITHUB_OAUTH_ISSUER)
    root = ("--trusted-root", str(sigstore_trusted_root_file))
    code, out = _cli(registry, tmp_path, world.attested, "--type", "slsaprovenance1", *identity, *root)
    assert code == 0, out
    (line,) = out.splitlines()
    statement = json.loads(line)
    assert statement["predicateType"] == SLSA
    assert statement["subject"][0]["digest"]["sha256"] == world.attested.rsplit(":", 1)[1]

    code, out = _cli(registry, tmp_path, world.attested, "--type", "spdx", *identity, *root)
    assert (code, out) == (1, "")
    code, _ = _cli(
        registry,
        tmp_path,
        world.attested,
        "--type",
        SLSA,
        "--certificate-identity",
        "mallory@example.com",
        "--certificate-oidc-issuer",
        GITHUB_OAUTH_ISSUER,
        *root,
    )
    assert code == 1
    assert _cli(registry, tmp_path, world.attested, "--type", "nonsense", *identity, *root)[0] == 2


def test_cli_prints_the_real_v3_attestation_as_json(
    world: World, registry: RegistryServer, tmp_path: Path
) -> None:
    code, out = _cli(
        registry,
        tmp_path,
        world.v3,
        "--type",
        "custom",
        "--certificate-identity",
        "cody@soyland.com",
        "--certificate-oidc-issuer",
        GITHUB_OAUTH_ISSUER,
        "-o",
        "json",
    )
    assert code == 0, out
    document = json.loads(out)
    assert document["verified"] is True
    (found,) = document["attestations"]
    assert found["signer"]["subject"] == "cody@soyland.com"
    assert found["signer"]["logIndex"] == 175508996
    assert found["statement"]["predicateType"] == "https://cosign.sigstore.dev/attestation/v1"
