"""``spec.pinning`` through the mutating webhook, over real HTTPS, with images in the real registry.

The precedence of :func:`controller.admission.pinning.effective_mode`, end to end: a ClusterImagePolicy's
value replaces the setting (the strictest of several wins), and an ImagePolicy can raise it in its
namespace but never lower it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.admission.mutation import PINNED_REASON, UNCHANGED_REASON
from controller.config import Settings
from tests.admission.harness import (
    TRUSTED_SUBJECT,
    Images,
    RunningController,
    cluster_policy,
    image_policy,
    pod,
    trust_root,
    workload,
    write_policies,
)
from tests.admission.test_pinning import apply_patch
from tests.admission.test_pinning_webhook import _controller_with, mutate
from tests.fixtures.registry import RegistryServer, TestPKI
from tests.kit.sigstore import SigstoreKit


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory, images: Images, sigstore_kit: SigstoreKit) -> Path:
    host = images.host
    docs = [
        trust_root(sigstore_kit.trusted_root_json()),
        # apps/**: the cluster turns pinning off ...
        cluster_policy("apps", [f"{host}/apps/**"], pinning="off"),
        # ... but for apps/bob a second cluster policy asks for pods: the strictest wins
        cluster_policy("bob", [f"{host}/apps/bob"], pinning="pods"),
        # lax/**: no field, the setting decides
        cluster_policy("lax", [f"{host}/lax/**"], tlog="optional"),
        # team-a raises apps/** to pods; team-b tries to lower lax/** to off; team-c asks for workloads
        image_policy("raise", "team-a", [f"{host}/apps/**"], subject=TRUSTED_SUBJECT, pinning="pods"),
        image_policy(
            "lower", "team-b", [f"{host}/lax/**"], subject=TRUSTED_SUBJECT, tlog="optional", pinning="off"
        ),
        image_policy("wl", "team-c", [f"{host}/apps/**"], subject=TRUSTED_SUBJECT, pinning="workloads"),
    ]
    return write_policies(tmp_path_factory.mktemp("pin-policies") / "policies.yaml", docs)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, registry: RegistryServer, registry_pki: TestPKI, policies: Path
) -> Iterator[RunningController]:
    with _controller_with(
        Settings(), tmp_path_factory.mktemp("srv"), registry, registry_pki, policies
    ) as srv:
        yield srv


def _images_after(obj: dict[str, Any], patch: list[dict[str, Any]]) -> list[str]:
    patched = apply_patch(obj, patch)
    spec = patched["spec"]
    if obj["kind"] != "Pod":
        spec = spec["template"]["spec"]
    return [c["image"] for c in spec["containers"]]


def _tag(reference: str) -> str:
    """``host/repo@sha256:..`` -> ``host/repo:v1`` (the test images are all pushed as v1)."""
    return reference.split("@", 1)[0] + ":v1"


def _pinned(reference: str) -> str:
    return f"{_tag(reference)}@{reference.split('@', 1)[1]}"


def test_a_cluster_policy_turns_pinning_off_for_its_images(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    original = pod("off", [images.signed_tag])
    response, patch = mutate(server, original, registry_pki.ca_file)
    assert response["allowed"] is True and patch == []


def test_the_strictest_of_several_cluster_policies_wins(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    original = pod("bob", [_tag(images.other_signed), images.signed_tag])
    response, patch = mutate(server, original, registry_pki.ca_file)
    assert response["allowed"] is True
    # apps/bob: "off" (apps) and "pods" (bob) -> pinned; apps/good: only "off" -> as written
    assert _images_after(original, patch) == [_pinned(images.other_signed), images.signed_tag]


def test_a_namespace_policy_raises_the_cluster_off_to_pods_in_its_namespace(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    original = pod("raised", [images.signed_tag], namespace="team-a")
    response, patch = mutate(server, original, registry_pki.ca_file)
    assert response["allowed"] is True
    assert _images_after(original, patch) == [_pinned(images.signed)]


def test_a_namespace_policy_cannot_turn_off_the_pinning_the_cluster_asks_for(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    tagged = _tag(images.no_tlog)
    for namespace in ("team-b", "default"):  # the ImagePolicy's namespace, and one without it
        original = pod("lowered", [tagged], namespace=namespace)
        response, patch = mutate(server, original, registry_pki.ca_file)
        assert response["allowed"] is True
        assert _images_after(original, patch) == [_pinned(images.no_tlog)], namespace


def test_a_namespace_policy_asks_for_workload_templates_in_its_namespace_only(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    mine = workload("Deployment", "web", [images.signed_tag], namespace="team-c")
    response, patch = mutate(server, mine, registry_pki.ca_file)
    assert response["allowed"] is True
    assert _images_after(mine, patch) == [_pinned(images.signed)]

    for namespace in ("team-a", "default"):  # pods only, or off: the template keeps its tag
        other = workload("Deployment", "web", [images.signed_tag], namespace=namespace)
        response, patch = mutate(server, other, registry_pki.ca_file)
        assert response["allowed"] is True and patch == [], namespace


def test_the_setting_off_is_replaced_by_a_cluster_policy_that_asks(
    *,
    images: Images,
    registry_pki: TestPKI,
    registry: RegistryServer,
    policies: Path,
    tmp_path: Path,
) -> None:
    with _controller_with(Settings(pinning="off"), tmp_path, registry, registry_pki, policies) as off:
        # apps/bob: a ClusterImagePolicy says pods, whatever the setting
        original = pod("bob", [_tag(images.other_signed)])
        response, patch = mutate(off, original, registry_pki.ca_file)
        assert response["allowed"] is True
        assert _images_after(original, patch) == [_pinned(images.other_signed)]
        # lax/**: no policy field: the setting (off) decides, and team-b's "off" changes nothing
        for namespace in ("default", "team-b"):
            lax = pod("lax", [_tag(images.no_tlog)], namespace=namespace)
            response, patch = mutate(off, lax, registry_pki.ca_file)
            assert response["allowed"] is True and patch == [], namespace
        assert (
            off.controller.metrics.decisions.value(kind="Pod", allowed="true", reason=UNCHANGED_REASON) >= 2
        )
        assert off.controller.metrics.decisions.value(kind="Pod", allowed="true", reason=PINNED_REASON) == 1
