"""Policies as the user sees them through kubectl: status columns, refusal of an invalid policy at
``kubectl apply``, and an invalid ClusterImagePolicy stored anyway (before the webhook existed) that
must fail closed over the images it covers (issue 10, finding 4)."""

from __future__ import annotations

import yaml

from tests.apiserver.conftest import Cluster
from tests.apiserver.harness import INVALID_POLICY, invalid_policy, namespaced_policy, table, wait_observed


def _rows(cluster: Cluster, kind: str, *args: str) -> dict[str, dict[str, str]]:
    outcome = cluster.kubectl("get", kind, *args)
    assert outcome.returncode == 0, outcome.stderr
    return {row["NAME"]: dict(row) for row in table(outcome.stdout)}


def test_get_shows_which_policies_are_ready(cluster: Cluster) -> None:
    for name in ("apps", INVALID_POLICY):
        wait_observed(cluster.api, "clusterimagepolicies", name)
    policies = _rows(cluster, "clusterimagepolicy")
    assert policies["apps"]["READY"] == "True"
    assert policies["apps"]["MODE"] == "enforce"
    assert policies["apps"]["IMAGES"] == f"{cluster.images.host}/kube/apps/**"
    assert policies[INVALID_POLICY]["READY"] == "False"
    assert _rows(cluster, "trustroot")["test-kit"]["READY"] == "True"


def test_a_stored_invalid_cluster_policy_denies_the_images_it_covers(cluster: Cluster) -> None:
    images = cluster.images
    wait_observed(cluster.api, "clusterimagepolicies", INVALID_POLICY)
    outcome = cluster.kubectl("run", "strict", f"--image={images.strict_signed}")
    assert outcome.returncode != 0, f"admitted: {outcome.stdout}"
    assert outcome.denials("pods") == [("PolicyInvalid", images.strict_signed)]
    # a workload too, at the door
    deployment = cluster.kubectl("create", "deployment", "strict", f"--image={images.strict_signed}")
    assert deployment.denials("workloads") == [("PolicyInvalid", images.strict_signed)]


def test_kubectl_apply_refuses_an_invalid_policy(cluster: Cluster) -> None:
    glob = f"{cluster.images.host}/kube/strict/**"
    outcome = cluster.kubectl("create", "-f", "-", stdin=yaml.safe_dump(invalid_policy("strict-again", glob)))
    assert outcome.returncode != 0, f"stored: {outcome.stdout}"
    assert outcome.refusal("policies").startswith("PolicyInvalid: ClusterImagePolicy strict-again: ")
    assert cluster.kubectl("get", "clusterimagepolicy", "strict-again").returncode != 0

    # a tenant's ImagePolicy likewise
    namespace = cluster.api.create_namespace("team-invalid")
    policy = namespaced_policy(
        "bad", namespace, identity={"issuerRegExp": ".*", "subjectRegExp": "(unclosed"}
    )
    outcome = cluster.kubectl("create", "-f", "-", stdin=yaml.safe_dump(policy))
    assert outcome.returncode != 0, f"stored: {outcome.stdout}"
    assert outcome.refusal("policies").startswith(f"PolicyInvalid: ImagePolicy {namespace}/bad: ")
