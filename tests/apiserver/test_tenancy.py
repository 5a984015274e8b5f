"""Issue 10, finding 1, through the real API server: a namespaced ImagePolicy can only add
requirements; it never admits an image that the cluster level denies (here: no ClusterImagePolicy
covers it, so the default deny applies)."""

from __future__ import annotations

from tests.apiserver.conftest import Cluster
from tests.apiserver.harness import namespaced_policy, wait_observed


def test_a_namespaced_policy_trusting_anyone_does_not_open_ungoverned_images(cluster: Cluster) -> None:
    api, images = cluster.api, cluster.images
    # The precondition: no ClusterImagePolicy covers the image, so it is denied by default.
    before = cluster.kubectl("run", "before", f"--image={images.anyone_signed}", "--dry-run=server")
    assert before.denials("pods") == [("NoMatchingPolicy", images.anyone_signed)]

    namespace = api.create_namespace("team-a")
    api.apply([namespaced_policy("anyone", namespace)])
    assert wait_observed(api, "imagepolicies", "anyone", namespace) == "True"  # the controller has it

    outcome = cluster.kubectl("run", "attack", "-n", namespace, f"--image={images.anyone_signed}")
    assert outcome.returncode != 0, f"admitted: {outcome.stdout}"
    assert outcome.denials("pods") == [("NoMatchingPolicy", images.anyone_signed)]
    assert cluster.kubectl("get", "pod", "attack", "-n", namespace).returncode != 0


def test_a_warn_mode_namespaced_policy_does_not_open_ungoverned_images(cluster: Cluster) -> None:
    api, images = cluster.api, cluster.images
    namespace = api.create_namespace("team-b")
    api.apply([namespaced_policy("warn-anything", namespace, mode="warn")])
    assert wait_observed(api, "imagepolicies", "warn-anything", namespace) == "True"

    outcome = cluster.kubectl("run", "attack", "-n", namespace, f"--image={images.ungoverned_unsigned}")
    assert outcome.returncode != 0, f"admitted: {outcome.stdout} {outcome.stderr}"
    assert outcome.denials("pods") == [("NoMatchingPolicy", images.ungoverned_unsigned)]
    assert cluster.kubectl("get", "pod", "attack", "-n", namespace).returncode != 0
