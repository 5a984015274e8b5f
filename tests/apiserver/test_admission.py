"""What a user sees through kubectl when the real kube-apiserver calls our webhook: pods, workloads,
ephemeral containers and server-side dry runs, with signed and unsigned images."""

from __future__ import annotations

import yaml

from tests.admission.harness import container, workload
from tests.apiserver.conftest import Cluster
from tests.apiserver.harness import CONTROLLER_NAMESPACE, WARN_POLICY


def test_signed_pod_is_created(cluster: Cluster) -> None:
    outcome = cluster.kubectl("run", "signed", f"--image={cluster.images.signed}")
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout.strip() == "pod/signed created"
    assert cluster.kubectl("get", "pod", "signed", "-o", "name").stdout.strip() == "pod/signed"


def test_unsigned_pod_is_denied(cluster: Cluster) -> None:
    outcome = cluster.kubectl("run", "unsigned", f"--image={cluster.images.unsigned}")
    assert outcome.returncode != 0
    assert outcome.stderr.startswith("Error from server (Forbidden): ")
    assert outcome.denials("pods") == [("SignatureNotFound", cluster.images.unsigned)]
    assert cluster.kubectl("get", "pod", "unsigned").returncode != 0  # not stored


def test_deployment_with_unsigned_sidecar_is_denied(cluster: Cluster) -> None:
    images = cluster.images
    deployment = workload("Deployment", "web", [images.signed, images.unsigned])
    outcome = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(deployment))
    assert outcome.returncode != 0
    assert outcome.denials("workloads") == [("SignatureNotFound", images.unsigned)]
    assert cluster.kubectl("get", "deployment", "web").returncode != 0

    signed_only = workload("Deployment", "web", [images.signed, images.signed])
    signed_only["spec"]["template"]["spec"]["containers"][1] = container("sidecar", images.signed)  # type: ignore[index]
    outcome = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(signed_only))
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout.strip() == "deployment.apps/web created"


def test_kubectl_debug_with_an_unsigned_image_is_denied(cluster: Cluster) -> None:
    images = cluster.images
    assert cluster.kubectl("run", "target", f"--image={images.signed}").returncode == 0
    outcome = cluster.kubectl("debug", "target", f"--image={images.unsigned}", "--container=dbg")
    assert outcome.returncode != 0
    assert outcome.denials("pods") == [("SignatureNotFound", images.unsigned)]

    allowed = cluster.kubectl("debug", "target", f"--image={images.signed}", "--container=dbg-ok")
    assert allowed.returncode == 0, allowed.stderr
    names = cluster.kubectl("get", "pod", "target", "-o", "jsonpath={.spec.ephemeralContainers[*].name}")
    assert names.stdout.split() == ["dbg-ok"]


def test_server_side_dry_run(cluster: Cluster) -> None:
    images = cluster.images
    denied = cluster.kubectl("run", "dry-unsigned", f"--image={images.unsigned}", "--dry-run=server")
    assert denied.returncode != 0
    assert denied.denials("pods") == [("SignatureNotFound", images.unsigned)]

    allowed = cluster.kubectl("run", "dry-signed", f"--image={images.signed}", "--dry-run=server")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.strip() == "pod/dry-signed created (server dry run)"
    assert cluster.kubectl("get", "pod", "dry-signed").returncode != 0  # a dry run stores nothing


def test_changing_a_pod_image_in_place_is_reviewed(cluster: Cluster) -> None:
    images = cluster.images
    assert cluster.kubectl("run", "mutable", f"--image={images.signed}").returncode == 0
    outcome = cluster.kubectl("set", "image", "pod/mutable", f"mutable={images.unsigned}")
    assert outcome.denials("pods") == [("SignatureNotFound", images.unsigned)]
    image = cluster.kubectl("get", "pod", "mutable", "-o", "jsonpath={.spec.containers[0].image}")
    assert image.stdout == images.signed


def test_excluded_namespaces_are_not_sent_to_the_webhook(cluster: Cluster) -> None:
    images = cluster.images
    for namespace, labels in (
        (CONTROLLER_NAMESPACE, None),  # the controller must be able to start its own pods
        ("opted-out", {"imprimatur.dev/exclude": "true"}),
    ):
        cluster.api.create_namespace(namespace, labels)
        outcome = cluster.kubectl("run", "anything", "-n", namespace, f"--image={images.unsigned}")
        assert outcome.returncode == 0, outcome.stderr
    # and a namespace without the label is reviewed
    cluster.api.create_namespace("opted-in", {"imprimatur.dev/exclude": "false"})
    outcome = cluster.kubectl("run", "anything", "-n", "opted-in", f"--image={images.unsigned}")
    assert outcome.denials("pods") == [("SignatureNotFound", images.unsigned)]


def test_signed_pod_by_tag_is_created_with_a_warning_about_the_tag(cluster: Cluster) -> None:
    images = cluster.images
    namespace = cluster.api.create_namespace("by-tag")
    outcome = cluster.kubectl("run", "tagged", "-n", namespace, f"--image={images.signed_tag}")
    assert outcome.stdout == "pod/tagged created\n", outcome.stderr
    digest = images.signed.split("@", 1)[1]
    tag_warning = f"Warning: {images.signed_tag}: verified at the digest its tag points to now ({digest}); the tag can move\n"
    assert outcome.stderr in ("", tag_warning)  # no warning once the tag is pinned (issue 9)


def test_wrong_identity_and_no_matching_policy_are_denied(cluster: Cluster) -> None:
    images = cluster.images
    wrong = cluster.kubectl("run", "wrong", f"--image={images.wrong_identity}")
    assert wrong.returncode == 1
    assert wrong.stderr.startswith(
        'Error from server (Forbidden): admission webhook "pods.imprimatur.dev" denied the request: '
        f"IdentityMismatch: {images.wrong_identity}: "
    ), wrong.stderr
    assert wrong.denials("pods") == [("IdentityMismatch", images.wrong_identity)]

    ungoverned = cluster.kubectl("run", "ungoverned", f"--image={images.ungoverned_unsigned}")
    assert ungoverned.returncode == 1
    assert ungoverned.denials("pods") == [("NoMatchingPolicy", images.ungoverned_unsigned)]
    for name in ("wrong", "ungoverned"):
        assert cluster.kubectl("get", "pod", name).returncode != 0


def test_warn_mode_admits_with_kubectl_warnings(cluster: Cluster) -> None:
    images = cluster.images
    namespace = cluster.api.create_namespace("warned")
    outcome = cluster.kubectl("run", "warned", "-n", namespace, f"--image={images.warn_unsigned}")
    assert outcome.returncode == 0
    assert outcome.stdout == "pod/warned created\n"
    assert outcome.stderr == (
        f"Warning: ClusterImagePolicy {WARN_POLICY} (warn mode): "
        f"SignatureNotFound: {images.warn_unsigned}: no signatures found\n"
    )
