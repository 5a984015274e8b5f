"""A Kubernetes API for the operator tests: kmock's emulator, set up like a cluster with our CRDs.

kopf talks to it over HTTP exactly as to kube-apiserver (discovery, list, watch, merge-patch of
``/status``); the controller's own reads (Secrets, ServiceAccounts, ConfigMaps) go through the official
client. Changes are made through the API (POST/PATCH/DELETE) so that watchers see the events.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import kmock._internal.parsing as kmock_parsing
import kopf
import yaml

from controller.admission.kube import KubernetesReader
from controller.admission.operator import Loader
from controller.admission.server import Controller, serve_cluster
from tests.admission.harness import RunningController, new_controller, start_in_thread_async
from tests.fixtures.registry import free_port

CRD_DIR = Path(__file__).resolve().parents[2] / "charts" / "imprimatur" / "crds"

# (api path prefix, plural, kind, namespaced, subresources)
RESOURCES: list[tuple[str, str, str, bool, set[str]]] = [
    ("imprimatur.dev/v1alpha1", "clusterimagepolicies", "ClusterImagePolicy", False, {"status"}),
    ("imprimatur.dev/v1alpha1", "imagepolicies", "ImagePolicy", True, {"status"}),
    ("imprimatur.dev/v1alpha1", "trustroots", "TrustRoot", False, {"status"}),
    ("apiextensions.k8s.io/v1", "customresourcedefinitions", "CustomResourceDefinition", False, set()),
    ("v1", "namespaces", "Namespace", False, set()),
    ("v1", "pods", "Pod", True, {"ephemeralcontainers", "status"}),
    ("v1", "secrets", "Secret", True, set()),
    ("v1", "serviceaccounts", "ServiceAccount", True, set()),
    ("v1", "configmaps", "ConfigMap", True, set()),
    ("v1", "replicationcontrollers", "ReplicationController", True, set()),
    ("apps/v1", "deployments", "Deployment", True, set()),
    ("apps/v1", "replicasets", "ReplicaSet", True, set()),
    ("apps/v1", "statefulsets", "StatefulSet", True, set()),
    ("apps/v1", "daemonsets", "DaemonSet", True, set()),
    ("batch/v1", "jobs", "Job", True, set()),
    ("batch/v1", "cronjobs", "CronJob", True, set()),
]
_PLURALS = {kind: (prefix, plural, namespaced) for prefix, plural, kind, namespaced, _ in RESOURCES}
_uids = itertools.count(1)


def crd_documents() -> list[dict[str, Any]]:
    """The chart's CustomResourceDefinitions: the real objects a cluster would hold."""
    return [yaml.safe_load(path.read_text()) for path in sorted(CRD_DIR.glob("*.yaml"))]


def _parse_namespace_paths(original: Callable[[str], Any]) -> Callable[[str], Any]:
    """kmock reads ``/api/v1/namespaces`` and ``/api/v1/namespaces/NAME`` as a namespace prefix with no
    resource (its parser has no notion of the cluster-scoped Namespace resource); read them as the
    Namespace list and object, as kube-apiserver does. Every other path is parsed by kmock."""

    def parse_path(path: str) -> Any:
        parts = path.split("?", 1)[0].strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
            return kmock_parsing.ParsedPath(
                "", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None, None
            )
        return original(path)

    parse_path.patched = True  # type: ignore[attr-defined]
    return parse_path


def declare_resources(server: Any) -> None:
    """API discovery as kube-apiserver serves it, for the resources the controller touches."""
    if not getattr(kmock_parsing.parse_path, "patched", False):
        kmock_parsing.parse_path = _parse_namespace_paths(kmock_parsing.parse_path)
    for prefix, plural, kind, namespaced, subresources in RESOURCES:
        server.resources[f"{prefix}/{plural}"] = kmock.ResourceInfo(
            kind=kind,
            namespaced=namespaced,
            subresources=subresources,
            verbs={"get", "list", "watch", "create", "patch", "delete"},
        )


