"""The full pipeline against the real local registry: kit-signed images pushed cosign-style, then
policies, the engine and the CLI (`verify` and `check`) deciding exactly as the webhook will."""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.cli import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, main
from controller.config import Settings
from controller.engine import Engine, builtin_trust_roots
from controller.errors import Reason
from controller.model import Decision, Digest
from controller.policy import PolicySet, load_policies
from controller.registry import RegistryClient, RegistryConfig
from controller.verify import TrustRoot
from tests.fixtures.registry import RegistryServer
from tests.kit.oci import push_sig_image, push_signed_image
from tests.kit.sigstore import GITHUB_ACTIONS_ISSUER, GOOGLE_ISSUER, Identity, SigstoreKit

RELEASE = Identity.email("release@acme.example", GOOGLE_ISSUER)
INTRUDER = Identity.email("mallory@evil.example", GOOGLE_ISSUER)
WORKFLOW = Identity.github_workflow("acme/app")


@dataclass(frozen=True)
class World:
    """Images in the local registry, the files the CLI reads, and the kit that signed them."""

    registry: RegistryServer
    kit: SigstoreKit
    registries_yaml: Path
    trusted_root: Path
    signed: str  # by RELEASE, by tag
    signed_digest: Digest
    intruder: str  # signed by INTRUDER
    unsigned: str
    annotated: str  # signed by RELEASE with {"env": "prod"}
    no_tlog: str  # signed by RELEASE without a Rekor entry
    two_signers: str  # signed by INTRUDER and by RELEASE
    workflow: str  # signed by a GitHub Actions release workflow
    elsewhere: str  # signed by RELEASE, signatures stored in another repository
    sig_repo: str

    def policy(self, body: str) -> str:
        return textwrap.dedent(body).replace("REGISTRY", self.registry.host)


@pytest.fixture(scope="module")
def world(
    registry: RegistryServer, sigstore_kit: SigstoreKit, tmp_path_factory: pytest.TempPathFactory
) -> World:
    kit = sigstore_kit
    host = registry.host

    def signed(repo: str, *identities: Identity, **knobs: object) -> str:
        digest = push_signed_image(
            registry,
            repo,
            "v1",
            lambda d: [kit.sign_image(str(d), f"{host}/{repo}", identity=i, **knobs) for i in identities],  # type: ignore[arg-type]
        )
        del digest
        return f"{host}/{repo}:v1"

    signed_digest = Digest.parse("sha256:" + "0" * 64)
    signed_ref = signed("acme/app", RELEASE)
    unsigned_digest = registry.push_random_image("acme/unsigned", "v1")
    del unsigned_digest
    elsewhere_digest = registry.push_random_image("acme/elsewhere", "v1")
    push_sig_image(
        registry,
        "sigs/elsewhere",
        elsewhere_digest,
        [kit.sign_image(str(elsewhere_digest), f"{host}/acme/elsewhere", identity=RELEASE)],
    )
    files = tmp_path_factory.mktemp("pipeline")
    (files / "registries.yaml").write_text(registry.registries_yaml())
    (files / "trusted_root.json").write_bytes(kit.trusted_root_json())
    client = RegistryClient(config=RegistryConfig.from_yaml(registry.registries_yaml()))
    from controller.registry import parse_reference

    signed_digest = client.resolve(parse_reference(signed_ref))
    return World(
        registry=registry,
        kit=kit,
        registries_yaml=files / "registries.yaml",
        trusted_root=files / "trusted_root.json",
        signed=signed_ref,
        signed_digest=signed_digest,
        intruder=signed("acme/intruder", INTRUDER),
        unsigned=f"{host}/acme/unsigned:v1",
        annotated=signed("acme/annotated", RELEASE, annotations={"env": "prod"}),
        no_tlog=signed("acme/no-tlog", RELEASE, tlog=False),
        two_signers=signed("acme/two", INTRUDER, RELEASE),
        workflow=signed("acme/workflow", WORKFLOW),
        elsewhere=f"{host}/acme/elsewhere:v1",
        sig_repo=f"{host}/sigs/elsewhere",
    )


