"""Workloads through kubectl and the real API server: each kind refused when written with an image that
does not verify, and a signed Deployment stored exactly as written (its tag is not rewritten, so the
spec in Git and in the cluster stay the same)."""

from __future__ import annotations

import pytest
import yaml

from tests.admission.harness import workload
from tests.apiserver.conftest import Cluster

KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


@pytest.mark.parametrize("kind", KINDS)
def test_a_workload_with_an_unsigned_image_is_denied_at_creation(cluster: Cluster, kind: str) -> None:
    images = cluster.images
    name = f"unsigned-{kind.lower()}"
    spec = {"restartPolicy": "Never"} if kind in ("Job", "CronJob") else {}
    manifest = workload(kind, name, [images.signed, images.unsigned])
    template = manifest["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else manifest["spec"]  # type: ignore[index]
    template["template"]["spec"].update(spec)
    outcome = cluster.kubectl("create", "-f", "-", stdin=yaml.safe_dump(manifest))
    assert outcome.returncode == 1
    assert outcome.stdout == ""
    assert outcome.stderr == (
        'Error from server (Forbidden): error when creating "STDIN": admission webhook '
        '"workloads.imprimatur.dev" denied the request: '
        f"SignatureNotFound: {images.unsigned}: no signatures found\n"
    )
    assert cluster.kubectl("get", kind.lower(), name).returncode != 0  # not stored


def test_a_signed_deployment_is_stored_as_written(cluster: Cluster) -> None:
    images = cluster.images
    namespace = cluster.api.create_namespace("deploy-as-written")
    manifest = workload("Deployment", "tagged", [images.signed_tag], namespace=namespace)
    created = cluster.kubectl("create", "-f", "-", stdin=yaml.safe_dump(manifest))
    assert created.stdout == "deployment.apps/tagged created\n", created.stderr

    stored = cluster.kubectl("get", "deployment", "tagged", "-n", namespace, "-o", "yaml")
    assert stored.returncode == 0, stored.stderr
    document = yaml.safe_load(stored.stdout)
    assert document["spec"]["template"]["spec"]["containers"][0]["image"] == images.signed_tag
    assert f"image: {images.signed_tag}\n" in stored.stdout  # the same string, tag and all
    annotations = document["spec"]["template"]["metadata"].get("annotations", {})
    assert not any(key.startswith("imprimatur.dev/") for key in annotations)  # nothing added to the template


def test_kubectl_set_image_on_a_deployment_is_reviewed(cluster: Cluster) -> None:
    images = cluster.images
    namespace = cluster.api.create_namespace("deploy-set-image")
    created = cluster.kubectl("create", "deployment", "web", "-n", namespace, f"--image={images.signed}")
    assert created.stdout == "deployment.apps/web created\n", created.stderr

    outcome = cluster.kubectl("set", "image", "deployment/web", f"good={images.unsigned}", "-n", namespace)
    assert outcome.returncode == 1
    assert outcome.denials("workloads") == [("SignatureNotFound", images.unsigned)]
    image = cluster.kubectl(
        "get",
        "deployment",
        "web",
        "-n",
        namespace,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    )
    assert image.stdout == images.signed
