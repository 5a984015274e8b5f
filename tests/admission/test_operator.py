"""The controller under kopf against an emulated Kubernetes API (kmock): loading, status, updates,
namespaced policies, pull secrets. Reviews go over HTTPS to the real webhook server; images live in the
real registry, signed by the test Sigstore kit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.admission.harness import (
    TRUST_ROOT_NAME,
    Images,
    RunningController,
    cluster_policy,
    identity,
    image_policy,
    pod,
    review,
    trust_root,
    workload,
)
from tests.admission.kube import (
    Cluster,
    Webhook,
    declare_resources,
    docker_config_secret,
    eventually,
    ready,
    start_operator,
)
from tests.fixtures.registry import RegistryServer, TestPKI
from tests.kit.oci import push_signed_image
from tests.kit.sigstore import SigstoreKit


@pytest.fixture
async def cluster(kmock: Any) -> AsyncIterator[Cluster]:
    declare_resources(kmock)
    async with aiohttp.ClientSession() as session:
        yield Cluster(kmock, session)


@dataclass(frozen=True)
class World:
    """Everything outside the cluster: the signed images, their registry, the PKI, the Sigstore kit."""

    images: Images
    registry: RegistryServer
    pki: TestPKI
    kit: SigstoreKit
    tmp: Path

    async def start(self, cluster: Cluster, registries_yaml: str | None = None) -> RunningController:
        return await start_operator(
            cluster.url,
            cert=self.pki.server_cert,
            key=self.pki.server_key,
            registries_yaml=registries_yaml or self.registry.registries_yaml(),
            tmp=self.tmp,
        )


@pytest.fixture
def world(
    images: Images, registry: RegistryServer, registry_pki: TestPKI, sigstore_kit: SigstoreKit, tmp_path: Path
) -> World:
    return World(images, registry, registry_pki, sigstore_kit, tmp_path)


def first_reason(response: dict[str, Any]) -> str:
    return str(response["status"]["message"]).split(":", 1)[0]


async def test_fails_closed_until_loaded(cluster: Cluster, world: World) -> None:
    images, sigstore_kit = world.images, world.kit
    # The policies exist, but kopf cannot have indexed them: their CRDs are not there yet.
    await cluster.create(trust_root(sigstore_kit.trusted_root_json()))
    await cluster.create(cluster_policy("apps", [f"{images.host}/apps/**"]))
    running = await world.start(cluster)
    try:
        webhook = Webhook(running, cluster.session, world.pki.ca_file)
        request = review(pod("early", [images.signed, images.unsigned]))
        response = await webhook.send("validate-pods", request)
        assert response["allowed"] is False
        assert response["status"]["code"] == 503
        assert response["status"]["message"].split("\n") == [
            f"PoliciesNotLoaded: {images.signed}: policies and trust roots are not loaded yet; retry shortly",
            f"PoliciesNotLoaded: {images.unsigned}: policies and trust roots are not loaded yet; retry shortly",
        ]
        # an UPDATE adding no image is denied too: every review is, until loading completes
        same = workload("Deployment", "d", [images.signed])
        update = await webhook.send("validate-workloads", review(same, operation="UPDATE", old=same))
        assert update["allowed"] is False
        assert first_reason(update) == "PoliciesNotLoaded"
        assert await webhook.health() == 500

        await cluster.install_crds()
        await eventually(lambda: running.controller.state.loaded)
        response = await webhook.send("validate-pods", review(pod("later", [images.signed])))
        assert response["allowed"] is True
        await eventually(lambda: _healthy(webhook))
    finally:
        running.stop()


async def _healthy(webhook: Webhook) -> bool:
    return await webhook.health() == 200


async def test_status_and_updates(cluster: Cluster, world: World) -> None:
    images, sigstore_kit = world.images, world.kit
    await cluster.install_crds()
    await cluster.create(trust_root(sigstore_kit.trusted_root_json()))
    await cluster.create(trust_root(b'{"mediaType": "nonsense"}', name="broken-root"))
    # trusts the wrong signer at first
    await cluster.create(cluster_policy("apps", [f"{images.host}/apps/**"], subject="mallory@example.com"))
    await cluster.create(
        cluster_policy("lax", [f"{images.host}/lax/**"], tlog="optional", trustRoot="broken-root")
    )
    broken = cluster_policy("broken", [f"{images.host}/warn/**"])
    broken["spec"]["identities"] = [{"issuer": "https://x", "subjectRegExp": "(unclosed"}]  # type: ignore[index]
    await cluster.create(broken)

    running = await world.start(cluster)
    try:
        webhook = Webhook(running, cluster.session, world.pki.ca_file)
        await eventually(lambda: running.controller.state.loaded)

        async def condition(kind: str, name: str) -> Any:
            return ready(await cluster.get(kind, name))

        async def has_status(kind: str, name: str, status: str, generation: int = 1) -> bool:
            obj = await cluster.get(kind, name)
            cond = ready(obj)
            return (
                cond is not None
                and cond["status"] == status
                and obj["status"].get("observedGeneration") == generation
            )

        await eventually(lambda: has_status("ClusterImagePolicy", "broken", "False"))
        cond = await condition("ClusterImagePolicy", "broken")
        assert cond["reason"] == "PolicyInvalid"
        assert cond["message"].startswith(
            "PolicyInvalid: ClusterImagePolicy broken: spec.identities[0].subjectRegExp"
        )
        assert cond["observedGeneration"] == 1
        await eventually(lambda: has_status("ClusterImagePolicy", "apps", "True"))
        await eventually(lambda: has_status("TrustRoot", TRUST_ROOT_NAME, "True"))
        assert (await cluster.get("TrustRoot", TRUST_ROOT_NAME))["status"]["source"] == "inline"
        await eventually(lambda: has_status("TrustRoot", "broken-root", "False"))
        assert (await condition("TrustRoot", "broken-root"))["reason"] == "TrustRootInvalid"
        summary = running.controller.state.summary()
        assert (summary.policies_ready, summary.policies_invalid) == (2, 1)
        assert (summary.trust_roots_ready, summary.trust_roots_invalid) == (1, 1)

        # the invalid trust root fails closed for the images its policy governs
        response = await webhook.send("validate-pods", review(pod("lax", [images.no_tlog])))
        assert response["allowed"] is False
        assert first_reason(response) == "TrustRootUnknown"

        # the wrong signer is trusted: denied; fix the policy; admitted
        response = await webhook.send("validate-pods", review(pod("app", [images.signed])))
        assert first_reason(response) == "IdentityMismatch"
        await cluster.patch(
            "ClusterImagePolicy",
            "apps",
            {"metadata": {"generation": 2}, "spec": {"identities": [identity()]}},
        )
        await eventually(lambda: has_status("ClusterImagePolicy", "apps", "True", generation=2))
        await eventually(lambda: _allowed(webhook, pod("app", [images.signed])))

        # a policy deleted is gone: nothing governs the image any more
        await cluster.delete("ClusterImagePolicy", "apps")
        await eventually(lambda: _reason_is(webhook, pod("app", [images.signed]), "NoMatchingPolicy"))
        assert running.controller.metrics.policies.value(state="invalid") == 1
    finally:
        running.stop()


async def _allowed(webhook: Webhook, obj: dict[str, object]) -> bool:
    return bool((await webhook.send("validate-pods", review(obj)))["allowed"])


async def _reason_is(webhook: Webhook, obj: dict[str, object], reason: str) -> bool:
    response = await webhook.send("validate-pods", review(obj))
    return not response["allowed"] and first_reason(response) == reason


async def test_namespaced_policies_only_add_requirements(cluster: Cluster, world: World) -> None:
    images, sigstore_kit = world.images, world.kit
    await cluster.install_crds()
    await cluster.create(trust_root(sigstore_kit.trusted_root_json()))
    await cluster.create(cluster_policy("apps", [f"{images.host}/apps/**"]))  # alice
    await cluster.create(
        image_policy("bob-too", "team-b", [f"{images.host}/apps/**"], subject="bob@example.com")
    )
    await cluster.create(
        image_policy("lenient", "team-c", [f"{images.host}/apps/**"], subject="mallory@example.com")
    )
    running = await world.start(cluster)
    try:
        webhook = Webhook(running, cluster.session, world.pki.ca_file)
        await eventually(lambda: running.controller.state.loaded)
        await eventually(lambda: len(running.controller.state.policy_entries) == 3)

        async def send(namespace: str, image: str) -> dict[str, Any]:
            return await webhook.send("validate-pods", review(pod("p", [image], namespace=namespace)))

        assert (await send("default", images.signed))["allowed"] is True
        team_b = await send("team-b", images.signed)  # alice only: the namespace also wants bob
        assert team_b["allowed"] is False
        assert first_reason(team_b) == "IdentityMismatch"
        assert "ImagePolicy team-b/bob-too" in team_b["status"]["message"]
        assert (await send("team-b", images.other_signed))["allowed"] is True  # alice and bob
        # a namespace cannot relax the cluster policy by trusting someone else
        team_c = await send("team-c", images.wrong_identity)
        assert team_c["allowed"] is False
        assert first_reason(team_c) == "IdentityMismatch"
        assert (await send("team-c", images.signed))["allowed"] is False  # and its own still applies
        # workloads are judged in their namespace too
        deployment = workload("Deployment", "d", [images.signed], namespace="team-b")
        response = await webhook.send("validate-workloads", review(deployment))
        assert first_reason(response) == "IdentityMismatch"
    finally:
        running.stop()


async def test_pull_secrets_from_pod_service_account_and_trust_root_from_configmap(
    cluster: Cluster, world: World, basic_registry: RegistryServer
) -> None:
    sigstore_kit = world.kit
    host = basic_registry.host
    digest = push_signed_image(
        basic_registry,
        "private/app",
        "v1",
        lambda d: [sigstore_kit.sign_image(str(d), f"{host}/private/app")],
    )
    image = f"{host}/private/app@{digest}"
    await cluster.install_crds()
    await cluster.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "sigstore", "namespace": "imprimatur"},
            "data": {"trusted_root.json": sigstore_kit.trusted_root_json().decode()},
        }
    )
    await cluster.create(
        {
            "apiVersion": "imprimatur.dev/v1alpha1",
            "kind": "TrustRoot",
            "metadata": {"name": TRUST_ROOT_NAME},
            "spec": {
                "configMapRef": {"namespace": "imprimatur", "name": "sigstore", "key": "trusted_root.json"}
            },
        }
    )
    await cluster.create(cluster_policy("private", [f"{host}/private/**"]))
    await cluster.create(docker_config_secret("regcred", "team", host, "bob", "builder"))
    await cluster.create(docker_config_secret("wrongcred", "team", host, "bob", "not-the-password"))
    await cluster.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "builder", "namespace": "team"},
            "imagePullSecrets": [{"name": "regcred"}],
        }
    )
    running = await world.start(cluster, basic_registry.registries_yaml())
    try:
        webhook = Webhook(running, cluster.session, world.pki.ca_file)
        await eventually(lambda: running.controller.state.loaded)
        assert running.controller.state.summary().trust_roots_ready == 1

        async def send(obj: dict[str, object]) -> dict[str, Any]:
            return await webhook.send(
                "validate-pods" if obj["kind"] == "Pod" else "validate-workloads", review(obj)
            )

        without = await send(pod("p", [image], namespace="team"))
        assert without["allowed"] is False
        assert first_reason(without) == "RegistryAuthFailed"

        # the pod's own secret comes before its ServiceAccount's: a wrong one there is what is used
        wrong_first = await send(
            pod("p", [image], namespace="team", pull_secrets=["wrongcred"], service_account="builder")
        )
        assert first_reason(wrong_first) == "RegistryAuthFailed"

        via_account = await send(pod("p", [image], namespace="team", service_account="builder"))
        assert via_account["allowed"] is True, via_account

        # verified evidence is cached by digest from here on; the pod's secret path still resolves
        with_pod_secret = await send(pod("p", [image], namespace="team", pull_secrets=["regcred"]))
        assert with_pod_secret["allowed"] is True, with_pod_secret

        deployment = workload("Deployment", "d", [image], namespace="team", pull_secrets=["regcred"])
        assert (await send(deployment))["allowed"] is True

        # a secret that does not exist is skipped, as the kubelet does
        missing = await send(pod("p", [image], namespace="team", pull_secrets=["nope", "regcred"]))
        assert missing["allowed"] is True
    finally:
        running.stop()
