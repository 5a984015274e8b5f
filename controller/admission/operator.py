"""The operator side: kopf indexes of our objects, their status, readiness, and the kopf registry.

**Loading.** Each of ClusterImagePolicy, ImagePolicy and TrustRoot has a kopf index of compiled
entries (valid or with their error). kopf populates every index from its initial listing before it
runs any other handler for any resource; the ``loaded`` sentinel is an ``on.event`` handler for our
own CustomResourceDefinitions, which kopf therefore calls only once every index is complete. Until
all three CRDs have been seen there, reviews are denied with ``PoliciesNotLoaded`` and the probe
fails. Each event of a policy or trust root rebuilds the engine from the indexes (so deletions,
which kopf drops from an index without a handler call, are seen too) and brings the object's
``status`` (Ready condition, observedGeneration) up to date; only ``/status`` is patched and only
when it differs, so no kopf bookkeeping is written to the user's objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

import kopf

from controller.admission.handlers import Admission
from controller.admission.kube import KubeReader
from controller.admission.objects import (
    GROUP,
    VERSION,
    ObjectKey,
    PolicyEntry,
    TrustRootEntry,
    compile_policy_entry,
    compile_trust_root_entry,
    desired_status,
    object_key,
    status_differs,
)
from controller.admission.state import PolicyState
from controller.admission.webhook import POD_RESOURCES, WEBHOOK_PODS, WEBHOOK_WORKLOADS, WORKLOAD_RESOURCES
from controller.errors import Reason

log = logging.getLogger(__name__)

# Index ids: kopf passes every index to every handler as a keyword argument of this name.
CLUSTER_POLICY_INDEX: Final = "imprimatur_cluster_policies"
POLICY_INDEX: Final = "imprimatur_image_policies"
TRUST_ROOT_INDEX: Final = "imprimatur_trust_roots"

CRD_NAMES: Final = frozenset(
    {f"clusterimagepolicies.{GROUP}", f"imagepolicies.{GROUP}", f"trustroots.{GROUP}"}
)


def _entries(indices: Mapping[str, Any], name: str) -> list[Any]:
    index = indices.get(name)
    if index is None:
        return []
    return [entry for store in index.values() for entry in store]


def _entry(indices: Mapping[str, Any], name: str, key: ObjectKey) -> PolicyEntry | TrustRootEntry | None:
    index = indices.get(name)
    if index is None or key not in index:
        return None
    for entry in index[key]:
        if isinstance(entry, PolicyEntry | TrustRootEntry):
            return entry
    return None


class Loader:
    """Keeps :class:`PolicyState` in step with kopf's indexes, and the objects' status with their entries."""

    def __init__(self, state: PolicyState, reader: KubeReader | None) -> None:
        self.state = state
        self.reader = reader
        self.crds_seen: set[str] = set()

    def rebuild(self, indices: Mapping[str, Any]) -> None:
        policies = [
            e
            for e in _entries(indices, CLUSTER_POLICY_INDEX) + _entries(indices, POLICY_INDEX)
            if isinstance(e, PolicyEntry)
        ]
        roots = [e for e in _entries(indices, TRUST_ROOT_INDEX) if isinstance(e, TrustRootEntry)]
        self.state.apply(policies, roots)

    # kopf index handlers: one entry per object, keyed by (kind, namespace, name)

    async def index_policy(self, *, body: Mapping[str, object], **_: Any) -> dict[ObjectKey, PolicyEntry]:
        entry = compile_policy_entry(body)
        return {entry.key: entry}

    async def index_trust_root(
        self, *, body: Mapping[str, object], **_: Any
    ) -> dict[ObjectKey, TrustRootEntry]:
        entry = await compile_trust_root_entry(body, self.reader)
        return {entry.key: entry}

    # kopf event handlers: called for every event (incl. DELETED) after the index saw it

    def _on_event(
        self, index: str, type: str | None, body: Mapping[str, object], patch: Any, kwargs: Mapping[str, Any]
    ) -> None:
        self.rebuild(kwargs)
        if type == "DELETED":
            return
        entry = _entry(kwargs, index, object_key(body))
        if entry is None:
            return
        desired = desired_status(body, entry)
        if status_differs(body, desired):
            patch["status"] = desired

    async def on_cluster_policy_event(
        self, *, type: str | None, body: Mapping[str, object], patch: Any, **kwargs: Any
    ) -> None:
        self._on_event(CLUSTER_POLICY_INDEX, type, body, patch, kwargs)

    async def on_policy_event(
        self, *, type: str | None, body: Mapping[str, object], patch: Any, **kwargs: Any
    ) -> None:
        self._on_event(POLICY_INDEX, type, body, patch, kwargs)

    async def on_trust_root_event(
        self, *, type: str | None, body: Mapping[str, object], patch: Any, **kwargs: Any
    ) -> None:
        self._on_event(TRUST_ROOT_INDEX, type, body, patch, kwargs)

    async def on_crd_event(self, *, name: str | None, **kwargs: Any) -> None:
        """kopf calls this only after every index is populated: once all our CRDs are seen, we are loaded."""
        if name in CRD_NAMES:
            self.crds_seen.add(name)
        if self.crds_seen >= CRD_NAMES and not self.state.loaded:
            self.rebuild(kwargs)
            self.state.mark_loaded()

    def probe(self, **_: Any) -> dict[str, object]:
        """Readiness: fails (HTTP 500 from kopf's health endpoint) until loaded."""
        summary = self.state.summary()
        if not summary.loaded:
            raise kopf.PermanentError(
                f"{Reason.POLICIES_NOT_LOADED}: policies and trust roots are not loaded yet"
            )
        return {
            "loaded": True,
            "policies": {"ready": summary.policies_ready, "invalid": summary.policies_invalid},
            "trustRoots": {"ready": summary.trust_roots_ready, "invalid": summary.trust_roots_invalid},
            "problems": list(summary.problems[:20]),
        }


def _is_pods(resource: kopf.Resource) -> bool:
    return any(
        (resource.group, resource.version, resource.plural) == (r.group, r.version, r.resource)
        for r in POD_RESOURCES
    )


def _is_workload(resource: kopf.Resource) -> bool:
    return any(
        (resource.group, resource.version, resource.plural) == (r.group, r.version, r.resource)
        for r in WORKLOAD_RESOURCES
    )


def _is_our_crd(name: str | None = None, **_: Any) -> bool:
    return name in CRD_NAMES


LoginFn = Callable[..., Any]


def build_registry(
    admission: Admission, loader: Loader, *, login: LoginFn | None = None
) -> kopf.OperatorRegistry:
    """A fresh kopf registry with every handler bound to ``admission`` and ``loader`` (no global state)."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(login or kopf.login_via_client)

    kopf.on.validate(
        _is_pods, id=WEBHOOK_PODS, operations=["CREATE", "UPDATE"], subresource="*", registry=registry
    )(admission.validate_pods)
    kopf.on.validate(_is_workload, id=WEBHOOK_WORKLOADS, operations=["CREATE", "UPDATE"], registry=registry)(
        admission.validate_workloads
    )

    kopf.index(GROUP, VERSION, "clusterimagepolicies", id=CLUSTER_POLICY_INDEX, registry=registry)(
        loader.index_policy
    )
    kopf.index(GROUP, VERSION, "imagepolicies", id=POLICY_INDEX, registry=registry)(loader.index_policy)
    kopf.index(GROUP, VERSION, "trustroots", id=TRUST_ROOT_INDEX, registry=registry)(loader.index_trust_root)

    kopf.on.event(GROUP, VERSION, "clusterimagepolicies", id="cluster-policy-status", registry=registry)(
        loader.on_cluster_policy_event
    )
    kopf.on.event(GROUP, VERSION, "imagepolicies", id="policy-status", registry=registry)(
        loader.on_policy_event
    )
    kopf.on.event(GROUP, VERSION, "trustroots", id="trust-root-status", registry=registry)(
        loader.on_trust_root_event
    )
    kopf.on.event(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        id="loaded",
        when=_is_our_crd,
        registry=registry,
    )(loader.on_crd_event)

    kopf.on.probe(id="policies", registry=registry)(loader.probe)
    return registry


def configure_settings(
    settings: kopf.OperatorSettings, server: kopf.WebhookServerProtocol, *, standalone: bool
) -> None:
    """kopf settings: our webhook server, no managed webhook configuration (the chart owns it), and
    kopf's own bookkeeping, if any is ever written, under ``imprimatur.dev`` annotations, never in status."""
    settings.admission.server = server
    settings.admission.managed = None
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    settings.peering.standalone = standalone
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30
