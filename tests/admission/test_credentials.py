"""Pull credentials: the order pod > ServiceAccount > controller-wide, skipping, and the bounded cache."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from controller.admission.credentials import CredentialResolver, keychain_from_secret
from controller.admission.kube import KubernetesReader
from controller.admission.options import ObjectRef
from controller.registry import Keychain
from tests.admission.harness import pod, workload
from tests.admission.kube import Cluster, declare_resources, docker_config_secret

HOST = "registry.example:5000"


@pytest.fixture
async def cluster(kmock: Any) -> AsyncIterator[Cluster]:
    declare_resources(kmock)
    async with aiohttp.ClientSession() as session:
        yield Cluster(kmock, session)


def _user(keychain: Keychain | None, host: str = HOST) -> str | None:
    assert keychain is not None
    credential = keychain.lookup(host)
    return credential.username if credential is not None else None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_pod_secrets_come_before_the_service_account_and_the_controller(cluster: Cluster) -> None:
    await cluster.create(docker_config_secret("pod-cred", "ns", HOST, "from-pod", "p"))
    await cluster.create(docker_config_secret("sa-cred", "ns", HOST, "from-sa", "p"))
    await cluster.create(docker_config_secret("sa-other", "ns", "other.example", "sa-other", "p"))
    await cluster.create(docker_config_secret("global", "imprimatur", HOST, "from-secret", "p"))
    await cluster.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "ci", "namespace": "ns"},
            "imagePullSecrets": [{"name": "sa-cred"}, {"name": "sa-other"}],
        }
    )
    file_keychain = Keychain.from_docker_config(
        json.dumps({"auths": {"*.example": {"username": "from-file", "password": "p"}}})
    )
    resolver = CredentialResolver(
        KubernetesReader.for_url(cluster.url),
        controller_keychain=file_keychain,
        controller_secret=ObjectRef("imprimatur", "global"),
    )
    both = await resolver.keychain_for(
        pod("p", ["x"], namespace="ns", pull_secrets=["pod-cred"], service_account="ci"), "ns"
    )
    assert _user(both) == "from-pod"
    assert _user(both, "other.example") == "sa-other"
    account = await resolver.keychain_for(
        workload("Deployment", "d", ["x"], namespace="ns", service_account="ci"), "ns"
    )
    assert _user(account) == "from-sa"
    default_account = await resolver.keychain_for(pod("p", ["x"], namespace="ns"), "ns")
    assert _user(default_account) == "from-secret"
    assert _user(default_account, "elsewhere.example") == "from-file"


async def test_missing_and_foreign_secrets_are_skipped(cluster: Cluster) -> None:
    await cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": "opaque", "namespace": "ns"},
            "data": {"password": "eA=="},
        }
    )
    await cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "corrupt", "namespace": "ns"},
            "data": {".dockerconfigjson": base64.b64encode(b"{nope").decode()},
        }
    )
    resolver = CredentialResolver(KubernetesReader.for_url(cluster.url))
    keychain = await resolver.keychain_for(
        pod("p", ["x"], namespace="ns", pull_secrets=["absent", "opaque", "corrupt"]), "ns"
    )
    assert keychain is None


async def test_reads_are_cached_for_the_ttl(cluster: Cluster) -> None:
    await cluster.create(docker_config_secret("cred", "ns", HOST, "first", "p"))
    clock = Clock()
    resolver = CredentialResolver(KubernetesReader.for_url(cluster.url), ttl_seconds=30, clock=clock)
    obj = pod("p", ["x"], namespace="ns", pull_secrets=["cred"])
    assert _user(await resolver.keychain_for(obj, "ns")) == "first"
    assert resolver.reads == 2  # the default ServiceAccount (absent) and the secret
    await cluster.patch("Secret", "cred", docker_config_secret("cred", "ns", HOST, "second", "p"), "ns")
    clock.now += 29
    assert _user(await resolver.keychain_for(obj, "ns")) == "first"
    assert resolver.reads == 2
    clock.now += 2
    assert _user(await resolver.keychain_for(obj, "ns")) == "second"
    assert resolver.reads == 4


def test_legacy_dockercfg_secret() -> None:
    auth = base64.b64encode(b"old:timer").decode()
    legacy = json.dumps({HOST: {"auth": auth}}).encode()
    secret = {"type": "kubernetes.io/dockercfg", "data": {".dockercfg": base64.b64encode(legacy).decode()}}
    assert _user(keychain_from_secret(secret)) == "old"
    assert keychain_from_secret({"data": {"token": "eA=="}}) is None
    assert keychain_from_secret({"data": {".dockerconfigjson": "not base64!"}}) is None