BASE_POLICY = """
apiVersion: imprimatur.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: acme-releases}
spec:
  images: [{glob: "REGISTRY/acme/**"}]
  identities:
    - {issuer: "https://accounts.google.com", subject: "release@acme.example"}
  trustRoot: kit
"""


@pytest.fixture
def engine_for(world: World) -> Iterator[object]:
    engines: list[Engine] = []

    def make(policy_yaml: str, **settings: object) -> Engine:
        roots = builtin_trust_roots()
        roots["kit"] = TrustRoot.from_json(world.trusted_root.read_bytes(), "kit")
        engine = Engine(
            registry=RegistryClient(config=RegistryConfig.from_yaml(world.registries_yaml.read_text())),
            policies=PolicySet(load_policies(world.policy(policy_yaml))),
            trust_roots=roots,
            settings=Settings(**settings),  # type: ignore[arg-type]
        )
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def _only(decision: Decision) -> tuple[bool, Reason]:
    (verdict,) = decision.verdicts
    return verdict.allowed, verdict.reason


def test_signed_by_trusted_identity_is_admitted_at_its_digest(world: World, engine_for) -> None:  # type: ignore[no-untyped-def]
    decision = engine_for(BASE_POLICY).decide_images([world.signed])
    assert _only(decision) == (True, Reason.VERIFIED)
    verdict = decision.verdicts[0]
    assert verdict.digest == world.signed_digest
    assert verdict.signers[0].subject == RELEASE.subject
    assert verdict.policies == ("ClusterImagePolicy acme-releases",)
    assert any("tag can move" in w for w in decision.warnings)


def test_wrong_identity_and_unsigned_are_denied_with_their_reasons(world: World, engine_for) -> None:  # type: ignore[no-untyped-def]
    decision = engine_for(BASE_POLICY).decide_images([world.signed, world.intruder, world.unsigned])
    assert not decision.allowed
    assert [(v.allowed, v.reason) for v in decision.verdicts] == [
        (True, Reason.VERIFIED),
        (False, Reason.IDENTITY_MISMATCH),
        (False, Reason.SIGNATURE_NOT_FOUND),
    ]
    lines = decision.message().splitlines()
    assert lines[0].startswith(f"IdentityMismatch: {world.intruder}: ")
    assert lines[1].startswith(f"SignatureNotFound: {world.unsigned}: ")


def test_any_trusted_signature_among_several_suffices(world: World, engine_for) -> None:  # type: ignore[no-untyped-def]
    assert _only(engine_for(BASE_POLICY).decide_images([world.two_signers])) == (True, Reason.VERIFIED)


def test_every_matching_policy_must_pass(world: World, engine_for) -> None:  # type: ignore[no-untyped-def]
    stricter = (
        BASE_POLICY
        + """
---
apiVersion: imprimatur.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: needs-ci}
spec:
  images: [{glob: "REGISTRY/acme/app"}]
  identities:
    - {issuer: "https://token.actions.githubusercontent.com", subjectRegExp: "https://github.com/acme/.+"}
  trustRoot: kit
"""
    )
    decision = engine_for(stricter).decide_images([world.signed])
    assert _only(decision) == (False, Reason.IDENTITY_MISMATCH)
    assert decision.verdicts[0].policies == (
        "ClusterImagePolicy acme-releases",
        "ClusterImagePolicy needs-ci",
    )


def test_namespaced_policy_adds_requirements_only_in_its_namespace(world: World, engine_for) -> None:  # type: ignore[no-untyped-def]
    policies = (
        BASE_POLICY
        + """
---
apiVersion: imprimatur.dev/v1alpha1
kind: ImagePolicy
metadata: {name: team-prod, namespace: prod}
spec:
  images: [{glob: "REGISTRY/acme/**"}]
  identities:
    - {issuer: "https://accounts.google.com", subject: "release@acme.example"}
  annotations: {env: prod}
  trustRoot: kit
"""
    )
    engine = engine_for(policies)
    assert _only(engine.decide_images([world.signed], namespace="dev")) == (True, Reason.VERIFIED)
    assert _only(engine.decide_images([world.signed], namespace="prod")) == (
        False,
        Reason.ANNOTATION_MISMATCH,
    )
    assert _only(engine.decide_images([world.annotated], namespace="prod")) == (True, Reason.VERIFIED)


