"""The operator side of tenant safety, against the emulated API (kmock): status that follows trust roots,
TrustRoot references confined to the controller's namespace and re-read when edited, namespace labels
handed to the engine, invalid policies refused at the door and enforced as denials, and no ERROR line
per denial.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.admission.harness import TRUST_ROOT_NAME, cluster_policy, pod, review
from tests.admission.kube import CONTROLLER_NAMESPACE, Cluster, Webhook, eventually, ready
from tests.admission.test_operator import World, cluster, first_reason, world

__all__ = ["cluster", "world"]  # fixtures


async def _condition(cluster: Cluster, kind: str, name: str) -> dict[str, Any] | None:
    found = ready(await cluster.get(kind, name))
    return dict(found) if found is not None else None


async def _is(cluster: Cluster, kind: str, name: str, status: str, reason: str) -> bool:
    cond = await _condition(cluster, kind, name)
    return cond is not None and (cond["status"], cond["reason"]) == (status, reason)


def _ref_root(name: str, namespace: str, configmap: str = "sigstore") -> dict[str, Any]:
    return {
        "apiVersion": "imprimatur.dev/v1alpha1",
        "kind": "TrustRoot",
        "metadata": {"name": name},
        "spec": {"configMapRef": {"namespace": namespace, "name": configmap, "key": "trusted_root.json"}},
    }


def _configmap(namespace: str, data: str, name: str = "sigstore") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"trusted_root.json": data},
    }


async def test_policy_status_follows_its_trust_root(cluster: Cluster, world: World) -> None:
    kit_json = world.kit.trusted_root_json().decode()
    await cluster.install_crds()
    await cluster.create(_configmap(CONTROLLER_NAMESPACE, kit_json))
    await cluster.create(_configmap("team-a", kit_json))
    await cluster.create(_ref_root(TRUST_ROOT_NAME, CONTROLLER_NAMESPACE))
    await cluster.create(_ref_root("elsewhere", "team-a"))
    await cluster.create(cluster_policy("apps", ["ghcr.io/acme/**"]))
    await cluster.create(cluster_policy("orphan", ["ghcr.io/orphan/**"], trustRoot="nonexistent"))
    await cluster.create(cluster_policy("builtin", ["ghcr.io/public/**"], trustRoot="public-good"))
    running = await world.start(cluster)
    try:
        await eventually(lambda: running.controller.state.loaded)
        # a reference into another namespace is refused, and says so
        await eventually(lambda: _is(cluster, "TrustRoot", "elsewhere", "False", "TrustRootInvalid"))
        message = (await _condition(cluster, "TrustRoot", "elsewhere"))["message"]  # type: ignore[index]
        assert "spec.configMapRef.namespace: 'team-a' is not allowed" in message
        assert f"'{CONTROLLER_NAMESPACE}'" in message

        await eventually(lambda: _is(cluster, "TrustRoot", TRUST_ROOT_NAME, "True", "Loaded"))
        await eventually(lambda: _is(cluster, "ClusterImagePolicy", "apps", "True", "Compiled"))
        await eventually(lambda: _is(cluster, "ClusterImagePolicy", "builtin", "True", "Compiled"))
        # a policy naming a trust root that does not exist is not ready
        await eventually(lambda: _is(cluster, "ClusterImagePolicy", "orphan", "False", "TrustRootUnknown"))
        orphan = (await _condition(cluster, "ClusterImagePolicy", "orphan"))["message"]  # type: ignore[index]
        assert orphan.startswith("TrustRootUnknown: ClusterImagePolicy orphan: spec.trustRoot:")

        # the referenced data is edited to garbage: the TrustRoot and the policy naming it turn not ready
        await cluster.patch(
            "ConfigMap",
            "sigstore",
            {"data": {"trusted_root.json": "{not json"}},
            namespace=CONTROLLER_NAMESPACE,
        )
        await eventually(lambda: _is(cluster, "TrustRoot", TRUST_ROOT_NAME, "False", "TrustRootInvalid"))
        await eventually(lambda: _is(cluster, "ClusterImagePolicy", "apps", "False", "TrustRootUnknown"))
        # ... and back
        await cluster.patch(
            "ConfigMap", "sigstore", {"data": {"trusted_root.json": kit_json}}, namespace=CONTROLLER_NAMESPACE
        )
        await eventually(lambda: _is(cluster, "TrustRoot", TRUST_ROOT_NAME, "True", "Loaded"))
        await eventually(lambda: _is(cluster, "ClusterImagePolicy", "apps", "True", "Compiled"))

        # the trust root is deleted: the policy that names it is not ready any more
        await cluster.delete("TrustRoot", TRUST_ROOT_NAME)
        await eventually(lambda: _is(cluster, "ClusterImagePolicy", "apps", "False", "TrustRootUnknown"))
        # the one it was missing appears: ready
        await cluster.create(_ref_root("nonexistent", CONTROLLER_NAMESPACE))
        await eventually(lambda: _is(cluster, "ClusterImagePolicy", "orphan", "True", "Compiled"))
        assert await _is(cluster, "ClusterImagePolicy", "builtin", "True", "Compiled")
    finally:
        running.stop()


async def test_namespace_labels_reach_the_engine(cluster: Cluster, world: World) -> None:
    await cluster.install_crds()

    def namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}

    await cluster.create(namespace("payments", {"team": "payments", "tier": "prod"}))
    await cluster.create(namespace("web", {"team": "web"}))
    running = await world.start(cluster)
    try:
        loader = running.controller.loader
        await eventually(lambda: running.controller.state.loaded)
        assert dict(loader.namespaces.current) == {
            "payments": {"team": "payments", "tier": "prod"},
            "web": {"team": "web"},
        }
        await cluster.patch("Namespace", "web", {"metadata": {"labels": {"team": "web", "tier": "prod"}}})
        await eventually(
            lambda: dict(loader.namespaces.current.get("web", {})) == {"team": "web", "tier": "prod"}
        )
        await cluster.delete("Namespace", "payments")
        await eventually(lambda: "payments" not in loader.namespaces.current)
        # the engine got the same map (labels come only from Namespace objects)
        engine_labels = running.controller.state.engine._labels
        assert {n: dict(v) for n, v in engine_labels.items()} == {"web": {"team": "web", "tier": "prod"}}
    finally:
        running.stop()


def _crd_review(obj: dict[str, Any], plural: str) -> dict[str, Any]:
    base = review(pod("x", ["unused"]))
    request = base["request"]
    assert isinstance(request, dict)
    gvk = {"group": "imprimatur.dev", "version": "v1alpha1", "kind": obj["kind"]}
    gvr = {"group": "imprimatur.dev", "version": "v1alpha1", "resource": plural}
    request.update(
        kind=gvk,
        resource=gvr,
        requestKind=gvk,
        requestResource=gvr,
        name=obj["metadata"]["name"],
        namespace=obj["metadata"].get("namespace"),
        object=obj,
    )
    return base


async def test_invalid_policies_are_refused_at_the_door_and_denied_if_present(
    cluster: Cluster, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    images = world.images
    await cluster.install_crds()
    await cluster.create({**_ref_root(TRUST_ROOT_NAME, CONTROLLER_NAMESPACE)})
    await cluster.create(_configmap(CONTROLLER_NAMESPACE, world.kit.trusted_root_json().decode()))
    # already in the cluster (say, from before the webhook existed): a Go-style \z is not valid here
    broken = cluster_policy("broken", [f"{images.host}/apps/**"])
    broken["spec"]["identities"] = [{"issuer": "https://x", "subjectRegExp": "(unclosed"}]  # type: ignore[index]
    await cluster.create(broken)
    running = await world.start(cluster)
    try:
        webhook = Webhook(running, cluster.session, world.pki.ca_file)
        await eventually(lambda: running.controller.state.loaded)
        assert running.controller.state.summary().policies_invalid == 1

        caplog.set_level(logging.INFO)
        refused = await webhook.send("validate-policies", _crd_review(broken, "clusterimagepolicies"))
        assert refused["allowed"] is False
        assert refused["status"]["code"] == 422
        assert refused["status"]["message"].startswith(
            "PolicyInvalid: ClusterImagePolicy broken: spec.identities[0].subjectRegExp"
        )
        good = cluster_policy("good", [f"{images.host}/apps/**"])
        assert (await webhook.send("validate-policies", _crd_review(good, "clusterimagepolicies")))["allowed"]

        # the invalid policy present in the cluster denies what it covers, naming itself
        denied = await webhook.send("validate-pods", review(pod("p", [images.signed])))
        assert denied["allowed"] is False
        assert first_reason(denied) == "PolicyInvalid"
        assert "ClusterImagePolicy broken" in denied["status"]["message"]

        # denials are decisions, not errors: kopf's "failed permanently" line is gone
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("kopf")]
        assert [r.getMessage() for r in errors if "failed permanently" in r.getMessage()] == []
    finally:
        running.stop()