def object_path(
    kind: str, name: str | None = None, namespace: str | None = None, subresource: str = ""
) -> str:
    prefix, plural, namespaced = _PLURALS[kind]
    root = f"/api/{prefix}" if prefix == "v1" else f"/apis/{prefix}"
    path = f"{root}/namespaces/{namespace}/{plural}" if namespaced else f"{root}/{plural}"
    if name is not None:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


class Cluster:
    """Writes to and reads from the emulated API, as kubectl would."""

    def __init__(self, server: Any, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.url = str(server.url).rstrip("/")

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        body = json.loads(json.dumps(obj))
        meta = body.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{next(_uids)}")
        meta.setdefault("generation", 1)
        meta.setdefault("resourceVersion", str(next(_uids)))
        path = object_path(body["kind"], namespace=meta.get("namespace"))
        async with self.session.post(self.url + path, json=body) as response:
            assert response.status < 300, await response.text()
            created: dict[str, Any] = await response.json()
            return created

    async def patch(
        self, kind: str, name: str, patch: Mapping[str, Any], namespace: str | None = None
    ) -> None:
        path = object_path(kind, name, namespace)
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self.session.patch(self.url + path, data=json.dumps(patch), headers=headers) as response:
            assert response.status < 300, await response.text()

    async def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        async with self.session.delete(self.url + object_path(kind, name, namespace)) as response:
            assert response.status < 300, await response.text()

    async def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        async with self.session.get(self.url + object_path(kind, name, namespace)) as response:
            assert response.status == 200, await response.text()
            found: dict[str, Any] = await response.json()
            return found

    async def install_crds(self) -> None:
        for crd in crd_documents():
            await self.create(crd)


def docker_config_secret(name: str, namespace: str, host: str, user: str, password: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = json.dumps({"auths": {host: {"auth": auth}}}).encode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": name, "namespace": namespace},
        "data": {".dockerconfigjson": base64.b64encode(config).decode()},
    }


CONTROLLER_NAMESPACE = "imprimatur"


async def start_operator(
    url: str,
    *,
    cert: str,
    key: str,
    registries_yaml: str,
    tmp: Path,
    namespace: str | None = CONTROLLER_NAMESPACE,
    refresh_seconds: float = 0.2,
    **overrides: Any,
) -> RunningController:
    """The controller under kopf, logged in to the emulated API, in its own thread.

    Its own namespace is ``namespace`` (where TrustRoot references may point), and it re-reads
    referenced ConfigMaps and Secrets every ``refresh_seconds``.
    """
    controller: Controller = new_controller(
        cert=cert,
        key=key,
        registries_yaml=registries_yaml,
        tmp=tmp,
        reader=KubernetesReader.for_url(url),
        liveness_endpoint=f"http://127.0.0.1:{free_port()}/healthz",
        **overrides,
    )
    controller.loader = Loader(
        controller.state, controller.loader.reader, namespace=namespace, refresh_seconds=refresh_seconds
    )

    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, insecure=True)

    stop_flag = threading.Event()

    async def main(c: Controller) -> None:
        await serve_cluster(c, login=login, stop_flag=stop_flag)

    return await start_in_thread_async(controller, main, stop_flag=stop_flag)


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 15.0
) -> None:
    """Wait (without blocking the emulator's event loop) until ``check()`` is true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        await asyncio.sleep(0.05)


class Webhook:
    """An HTTPS client of the webhook, as kube-apiserver (async, so the emulator keeps serving)."""

    def __init__(self, running: RunningController, session: aiohttp.ClientSession, ca_file: str) -> None:
        self.running = running
        self.session = session
        self.ssl = ssl.create_default_context(cafile=ca_file)

    async def send(self, path: str, review: Mapping[str, Any]) -> dict[str, Any]:
        async with self.session.post(f"{self.running.url}/{path}", json=review, ssl=self.ssl) as response:
            assert response.status == 200, await response.text()
            answer: dict[str, Any] = await response.json()
        assert answer["response"]["uid"] == review["request"]["uid"]
        return dict(answer["response"])

    async def health(self) -> int:
        endpoint = self.running.controller.options.liveness_endpoint
        async with self.session.get(endpoint) as response:
            return response.status


def iter_conditions(obj: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from obj.get("status", {}).get("conditions", [])


def ready(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((c for c in iter_conditions(obj) if c.get("type") == "Ready"), None)