def test_github_workflow_claims(world: World, engine_for) -> None:  # type: ignore[no-untyped-def]
    policy = """
apiVersion: imprimatur.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: ci}
spec:
  images: [{glob: "REGISTRY/acme/**"}]
  identities:
    - issuer: "https://token.actions.githubusercontent.com"
      subjectRegExp: "https://github.com/acme/app/.+"
      claims: {githubWorkflowRepository: "acme/app", githubWorkflowTrigger: {regExp: "push|release"}}
  trustRoot: kit
"""
    engine = engine_for(policy)
    assert _only(engine.decide_images([world.workflow])) == (True, Reason.VERIFIED)
    other_repo = policy.replace(
        'githubWorkflowRepository: "acme/app"', 'githubWorkflowRepository: "acme/other"'
    )
    assert _only(engine_for(other_repo).decide_images([world.workflow])) == (False, Reason.IDENTITY_MISMATCH)
    assert WORKFLOW.issuer == GITHUB_ACTIONS_ISSUER


def test_warn_mode_admits_with_a_warning(world: World, engine_for) -> None:  # type: ignore[no-untyped-def]
    decision = engine_for(
        BASE_POLICY.replace("trustRoot: kit", "trustRoot: kit\n  mode: warn")
    ).decide_images([world.intruder])
    assert decision.allowed
    assert any("IdentityMismatch" in w for w in decision.warnings)


def test_tlog_required_by_default_and_optional_warns(world: World, engine_for) -> None:  # type: ignore[no-untyped-def]
    assert _only(engine_for(BASE_POLICY).decide_images([world.no_tlog])) == (False, Reason.TLOG_ENTRY_MISSING)
    optional = engine_for(BASE_POLICY.replace("trustRoot: kit", "trustRoot: kit\n  tlog: optional"))
    decision = optional.decide_images([world.no_tlog])
    assert decision.allowed
    assert decision.verdicts[0].signers[0].log_index is None
    assert any("tlog" in w.lower() or "rekor" in w.lower() for w in decision.warnings)


def test_signature_repository_override(world: World, engine_for) -> None:  # type: ignore[no-untyped-def]
    assert _only(engine_for(BASE_POLICY).decide_images([world.elsewhere])) == (
        False,
        Reason.SIGNATURE_NOT_FOUND,
    )
    per_policy = BASE_POLICY.replace(
        "trustRoot: kit", f"trustRoot: kit\n  signatureRepository: {world.sig_repo}"
    )
    assert _only(engine_for(per_policy).decide_images([world.elsewhere])) == (True, Reason.VERIFIED)
    flag = engine_for(BASE_POLICY, signature_repository=world.sig_repo)
    assert _only(flag.decide_images([world.elsewhere])) == (True, Reason.VERIFIED)


def test_unmatched_image_gets_the_default(world: World, engine_for) -> None:  # type: ignore[no-untyped-def]
    image = f"{world.registry.host}/other/thing:v1"
    assert _only(engine_for(BASE_POLICY).decide_images([image])) == (False, Reason.NO_MATCHING_POLICY)
    decision = engine_for(BASE_POLICY, default_decision="allow").decide_images([image])
    assert decision.allowed
    assert decision.warnings


def test_digest_required_setting(world: World, engine_for) -> None:  # type: ignore[no-untyped-def]
    engine = engine_for(BASE_POLICY, require_digest=True)
    assert _only(engine.decide_images([world.signed])) == (False, Reason.DIGEST_REQUIRED)
    pinned = world.signed.rsplit(":", 1)[0] + f"@{world.signed_digest}"
    assert _only(engine.decide_images([pinned])) == (True, Reason.VERIFIED)


def test_unknown_trust_root_fails_closed(world: World, engine_for) -> None:  # type: ignore[no-untyped-def]
    decision = engine_for(BASE_POLICY.replace("trustRoot: kit", "trustRoot: nowhere")).decide_images(
        [world.signed]
    )
    assert _only(decision) == (False, Reason.TRUST_ROOT_UNKNOWN)


