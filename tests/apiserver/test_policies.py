"""Policies as the user sees them through kubectl: status columns, and an invalid ClusterImagePolicy
that must fail closed over the images it covers (issue 10, finding 4)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.admission.harness import cluster_policy
from tests.apiserver.conftest import Cluster
from tests.apiserver.harness import table, wait_observed
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER


def test_get_shows_a_valid_policy_and_trust_root_ready(cluster: Cluster) -> None:
    policies = {row["NAME"]: row for row in table(cluster.kubectl("get", "clusterimagepolicy").stdout)}
    assert policies["apps"]["READY"] == "True"
    assert policies["apps"]["MODE"] == "enforce"
    assert policies["apps"]["IMAGES"] == f"{cluster.images.host}/kube/apps/**"
    roots = {row["NAME"]: row for row in table(cluster.kubectl("get", "trustroot").stdout)}
    assert roots["test-kit"]["READY"] == "True"


@pytest.fixture
def invalid_policy(cluster: Cluster) -> Iterator[str]:
    """A ClusterImagePolicy over ``kube/strict/**`` whose subject regex RE2 (cosign's syntax) rejects:
    a backreference. The API server stores it (no schema rule can check a regex); the controller must
    not."""
    policy = cluster_policy("strict", [f"{cluster.images.host}/kube/strict/**"])
    policy["spec"]["identities"] = [{"issuer": GITHUB_OAUTH_ISSUER, "subjectRegExp": r"(a)\1"}]  # type: ignore[index]
    cluster.api.apply([policy])
    try:
        yield "strict"
    finally:
        cluster.kubectl("delete", "clusterimagepolicy", "strict", "--wait=false")


def test_an_invalid_cluster_policy_denies_the_images_it_covers(cluster: Cluster, invalid_policy: str) -> None:
    images = cluster.images
    wait_observed(cluster.api, "clusterimagepolicies", invalid_policy)
    outcome = cluster.kubectl("run", "strict", f"--image={images.strict_signed}")
    assert outcome.returncode != 0, f"admitted: {outcome.stdout}"
    assert outcome.denials("pods") == [("PolicyInvalid", images.strict_signed)]
    rows = {row["NAME"]: row for row in table(cluster.kubectl("get", "clusterimagepolicy").stdout)}
    assert rows[invalid_policy]["READY"] == "False"
