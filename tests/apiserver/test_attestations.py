"""Attestations and Secret-held keys on the real API server, as a user sees them through kubectl.

* An image with a legacy ``.att`` (cosign ≤ 2: one DSSE envelope per layer) of an SLSA provenance
  statement, under a ClusterImagePolicy that requires that attestation with a CEL condition: admitted;
  the same policy over an image whose statement fails the condition: denied ``AttestationConditionFailed``
  in kubectl's exact words.
* A key-signed image under a ClusterImagePolicy whose key is ``key.secretRef``, a Secret in the
  controller's namespace: admitted; after the Secret is changed to another key, denied ``KeyMismatch``
  within the controller's refresh of Secret references (polled by server-side dry runs).

Everything lives under ``<host>/kube/attest/`` and ``<host>/kube/keyed/`` and in namespace ``e2e-attest``,
apart from the other suites'.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from controller.admission.operator import DEFAULT_REFRESH_SECONDS
from controller.registry.signatures import DSSE_ENVELOPE
from tests.admission.harness import TRUSTED_SUBJECT, cluster_policy
from tests.apiserver.conftest import Cluster
from tests.apiserver.harness import CONTROLLER_NAMESPACE, Outcome, wait_observed
from tests.fixtures.registry import RegistryServer
from tests.kit.attest import attest_image, key_sign_image, public_key_pem
from tests.kit.oci import push_signed_image
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, Identity, KeyType, SigstoreKit, generate_key

NAMESPACE = "e2e-attest"
SLSA = "https://slsa.dev/provenance/v1"
GHA = "https://actions.github.io/buildtypes/workflow/v1"
CONDITION = f'predicate.buildDefinition.buildType == "{GHA}"'
MESSAGE = "built by GitHub Actions"
SECRET = "attest-signing-key"
SECRET_KEY = "cosign.pub"
REFRESH_SLACK_SECONDS = 5.0
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class World:
    built_by_actions: str  # signed by alice; .att: SLSA, built by GitHub Actions
    built_elsewhere: str  # signed by alice; .att: SLSA, built by some other builder
    keyed: str  # signed with key_a (cosign sign --key), with a Rekor entry
    key_a: str  # PEM
    key_b: str  # PEM


def _attested(registry: RegistryServer, kit: SigstoreKit, repo: str, build_type: str) -> str:
    host = registry.host
    alice = Identity.email(TRUSTED_SUBJECT, GITHUB_OAUTH_ISSUER)
    digest = push_signed_image(
        registry, repo, "v1", lambda d: [kit.sign_image(str(d), f"{host}/{repo}", identity=alice)]
    )
    att = attest_image(
        kit,
        str(digest),
        f"{host}/{repo}",
        predicate_type=SLSA,
        predicate={"buildDefinition": {"buildType": build_type}},
        identity=alice,
    )
    registry.push_signature_manifest(
        repo, f"sha256-{digest.hex}.att", [(att.payload, att.annotations)], layer_media_type=DSSE_ENVELOPE
    )
    return f"{host}/{repo}@{digest}"


def _secret(pem: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": CONTROLLER_NAMESPACE},
        "data": {SECRET_KEY: base64.b64encode(pem.encode()).decode("ascii")},
    }


@pytest.fixture(scope="module")
def world(cluster: Cluster, registry: RegistryServer, sigstore_kit: SigstoreKit) -> Iterator[World]:
    host = registry.host
    key_a, key_b = generate_key(KeyType.ECDSA_P256), generate_key(KeyType.ECDSA_P256)
    keyed = registry.push_random_image("kube/keyed/app", "v1")
    layer = key_sign_image(sigstore_kit, str(keyed), f"{host}/kube/keyed/app", key_a)
    registry.push_signature_manifest(
        "kube/keyed/app", f"sha256-{keyed.hex}.sig", [(layer.payload, layer.annotations)]
    )
    current = World(
        built_by_actions=_attested(registry, sigstore_kit, "kube/attest/actions", GHA),
        built_elsewhere=_attested(
            registry, sigstore_kit, "kube/attest/elsewhere", "https://example.com/make"
        ),
        keyed=f"{host}/kube/keyed/app@{keyed}",
        key_a=public_key_pem(key_a),
        key_b=public_key_pem(key_b),
    )
    cluster.api.create_namespace(NAMESPACE)
    cluster.api.create_namespace(CONTROLLER_NAMESPACE)
    cluster.api.apply([_secret(current.key_a)])
    provenance = {
        "name": "provenance",
        "predicateType": SLSA,
        "conditions": [{"expression": CONDITION, "message": MESSAGE}],
    }
    cluster.api.apply(
        [
            cluster_policy("attest-provenance", [f"{host}/kube/attest/**"], attestations=[provenance]),
            cluster_policy(
                "attest-keyed",
                [f"{host}/kube/keyed/**"],
                identities=[{"key": {"secretRef": {"name": SECRET, "key": SECRET_KEY}}}],
            ),
        ]
    )
    for name in ("attest-provenance", "attest-keyed"):
        assert wait_observed(cluster.api, "clusterimagepolicies", name) == "True", name
    yield current
    cluster.kubectl("delete", "clusterimagepolicy", "attest-provenance", "attest-keyed", "--ignore-not-found")
    cluster.kubectl("delete", "secret", SECRET, "-n", CONTROLLER_NAMESPACE, "--ignore-not-found")


def _run(cluster: Cluster, name: str, image: str, *extra: str) -> Outcome:
    return cluster.kubectl("run", name, f"--image={image}", "-n", NAMESPACE, *extra)


def test_a_required_attestation_with_a_passing_condition_is_admitted(cluster: Cluster, world: World) -> None:
    outcome = _run(cluster, "provenance", world.built_by_actions)
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout.strip() == "pod/provenance created"


def test_a_failing_condition_is_denied_in_kubectls_exact_words(cluster: Cluster, world: World) -> None:
    image = world.built_elsewhere
    outcome = _run(cluster, "elsewhere", image)
    assert outcome.returncode != 0
    assert outcome.stderr == (
        'Error from server (Forbidden): admission webhook "pods.imprimatur.dev" denied the request: '
        f"AttestationConditionFailed: {image}: ClusterImagePolicy attest-provenance: attestation provenance "
        f"({SLSA}): condition {MESSAGE!r} failed: evaluated to false\n"
    )
    assert outcome.denials("pods") == [("AttestationConditionFailed", image)]
    assert cluster.kubectl("get", "pod", "elsewhere", "-n", NAMESPACE).returncode != 0  # not stored


def test_a_key_from_a_secret_admits_until_the_secret_holds_another_key(
    cluster: Cluster, world: World
) -> None:
    admitted = _run(cluster, "keyed", world.keyed)
    assert admitted.returncode == 0, admitted.stderr
    assert admitted.stdout.strip() == "pod/keyed created"

    cluster.api.apply([_secret(world.key_b)])
    changed = time.monotonic()
    deadline = changed + DEFAULT_REFRESH_SECONDS + REFRESH_SLACK_SECONDS
    while True:
        denied = _run(cluster, "keyed-again", world.keyed, "--dry-run=server")
        if denied.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(POLL_SECONDS)
    took = time.monotonic() - changed
    assert denied.returncode != 0, f"still admitted {took:.1f}s after the Secret changed"
    assert denied.denials("pods") == [("KeyMismatch", world.keyed)], denied.stderr
    assert took <= DEFAULT_REFRESH_SECONDS + REFRESH_SLACK_SECONDS