def test_public_good_root_does_not_trust_the_test_pki(world: World, engine_for) -> None:  # type: ignore[no-untyped-def]
    decision = engine_for(BASE_POLICY.replace("trustRoot: kit", "trustRoot: public-good")).decide_images(
        [world.signed]
    )
    # The kit's Rekor is not a public-good log: step 5 (tlog) refuses it before step 6 (chain) runs.
    assert _only(decision) == (False, Reason.TLOG_ENTRY_INVALID)


def test_missing_image_is_a_transient_denial(world: World, engine_for) -> None:  # type: ignore[no-untyped-def]
    decision = engine_for(BASE_POLICY).decide_images([f"{world.registry.host}/acme/ghost:v1"])
    assert _only(decision) == (False, Reason.IMAGE_NOT_FOUND)
    assert decision.verdicts[0].transient


# --- the CLI over the same engine


def _cli(world: World, tmp_path: Path, policy: str, *args: str) -> tuple[int, str]:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(world.policy(policy))
    out = io.StringIO()
    code = main(
        [
            *args[:1],
            "--registry-config",
            str(world.registries_yaml),
            "--trusted-root",
            f"kit={world.trusted_root}",
            "--policy",
            str(policy_file),
            *args[1:],
        ],
        out=out,
    )
    return code, out.getvalue()


def test_cli_verify_exit_codes(world: World, tmp_path: Path) -> None:
    assert _cli(world, tmp_path, BASE_POLICY, "verify", world.signed)[0] == EXIT_OK
    code, text = _cli(world, tmp_path, BASE_POLICY, "verify", world.signed, world.unsigned)
    assert code == EXIT_REJECTED
    assert f"SignatureNotFound: {world.unsigned}" in text
    code, _ = _cli(world, tmp_path, "kind: ClusterImagePolicy\nspec: {}\n", "verify", world.signed)
    assert code == EXIT_USAGE


def test_cli_flags_build_the_same_policy(world: World, tmp_path: Path) -> None:
    out = io.StringIO()
    base = [
        "verify",
        "--registry-config",
        str(world.registries_yaml),
        "--trusted-root",
        str(world.trusted_root),
        "--certificate-oidc-issuer",
        GOOGLE_ISSUER,
        "-o",
        "json",
    ]
    assert main([*base, "--certificate-identity", RELEASE.subject, world.signed], out=out) == EXIT_OK
    assert json.loads(out.getvalue())["images"][0]["signatures"][0]["subject"] == RELEASE.subject
    out = io.StringIO()
    code = main([*base, "--certificate-identity", RELEASE.subject, "-a", "env=prod", world.signed], out=out)
    assert code == EXIT_REJECTED
    assert json.loads(out.getvalue())["images"][0]["reason"] == "AnnotationMismatch"
    assert (
        main([*base, "--certificate-identity", RELEASE.subject, "-a", "env=prod", world.annotated]) == EXIT_OK
    )


def test_cli_check_evaluates_every_pod_template(world: World, tmp_path: Path) -> None:
    manifests = tmp_path / "app.yaml"
    manifests.write_text(
        textwrap.dedent(f"""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: web, namespace: shop}}
        spec:
          selector: {{matchLabels: {{app: web}}}}
          template:
            metadata: {{labels: {{app: web}}}}
            spec:
              initContainers: [{{name: init, image: "{world.signed}"}}]
              containers: [{{name: web, image: "{world.two_signers}"}}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: web}}
        spec: {{ports: [{{port: 80}}]}}
        ---
        apiVersion: batch/v1
        kind: CronJob
        metadata: {{name: nightly}}
        spec:
          schedule: "0 0 * * *"
          jobTemplate:
            spec:
              template:
                spec:
                  restartPolicy: Never
                  containers: [{{name: job, image: "{world.intruder}"}}]
        """)
    )
    code, text = _cli(world, tmp_path, BASE_POLICY, "check", "-f", str(manifests), "-o", "json")
    assert code == EXIT_REJECTED
    result = json.loads(text)
    assert [(o["object"].split(" (")[0], o["allowed"]) for o in result["objects"]] == [
        ("Deployment shop/web", True),
        ("CronJob default/nightly", False),
    ]
    assert result["objects"][1]["images"][0]["reason"] == "IdentityMismatch"
