"""Reading single objects from the Kubernetes API (Secrets, ServiceAccounts and ConfigMaps, by name), and
writing the ``status`` of our own objects outside of a kopf handler.

Least privilege: only ``get`` by name, never ``list`` or ``watch``; only ``patch`` of ``/status``.
Every call is bounded in time and bytes and runs in a worker thread, so the event loop never blocks on
the API server.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any, Final, Literal, Protocol, runtime_checkable

import kubernetes

from controller.errors import FetchError, PolicyError, Reason

CoreResource = Literal["secrets", "serviceaccounts", "configmaps"]

MAX_OBJECT_BYTES: Final = 2 * 1024 * 1024  # a Secret or ConfigMap holds at most 1 MiB of data
CONNECT_TIMEOUT_SECONDS: Final = 3.0
READ_TIMEOUT_SECONDS: Final = 5.0
STATUS_GROUP: Final = "imprimatur.dev"  # the only objects whose status we write
STATUS_VERSION: Final = "v1alpha1"


class KubeReader(Protocol):
    """Reads one namespaced core/v1 object by name."""

    async def read(self, resource: CoreResource, namespace: str, name: str) -> Mapping[str, object] | None:
        """The object, or None when it does not exist. Raises :class:`FetchError` when it cannot be read."""
        ...


@runtime_checkable
class StatusWriter(Protocol):
    """Merge-patches the ``status`` subresource of one of our custom objects."""

    async def patch_status(
        self, plural: str, namespace: str | None, name: str, status: Mapping[str, object]
    ) -> bool:
        """True when patched, False when the object does not exist. Raises :class:`FetchError`."""
        ...


class KubernetesReader:
    """:class:`KubeReader` over the official client (in-cluster service account, or a kubeconfig)."""

    def __init__(self, api_client: Any) -> None:
        self._api = kubernetes.client.CoreV1Api(api_client)
        self._custom = kubernetes.client.CustomObjectsApi(api_client)

    @classmethod
    def from_environment(cls) -> KubernetesReader:
        """In a pod: the service account. Elsewhere: the current kubeconfig context."""
        configuration = kubernetes.client.Configuration()
        load: Any = (
            kubernetes.config.load_incluster_config
            if os.environ.get("KUBERNETES_SERVICE_HOST")
            else kubernetes.config.load_kube_config
        )
        try:
            load(client_configuration=configuration)
        except (kubernetes.config.ConfigException, OSError) as e:
            raise PolicyError(Reason.CONFIG_INVALID, f"no Kubernetes API configuration: {e}") from e
        return cls(kubernetes.client.ApiClient(configuration))

    @classmethod
    def for_url(cls, url: str) -> KubernetesReader:
        """An unauthenticated reader for ``url`` (a test API server)."""
        configuration = kubernetes.client.Configuration(host=url.rstrip("/"))
        return cls(kubernetes.client.ApiClient(configuration))

    async def read(self, resource: CoreResource, namespace: str, name: str) -> Mapping[str, object] | None:
        return await asyncio.to_thread(self._read, resource, namespace, name)

    def _read(self, resource: CoreResource, namespace: str, name: str) -> Mapping[str, object] | None:
        method: Any = {
            "secrets": self._api.read_namespaced_secret,
            "serviceaccounts": self._api.read_namespaced_service_account,
            "configmaps": self._api.read_namespaced_config_map,
        }[resource]
        where = f"GET {resource} {namespace}/{name}"
        try:
            response: Any = method(
                name,
                namespace,
                _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
            )
        except Exception as e:  # API answers and transport errors alike become a reasoned FetchError
            if isinstance(e, kubernetes.client.ApiException) and e.status == 404:
                return None
            raise _api_error(where, e) from e
        try:
            data = response.read(MAX_OBJECT_BYTES + 1)
        finally:
            response.release_conn()
        if len(data) > MAX_OBJECT_BYTES:
            raise FetchError(
                Reason.LIMIT_EXCEEDED, f"kubernetes API: {where}: larger than {MAX_OBJECT_BYTES} bytes"
            )
        try:
            document = json.loads(data)
        except ValueError as e:
            raise FetchError(Reason.INTERNAL_ERROR, f"kubernetes API: {where}: not JSON") from e
        if not isinstance(document, dict):
            raise FetchError(Reason.INTERNAL_ERROR, f"kubernetes API: {where}: not an object")
        return document

    async def patch_status(
        self, plural: str, namespace: str | None, name: str, status: Mapping[str, object]
    ) -> bool:
        return await asyncio.to_thread(self._patch_status, plural, namespace, name, dict(status))

    def _patch_status(self, plural: str, namespace: str | None, name: str, status: dict[str, object]) -> bool:
        where = (
            f"PATCH {plural}/{name}/status"
            if namespace is None
            else f"PATCH {plural} {namespace}/{name}/status"
        )
        options: dict[str, Any] = {
            "_content_type": "application/merge-patch+json",
            "_request_timeout": (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
        }
        try:
            if namespace is None:
                self._custom.patch_cluster_custom_object_status(
                    STATUS_GROUP, STATUS_VERSION, plural, name, {"status": status}, **options
                )
            else:
                self._custom.patch_namespaced_custom_object_status(
                    STATUS_GROUP, STATUS_VERSION, namespace, plural, name, {"status": status}, **options
                )
        except Exception as e:  # API answers and transport errors alike become a reasoned FetchError
            if isinstance(e, kubernetes.client.ApiException) and e.status == 404:
                return False
            raise _api_error(where, e) from e
        return True


def _api_error(where: str, e: Exception) -> FetchError:
    """An API failure as a FetchError: the HTTP status of an API answer, or the transport's error
    (urllib3 and socket errors: the API server could not be reached)."""
    if isinstance(e, kubernetes.client.ApiException):
        return FetchError(Reason.INTERNAL_ERROR, f"kubernetes API: {where}: HTTP {e.status} {e.reason}")
    return FetchError(Reason.INTERNAL_ERROR, f"kubernetes API: {where}: {type(e).__name__}: {e}")
