"""The Kubernetes side of the background loop: paginated lists of Pods and workloads, report writes
(server-side apply), Events, API discovery, and reading reports back (``imprimatur report``).

Every call is bounded in time and bytes and runs in a worker thread, so the event loop never blocks
on the API server. What it needs from RBAC: ``list`` of pods and workloads cluster-wide, ``get``/
``patch``/``create`` of ``policyreports`` (and ``reports.openreports.io``), ``create`` of events.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

import kubernetes
import urllib3

from controller.errors import FetchError, PolicyError, Reason
from controller.posture import WorkloadRef
from controller.posture.reports import REPORT_NAME

CONNECT_TIMEOUT_SECONDS: Final = 3.0
READ_TIMEOUT_SECONDS: Final = 30.0
MAX_PAGE_BYTES: Final = 64 * 1024 * 1024
MAX_REPORT_BYTES: Final = 4 * 1024 * 1024
FIELD_MANAGER: Final = "imprimatur"
EVENT_COMPONENT: Final = "imprimatur"


@dataclass(frozen=True, slots=True)
class WorkloadKind:
    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{base}/namespaces/{namespace}/{self.plural}" if namespace else f"{base}/{self.plural}"


WORKLOAD_KINDS: Final = (
    WorkloadKind("", "v1", "pods", "Pod"),
    WorkloadKind("apps", "v1", "deployments", "Deployment"),
    WorkloadKind("apps", "v1", "statefulsets", "StatefulSet"),
    WorkloadKind("apps", "v1", "daemonsets", "DaemonSet"),
    WorkloadKind("apps", "v1", "replicasets", "ReplicaSet"),
    WorkloadKind("batch", "v1", "jobs", "Job"),
    WorkloadKind("batch", "v1", "cronjobs", "CronJob"),
)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Mapping[str, object]]
    token: str | None  # the continue token, None on the last page


class ObjectLister(Protocol):
    async def list_page(self, kind: WorkloadKind, *, limit: int, token: str | None) -> Page:
        """One page of ``kind`` across all namespaces. Raises :class:`FetchError`."""
        ...


class PostureWriter(Protocol):
    async def served(self, api_version: str) -> bool:
        """Whether the API server serves ``group/version`` (discovery)."""
        ...

    async def apply_report(self, plural: str, api_version: str, namespace: str | None, body: bytes) -> None:
        """Create or update the report named ``imprimatur`` from its JSON ``body`` (server-side
        apply); ``namespace`` None: the cluster-scoped one. Raises :class:`FetchError`."""
        ...

    async def read_reports(self, api_version: str, plural: str) -> list[Mapping[str, object]]:
        """Our reports of ``plural`` in every namespace (an unserved API: none). Raises :class:`FetchError`."""
        ...

    async def post_event(self, workload: WorkloadRef, reason: str, message: str, now: datetime) -> None:
        """A Warning Event on ``workload``. Raises :class:`FetchError`."""
        ...


def _api_error(where: str, e: Exception) -> FetchError:
    if isinstance(e, kubernetes.client.ApiException):
        return FetchError(Reason.INTERNAL_ERROR, f"kubernetes API: {where}: HTTP {e.status} {e.reason}")
    return FetchError(Reason.INTERNAL_ERROR, f"kubernetes API: {where}: {type(e).__name__}: {e}")


class KubernetesPosture:
    """:class:`ObjectLister` and :class:`PostureWriter` over the official client."""

    def __init__(self, api_client: Any) -> None:
        self._client = api_client

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None, context: str | None = None) -> KubernetesPosture:
        """In a pod: the service account. Elsewhere: the kubeconfig (``$KUBECONFIG``, ``~/.kube/config``)."""
        configuration = kubernetes.client.Configuration()
        try:
            if os.environ.get("KUBERNETES_SERVICE_HOST") and kubeconfig is None:
                incluster: Any = kubernetes.config.load_incluster_config
                incluster(client_configuration=configuration)
            else:
                load: Any = kubernetes.config.load_kube_config
                load(config_file=kubeconfig, context=context, client_configuration=configuration)
        except (kubernetes.config.ConfigException, OSError, TypeError) as e:
            raise PolicyError(Reason.CONFIG_INVALID, f"no Kubernetes API configuration: {e}") from e
        return cls(kubernetes.client.ApiClient(configuration))

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: object = None,
        raw_body: bytes | None = None,
        content_type: str = "application/json",
        max_bytes: int = MAX_PAGE_BYTES,
    ) -> Mapping[str, object] | None:
        where = f"{method} {path}"
        try:
            # the generic client path: serialise (auth, host) like the typed APIs, then read the raw
            # urllib3 response ourselves so the bytes read are bounded
            verb, url, headers, payload, _ = self._client.param_serialize(
                method,
                path,
                query_params=list(query),
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
            )
            if raw_body is not None:
                payload = raw_body
            response: Any = self._client.rest_client.pool_manager.request(
                verb,
                url,
                headers=headers,
                body=payload if payload is None or isinstance(payload, str | bytes) else json.dumps(payload),
                preload_content=False,
                timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS),
                retries=False,
            )
        except Exception as e:  # transport errors become a reasoned FetchError
            raise _api_error(where, e) from e
        if response.status == 404:
            response.release_conn()
            return None
        if response.status >= 400:
            text = response.read(2048)
            response.release_conn()
            raise FetchError(
                Reason.INTERNAL_ERROR,
                f"kubernetes API: {where}: HTTP {response.status} {text.decode('utf-8', 'replace')[:300]}",
            )
        try:
            data = response.read(max_bytes + 1)
        finally:
            response.release_conn()
        if len(data) > max_bytes:
            raise FetchError(Reason.LIMIT_EXCEEDED, f"kubernetes API: {where}: larger than {max_bytes} bytes")
        try:
            document = json.loads(data) if data else {}
        except ValueError as e:
            raise FetchError(Reason.INTERNAL_ERROR, f"kubernetes API: {where}: not JSON") from e
        if not isinstance(document, dict):
            raise FetchError(Reason.INTERNAL_ERROR, f"kubernetes API: {where}: not an object")
        return document

    async def list_page(self, kind: WorkloadKind, *, limit: int, token: str | None) -> Page:
        query = [("limit", str(limit))] + ([("continue", token)] if token else [])
        document = await asyncio.to_thread(self._call, "GET", kind.path(), query=query)
        if document is None:
            return Page([], None)  # the kind is not served here (an old cluster without CronJobs ...)
        items = document.get("items")
        metadata = document.get("metadata")
        follow = metadata.get("continue") if isinstance(metadata, Mapping) else None
        return Page(
            [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else [],
            follow if isinstance(follow, str) and follow else None,
        )

    async def served(self, api_version: str) -> bool:
        document = await asyncio.to_thread(self._call, "GET", f"/apis/{api_version}", max_bytes=1024 * 1024)
        return document is not None

    async def apply_report(self, plural: str, api_version: str, namespace: str | None, body: bytes) -> None:
        where = f"/apis/{api_version}/namespaces/{namespace}" if namespace else f"/apis/{api_version}"
        path = f"{where}/{plural}/{REPORT_NAME}"
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        await asyncio.to_thread(
            self._call,
            "PATCH",
            path,
            query=query,
            raw_body=body,
            content_type="application/apply-patch+yaml",  # YAML is a superset of JSON
        )

    async def read_reports(self, api_version: str, plural: str) -> list[Mapping[str, object]]:
        return await asyncio.to_thread(self.list_reports, api_version, plural, None)

    async def post_event(self, workload: WorkloadRef, reason: str, message: str, now: datetime) -> None:
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{workload.name[:200]}.", "namespace": workload.namespace},
            "involvedObject": workload.reference(),
            "reason": reason[:128],
            "message": message[:1024],
            "type": "Warning",
            "source": {"component": EVENT_COMPONENT},
            "reportingComponent": f"{EVENT_COMPONENT}.dev/background",
            "reportingInstance": EVENT_COMPONENT,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        await asyncio.to_thread(
            self._call, "POST", f"/api/v1/namespaces/{workload.namespace}/events", body=body
        )

    def list_reports(
        self, api_version: str, plural: str, namespace: str | None
    ) -> list[Mapping[str, object]]:
        """Our reports (label ``app.kubernetes.io/managed-by=imprimatur``), in one namespace or all.
        Synchronous: for the CLI. Raises :class:`FetchError`; an unserved API is an empty list."""
        where = (
            f"/apis/{api_version}/namespaces/{namespace}/{plural}"
            if namespace
            else f"/apis/{api_version}/{plural}"
        )
        query = [("labelSelector", "app.kubernetes.io/managed-by=imprimatur"), ("limit", "500")]
        out: list[Mapping[str, object]] = []
        token: str | None = None
        for _ in range(200):  # pages: at most 100,000 reports
            document = self._call("GET", where, query=[*query, *([("continue", token)] if token else [])])
            if document is None:
                return out
            items = document.get("items")
            out.extend(i for i in (items if isinstance(items, list) else []) if isinstance(i, Mapping))
            metadata = document.get("metadata")
            follow = metadata.get("continue") if isinstance(metadata, Mapping) else None
            if not isinstance(follow, str) or not follow:
                return out
            token = follow
        return out
