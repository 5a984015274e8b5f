"""Policies as the user sees them through kubectl: status columns, refusal of an invalid policy at
``kubectl apply``, and an invalid ClusterImagePolicy stored anyway (before the webhook existed) that
must fail closed over the images it covers (issue 10, finding 4)."""

from __future__ import annotations

import pytest
import yaml

from tests.admission.harness import TRUSTED_SUBJECT, cluster_policy
from tests.apiserver.conftest import Cluster
from tests.apiserver.harness import INVALID_POLICY, invalid_policy, namespaced_policy, table, wait_observed
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER


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


def _policy(kind: str, name: str, **spec: object) -> dict[str, object]:
    document = cluster_policy(name, ["example.test/**"], **spec)
    document["kind"] = kind
    if kind == "ImagePolicy":
        document["metadata"] = {"name": name, "namespace": "default"}
    return document


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (
            _policy("ClusterImagePolicy", "bad-mode", mode="audit"),
            'The ClusterImagePolicy "bad-mode" is invalid: \n'
            '* spec.mode: Unsupported value: "audit": supported values: "enforce", "warn"\n'
            "* <nil>: Invalid value: null: some validation rules were not checked because the object was "
            "invalid; correct the existing errors to complete validation",
        ),
        (
            _policy(
                "ClusterImagePolicy",
                "two-issuers",
                identities=[
                    {"issuer": GITHUB_OAUTH_ISSUER, "issuerRegExp": ".*", "subject": TRUSTED_SUBJECT}
                ],
            ),
            'The ClusterImagePolicy "two-issuers" is invalid: spec.identities[0]: Invalid value: '
            "exactly one of issuer or issuerRegExp must be set",
        ),
        (
            _policy("ImagePolicy", "cluster-only-field", namespaces=["other"]),
            'The ImagePolicy "cluster-only-field" is invalid: <nil>: Invalid value: '
            "namespaces and namespaceSelector are for a ClusterImagePolicy; an ImagePolicy applies in its own "
            "namespace",
        ),
    ],
    ids=["schema-enum", "cel-identity", "cel-imagepolicy"],
)
def test_the_api_server_refuses_malformed_policies(
    cluster: Cluster, document: dict[str, object], error: str
) -> None:
    outcome = cluster.kubectl("create", "-f", "-", stdin=yaml.safe_dump(document))
    assert outcome.returncode == 1
    assert outcome.stdout == ""
    assert outcome.stderr == error + "\n"


def test_a_namespaced_policy_adds_a_requirement(cluster: Cluster) -> None:
    api, images = cluster.api, cluster.images
    namespace = api.create_namespace("team-bob")
    bob = {"issuer": GITHUB_OAUTH_ISSUER, "subject": "bob@example.com"}
    policy = namespaced_policy(
        "bob-too", namespace, identity=bob, images=[{"glob": f"{images.host}/kube/apps/**"}]
    )
    api.apply([policy])
    assert wait_observed(api, "imagepolicies", "bob-too", namespace) == "True"
    rows = _rows(cluster, "imagepolicy", "-n", namespace)
    assert rows["bob-too"]["READY"] == "True"
    assert rows["bob-too"]["MODE"] == "enforce"

    # alice's signature satisfies the cluster policy, but not the namespace's added requirement
    outcome = cluster.kubectl("run", "alice-only", "-n", namespace, f"--image={images.signed}")
    assert outcome.returncode == 1
    assert outcome.denials("pods") == [("IdentityMismatch", images.signed)]
    # elsewhere the same image is admitted
    elsewhere = cluster.kubectl("run", "alice-only", "--dry-run=server", f"--image={images.signed}")
    assert elsewhere.stdout == "pod/alice-only created (server dry run)\n", elsewhere.stderr
