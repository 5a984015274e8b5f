"""Issue 10, attack 4: an invalid ClusterImagePolicy is enforced as a denial, never dropped.

A back-reference (``(a)\\1``) is not RE2: the policy does not compile. The images its globs cover are
denied ``PolicyInvalid`` naming the policy, with the default deny and with the default allow (where a
dropped policy used to let them in); an image it does not cover is decided as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.admission.harness import RunningController, cluster_policy, pod, trust_root
from tests.adversarial.support import Lab, admit, apply_policies, push_signed
from tests.fixtures.registry import RegistryServer, TestPKI
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, SigstoreKit


@dataclass(frozen=True)
class InvalidImages:
    covered: str  # signed by alice, covered by the invalid policy (and by a valid one)
    covered_only: str  # signed by alice, covered by the invalid policy alone
    uncovered: str  # signed by alice, governed by a valid policy only


@pytest.fixture(scope="module")
def invalid_images(registry: RegistryServer, sigstore_kit: SigstoreKit) -> InvalidImages:
    return InvalidImages(
        covered=push_signed(registry, sigstore_kit, "inv/covered/app"),
        covered_only=push_signed(registry, sigstore_kit, "inv/lonely/app"),
        uncovered=push_signed(registry, sigstore_kit, "inv/other/app"),
    )


@pytest.fixture(scope="module")
def servers(lab: Lab) -> Iterator[dict[str, RunningController]]:
    """Controllers (default deny, default allow) whose valid policies load from a file; then the
    invalid policy is applied, as it would be after a ``kubectl apply`` that bypassed validation."""
    host = lab.registry.host
    valid = [
        trust_root(lab.kit.trusted_root_json()),
        cluster_policy("inv-valid", [f"{host}/inv/covered/**", f"{host}/inv/other/**"]),
    ]
    broken = cluster_policy(
        "backref",
        [f"{host}/inv/covered/**", f"{host}/inv/lonely/**"],
        identities=[{"issuer": GITHUB_OAUTH_ISSUER, "subjectRegExp": "(a)\\1"}],
    )
    with lab.serve_by_default("invalid", valid) as started:
        for srv in started.values():
            apply_policies(srv, [*valid, broken])
        yield started


@pytest.mark.parametrize("default", ["deny", "allow"])
def test_invalid_cluster_policy_denies_what_it_covers(
    servers: dict[str, RunningController], invalid_images: InvalidImages, registry_pki: TestPKI, default: str
) -> None:
    srv = servers[default]
    entries = {e.key.name: e for e in srv.controller.state.policy_entries}
    assert not entries["backref"].ready
    for image in (invalid_images.covered, invalid_images.covered_only):
        answer = admit(srv, pod("p", [image], namespace="team-a"), registry_pki.ca_file)
        assert not answer.allowed, (default, image)
        assert answer.reason == "PolicyInvalid", answer.message
        assert answer.message.startswith(f"PolicyInvalid: {image}: ")
        assert "backref" in answer.message  # names the policy


@pytest.mark.parametrize("default", ["deny", "allow"])
def test_image_the_invalid_policy_does_not_cover_is_unaffected(
    servers: dict[str, RunningController], invalid_images: InvalidImages, registry_pki: TestPKI, default: str
) -> None:
    answer = admit(
        servers[default], pod("p", [invalid_images.uncovered], namespace="team-a"), registry_pki.ca_file
    )
    assert answer.allowed, answer.message
