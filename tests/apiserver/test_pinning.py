"""Pinning on the real kube-apiserver: the chart's MutatingWebhookConfiguration, registered by URL.

A tagged Pod comes back pinned and recorded; a Deployment keeps its tag while a Pod created as its
ReplicaSet would create it is pinned; ``imprimatur resolve`` output applied with kubectl is admitted.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from controller.admission.pinning import ANNOTATION
from controller.cli import main
from tests.admission.harness import TRUST_ROOT_NAME, TRUSTED_SUBJECT, write_policies
from tests.apiserver.conftest import Cluster
from tests.apiserver.harness import baseline_policies
from tests.fixtures.registry import RegistryServer
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, SigstoreKit

RECORD_PATH = "{.metadata.annotations.imprimatur\\.dev/verified-images}"


def _digest(cluster: Cluster) -> str:
    return cluster.images.signed.split("@", 1)[1]


def test_a_tagged_pod_comes_back_pinned_with_the_record(cluster: Cluster) -> None:
    images = cluster.images
    namespace = cluster.api.create_namespace("pin-pod")
    forged = json.dumps({images.signed_tag: {"digest": "sha256:0", "signer": "me", "issuer": "x"}})
    outcome = cluster.kubectl(
        "run",
        "pinned",
        "-n",
        namespace,
        f"--image={images.signed_tag}",
        f"--annotations={ANNOTATION}={forged}",
    )
    assert (outcome.returncode, outcome.stdout, outcome.stderr) == (0, "pod/pinned created\n", "")
    image = cluster.kubectl(
        "get", "pod", "pinned", "-n", namespace, "-o", "jsonpath={.spec.containers[0].image}"
    )
    assert image.stdout == f"{images.signed_tag}@{_digest(cluster)}"
    record = cluster.kubectl("get", "pod", "pinned", "-n", namespace, "-o", f"jsonpath={RECORD_PATH}")
    assert json.loads(record.stdout) == {
        images.signed_tag: {
            "digest": _digest(cluster),
            "signer": TRUSTED_SUBJECT,
            "issuer": GITHUB_OAUTH_ISSUER,
        }
    }
    described = cluster.kubectl("describe", "pod", "pinned", "-n", namespace).stdout
    annotations = described.split("Annotations:", 1)[1].split("\nStatus:", 1)[0]
    assert "imprimatur.dev/verified-images:" in annotations, described[:2000]
    assert f'"signer":"{TRUSTED_SUBJECT}"' in annotations

    # kubectl annotate cannot forge the record afterwards: the stored one is restored
    cluster.kubectl("annotate", "--overwrite", "pod", "pinned", "-n", namespace, f"{ANNOTATION}={forged}")
    again = cluster.kubectl("get", "pod", "pinned", "-n", namespace, "-o", f"jsonpath={RECORD_PATH}")
    assert again.stdout == record.stdout


def test_a_deployment_keeps_its_tag_and_its_pods_are_pinned(cluster: Cluster) -> None:
    images = cluster.images
    namespace = cluster.api.create_namespace("pin-deploy")
    template = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": images.signed_tag}]},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template},
    }
    created = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(deployment))
    assert created.returncode == 0, created.stderr
    stored = cluster.kubectl(
        "get",
        "deployment",
        "web",
        "-n",
        namespace,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    )
    assert stored.stdout == images.signed_tag  # no drift from Git

    # no controller-manager here: create the Pod as the ReplicaSet controller would
    owned = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-5d9c7-abcde",
            "namespace": namespace,
            "labels": {"app": "web"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-5d9c7",
                    "uid": "0f5b4c3e-1111-4a4a-9a9a-123456789abc",
                    "controller": True,
                }
            ],
        },
        "spec": template["spec"],
    }
    assert cluster.kubectl("create", "-f", "-", stdin=yaml.safe_dump(owned)).returncode == 0
    image = cluster.kubectl(
        "get", "pod", "web-5d9c7-abcde", "-n", namespace, "-o", "jsonpath={.spec.containers[0].image}"
    )
    assert image.stdout == f"{images.signed_tag}@{_digest(cluster)}"


def test_resolve_output_applied_with_kubectl_is_admitted(
    cluster: Cluster, registry: RegistryServer, sigstore_kit: SigstoreKit, tmp_path: Path
) -> None:
    images = cluster.images
    namespace = cluster.api.create_namespace("pin-resolve")
    manifest = tmp_path / "app.yaml"
    manifest.write_text(
        f"""\
# committed by the team; resolve pins it
apiVersion: v1
kind: Pod
metadata:
  name: resolved
  namespace: {namespace}
spec:
  containers:
    - name: app
      image: {images.signed_tag}   # the tag, as in Git
"""
    )
    (tmp_path / "root.json").write_bytes(sigstore_kit.trusted_root_json())
    (tmp_path / "registries.yaml").write_text(registry.registries_yaml())
    apps = [
        d
        for d in baseline_policies(images, sigstore_kit)
        if d["kind"] == "ClusterImagePolicy" and d["metadata"] == {"name": "apps"}
    ]
    policy = write_policies(tmp_path / "policy.yaml", apps)
    out = io.StringIO()
    code = main(
        [
            "resolve",
            "--registry-config",
            str(tmp_path / "registries.yaml"),
            "--trusted-root",
            f"{TRUST_ROOT_NAME}={tmp_path / 'root.json'}",
            "--policy",
            str(policy),
            "-f",
            str(manifest),
        ],
        out=out,
    )
    assert code == 0
    assert f"image: {images.signed_tag}@{_digest(cluster)}   # the tag, as in Git" in out.getvalue()
    applied = cluster.kubectl("apply", "-f", "-", stdin=out.getvalue())
    assert (applied.returncode, applied.stdout, applied.stderr) == (0, "pod/resolved created\n", "")
    # re-applying the same file is no change: the webhook leaves a pinned image as it is
    reapplied = cluster.kubectl("apply", "-f", "-", stdin=out.getvalue())
    assert reapplied.stdout == "pod/resolved unchanged\n", reapplied.stderr


pytestmark = pytest.mark.usefixtures("cluster")
