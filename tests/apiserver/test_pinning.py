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
from tests.admission.harness import TRUST_ROOT_NAME, TRUSTED_SUBJECT, cluster_policy, write_policies
from tests.apiserver.conftest import Cluster
from tests.apiserver.harness import baseline_policies, namespaced_policy, wait_observed
from tests.fixtures.registry import RegistryServer
from tests.kit.oci import push_signed_image
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, Identity, SigstoreKit

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


# --- spec.pinning, and what the API server does not send to the mutating webhook


def _pinning_decisions(cluster: Cluster, reason: str) -> float:
    return cluster.controller.controller.metrics.decisions.value(kind="Pod", allowed="true", reason=reason)


def test_a_cluster_policy_with_pinning_off_leaves_a_tagged_pod_as_written(
    cluster: Cluster, registry: RegistryServer, sigstore_kit: SigstoreKit
) -> None:
    host, repo = cluster.images.host, "kube/pin-off/app"
    digest = push_signed_image(
        registry,
        repo,
        "v1",
        lambda d: [
            sigstore_kit.sign_image(str(d), f"{host}/{repo}", identity=Identity.email(TRUSTED_SUBJECT))
        ],
    )
    policy = cluster_policy("pin-off", [f"{host}/kube/pin-off/**"], pinning="off")
    # YAML 1.1, as kubectl reads it: a bare off is the boolean false, which the CRD schema refuses
    bare = yaml.safe_dump(policy).replace("pinning: 'off'", "pinning: off")
    assert "pinning: off\n" in bare
    refused = cluster.kubectl("create", "-f", "-", stdin=bare)
    assert refused.returncode != 0 and "spec.pinning" in refused.stderr, refused.stderr
    cluster.api.apply([policy])
    assert wait_observed(cluster.api, "clusterimagepolicies", "pin-off") == "True"

    namespace = cluster.api.create_namespace("pin-off")
    tagged = f"{host}/{repo}:v1"
    outcome = cluster.kubectl("run", "as-written", "-n", namespace, f"--image={tagged}")
    # admitted by its tag, with the warning the tag window gets when nothing pins it
    warning = (
        f"Warning: {tagged}: verified at the digest its tag points to now ({digest}); the tag can move\n"
    )
    assert (outcome.returncode, outcome.stdout, outcome.stderr) == (0, "pod/as-written created\n", warning)
    image = cluster.kubectl(
        "get", "pod", "as-written", "-n", namespace, "-o", "jsonpath={.spec.containers[0].image}"
    )
    assert image.stdout == tagged
    record = cluster.kubectl("get", "pod", "as-written", "-n", namespace, "-o", f"jsonpath={RECORD_PATH}")
    assert record.stdout == ""  # nothing pinned, nothing recorded


def test_a_namespace_policy_with_pinning_off_cannot_turn_off_the_clusters_pinning(cluster: Cluster) -> None:
    images = cluster.images
    namespace = cluster.api.create_namespace("pin-tenant")
    tenant = namespaced_policy("no-pins", namespace, pinning="off")
    cluster.api.apply([tenant])
    assert wait_observed(cluster.api, "imagepolicies", "no-pins", namespace) == "True"
    outcome = cluster.kubectl("run", "still-pinned", "-n", namespace, f"--image={images.signed_tag}")
    assert (outcome.returncode, outcome.stdout, outcome.stderr) == (0, "pod/still-pinned created\n", "")
    image = cluster.kubectl(
        "get", "pod", "still-pinned", "-n", namespace, "-o", "jsonpath={.spec.containers[0].image}"
    )
    assert image.stdout == f"{images.signed_tag}@{_digest(cluster)}"


def test_a_pod_written_by_digest_is_not_sent_to_the_mutating_webhook(cluster: Cluster) -> None:
    images = cluster.images
    namespace = cluster.api.create_namespace("pin-skip")
    untouched, verified = _pinning_decisions(cluster, "NothingToPin"), _pinning_decisions(cluster, "Verified")
    outcome = cluster.kubectl("run", "by-digest", "-n", namespace, f"--image={images.signed}")
    assert (outcome.returncode, outcome.stdout, outcome.stderr) == (0, "pod/by-digest created\n", "")
    # the validating webhook reviewed it; the mutating one was never called (matchConditions)
    assert _pinning_decisions(cluster, "Verified") == verified + 1
    assert _pinning_decisions(cluster, "NothingToPin") == untouched
    record = cluster.kubectl("get", "pod", "by-digest", "-n", namespace, "-o", f"jsonpath={RECORD_PATH}")
    assert record.stdout == ""

    # a Pod by digest that names the record is sent, and gets the true one
    forged = json.dumps({images.signed: {"digest": "sha256:0", "signer": "me", "issuer": "x"}})
    named = cluster.kubectl(
        "run", "named", "-n", namespace, f"--image={images.signed}", f"--annotations={ANNOTATION}={forged}"
    )
    assert named.returncode == 0, named.stderr
    assert _pinning_decisions(cluster, "NothingToPin") == untouched + 1
    record = cluster.kubectl("get", "pod", "named", "-n", namespace, "-o", f"jsonpath={RECORD_PATH}")
    assert json.loads(record.stdout)[images.signed]["signer"] == TRUSTED_SUBJECT

    # a Deployment by digest is not sent to the workloads mutating webhook either
    before = cluster.controller.controller.metrics.decisions.value(
        kind="Deployment", allowed="true", reason="PinningOff"
    )
    created = cluster.kubectl(
        "create", "deployment", "by-digest", "-n", namespace, f"--image={images.signed}"
    )
    assert created.returncode == 0, created.stderr
    tagged = cluster.kubectl(
        "create", "deployment", "by-tag", "-n", namespace, f"--image={images.signed_tag}"
    )
    assert tagged.returncode == 0, tagged.stderr
    after = cluster.controller.controller.metrics.decisions.value(
        kind="Deployment", allowed="true", reason="PinningOff"
    )
    assert after == before + 1  # by-tag only


pytestmark = pytest.mark.usefixtures("cluster")
