"""A lane: a controller of its own behind its own copy of the chart's namespaced webhooks, for tests that
stop, restart or starve a controller without touching the shared one (see :mod:`tests.apiserver.webhooks`).

A lane owns one namespace (labelled for it) and one port, kept across restarts so that the registered
URL stays the same, as a Service's would. :func:`starving_login` logs kopf in as a ServiceAccount that
may discover and watch everything the controller needs except our policies: the webhook serves, but the
policies never load, which is the controller's state at start-up before kopf's first listing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import kopf

from tests.admission.harness import RunningController
from tests.apiserver.harness import start_controller
from tests.apiserver.webhooks import by_url, chart_webhook_configurations, for_lane, lane_labels, unregister
from tests.fixtures.apiserver import ApiServer, ControlPlaneError
from tests.fixtures.registry import RegistryServer, TestPKI

TOKEN_SECONDS: Final = 3600
STARVED_ACCOUNT: Final = "imprimatur-starved"
# What the controller reads besides its own objects; no rule names imprimatur.dev, so kopf cannot list
# ClusterImagePolicies, ImagePolicies or TrustRoots (it retries the 403s, and the policies never load).
STARVED_RULES: Final = [
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]


@dataclass
class Lane:
    """One controller (started and stopped at will) and the namespace its webhooks select."""

    name: str
    api: ApiServer
    registry: RegistryServer
    pki: TestPKI
    tmp: Path
    namespace: str
    port: int = 0
    running: RunningController | None = None
    configurations: list[dict[str, Any]] = field(default_factory=list)

    def _configurations(self, url: str) -> list[dict[str, Any]]:
        self.configurations = for_lane(
            by_url(chart_webhook_configurations(), url, self.pki.ca_file), self.name
        )
        return self.configurations

    def start(
        self, *, login: Callable[..., kopf.ConnectionInfo] | None = None, wait_loaded: bool = True
    ) -> RunningController:
        """Start the lane's controller (on the lane's port once it has one) and wait until it answers."""
        if self.running is not None:
            raise ControlPlaneError(f"lane {self.name}: the controller is running already")
        self.running = start_controller(
            self.api,
            self.registry,
            self.pki,
            self.tmp,
            port=self.port,
            configurations=self._configurations,
            probe_namespace=self.namespace,
            login=login,
            wait_loaded=wait_loaded,
        )
        self.port = urlsplit(self.running.url).port or 0
        return self.running

    def stop(self) -> None:
        if self.running is not None:
            running, self.running = self.running, None
            running.stop()


@contextlib.contextmanager
def lane(api: ApiServer, registry: RegistryServer, pki: TestPKI, tmp: Path, name: str) -> Iterator[Lane]:
    """A lane's namespace; at the end its controller is stopped and its webhooks unregistered."""
    namespace = api.create_namespace(f"lane-{name}", lane_labels(name))
    current = Lane(name, api, registry, pki, tmp, namespace)
    try:
        yield current
    finally:
        current.stop()
        unregister(api, current.configurations)


def starving_login(api: ApiServer, namespace: str) -> Callable[..., kopf.ConnectionInfo]:
    """A kopf login as a ServiceAccount (TokenRequest) bound to :data:`STARVED_RULES` only."""
    api.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": STARVED_ACCOUNT}},
    )
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    role = f"{STARVED_ACCOUNT}-{namespace}"
    api.create(
        f"{rbac}/clusterroles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role},
            "rules": STARVED_RULES,
        },
    )
    api.create(
        f"{rbac}/clusterrolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": STARVED_ACCOUNT, "namespace": namespace}],
        },
    )
    response = api.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{STARVED_ACCOUNT}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": TOKEN_SECONDS},
        },
    )
    if response.status_code not in (200, 201):
        raise ControlPlaneError(f"TokenRequest: HTTP {response.status_code}: {response.text[:500]}")
    token = str(response.json()["status"]["token"])

    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(
            server=api.url, ca_path=str(api.pki.ca_file), token=token, default_namespace=namespace
        )

    return login
