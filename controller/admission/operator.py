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

**Status tells the truth.** A policy is Ready only when its trust root is loaded too (else
``TrustRootUnknown``). A change of trust roots (created, deleted, its data edited) therefore changes
other objects' status: those are merge-patched through the API (:class:`StatusWriter`), since kopf only
hands a ``patch`` to the handler of the object that changed.

**TrustRoot references** are followed only into the controller's namespace. Their data is re-read every
``refresh_seconds`` (a ``get`` by name per referenced object; no list/watch, so a namespaced Role with
``get`` is all it takes: kopf's own watches are cluster-wide and would need a ClusterRole over every
Secret), and a TrustRoot whose data changed is recompiled, without waiting for the TrustRoot itself to
change.

**Namespaces** are indexed for their labels (:mod:`controller.admission.namespaces`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, Final

import kopf

from controller.admission.background import BackgroundScan
from controller.admission.deadlines import Deadlines  # issue 8
from controller.admission.deadlines import register as register_deadlines  # issue 8
from controller.admission.exceptions import Exceptions  # issue 8
from controller.admission.exceptions import register as register_exceptions  # issue 8
from controller.admission.handlers import Admission
from controller.admission.kube import KubeReader
from controller.admission.log_filters import quiet_admission_denials
from controller.admission.mutation import Pinning
from controller.admission.namespaces import NAMESPACE_INDEX, NamespaceLabels, controller_namespace
from controller.admission.objects import (
    GROUP,
    VERSION,
    ObjectKey,
    PolicyEntry,
    TrustRootEntry,
    compile_policy_entry,
    compile_trust_root_entry,
    object_key,
    refresh_trust_root_entry,
)
from controller.admission.policy_keys import PolicyKeys
from controller.admission.policy_review import PolicyReview
from controller.admission.state import PolicyState
from controller.admission.status import desired_status, status_differs
from controller.admission.status_sync import StatusSync
from controller.admission.webhook import (
    POD_RESOURCES,
    POLICY_CRD_RESOURCES,
    WEBHOOK_PIN_PODS,
    WEBHOOK_PIN_WORKLOADS,
    WEBHOOK_PODS,
    WEBHOOK_POLICIES,
    WEBHOOK_WORKLOADS,
    WORKLOAD_RESOURCES,
)
from controller.errors import Reason

log = logging.getLogger(__name__)

# Index ids: kopf passes every index to every handler as a keyword argument of this name.
CLUSTER_POLICY_INDEX: Final = "imprimatur_cluster_policies"
POLICY_INDEX: Final = "imprimatur_image_policies"
TRUST_ROOT_INDEX: Final = "imprimatur_trust_roots"

CRD_NAMES: Final = frozenset(
    {f"clusterimagepolicies.{GROUP}", f"imagepolicies.{GROUP}", f"trustroots.{GROUP}"}
)
DEFAULT_REFRESH_SECONDS: Final = 15.0


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


class _Unset:
    pass


_UNSET: Final = _Unset()


class Loader:
    """Keeps :class:`PolicyState` in step with kopf's indexes, and the objects' status with their entries."""

    def __init__(
        self,
        state: PolicyState,
        reader: KubeReader | None,
        *,
        namespace: str | _Unset | None = _UNSET,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        overload: Callable[[], str | None] | None = None,
    ) -> None:
        self.state = state
        self.reader = reader
        self.overload = overload  # why the controller is past capacity now, if it is
        # The lead's build_controller may pass options.namespace; until then, read it as options would.
        self.namespace = controller_namespace(os.environ) if isinstance(namespace, _Unset) else namespace
        self.refresh_seconds = refresh_seconds
        self.crds_seen: set[str] = set()
        self.namespaces = NamespaceLabels(state.engine)
        self.policy_review = PolicyReview(reader, self.namespace, state.trust_root_readiness)
        self._indices: dict[str, Any] = {}  # kopf's live Index objects, kept for the refresh task
        self.statuses = StatusSync(reader)
        self.keys = PolicyKeys(reader, self.namespace, compile_policy_entry)  # identities[].key.secretRef
        # TrustRoots recompiled after their ConfigMap/Secret changed: (the index entry, its successor).
        self._refreshed: dict[ObjectKey, tuple[TrustRootEntry, TrustRootEntry]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def _trust_roots(self) -> list[TrustRootEntry]:
        roots = []
        for entry in _entries(self._indices, TRUST_ROOT_INDEX):
            if not isinstance(entry, TrustRootEntry):
                continue
            refreshed = self._refreshed.get(entry.key)
            roots.append(refreshed[1] if refreshed is not None and refreshed[0] is entry else entry)
        return roots

    def rebuild(self, indices: Mapping[str, Any]) -> None:
        for name in (CLUSTER_POLICY_INDEX, POLICY_INDEX, TRUST_ROOT_INDEX, NAMESPACE_INDEX):
            if name in indices:
                self._indices[name] = indices[name]
        policies = [
            self.keys.current(e)
            for e in _entries(self._indices, CLUSTER_POLICY_INDEX) + _entries(self._indices, POLICY_INDEX)
            if isinstance(e, PolicyEntry)
        ]
        self.keys.forget_missing(e.key for e in policies)
        roots = self._trust_roots()
        live = {r.key for r in roots}
        for key in [k for k in self._refreshed if k not in live]:
            del self._refreshed[key]
        self.state.apply(policies, roots)

    # kopf index handlers: one entry per object, keyed by (kind, namespace, name)

    async def index_policy(self, *, body: Mapping[str, object], **_: Any) -> dict[ObjectKey, PolicyEntry]:
        entry = await self.keys.compile(body)
        return {entry.key: entry}

    async def index_trust_root(
        self, *, body: Mapping[str, object], **_: Any
    ) -> dict[ObjectKey, TrustRootEntry]:
        entry = await compile_trust_root_entry(body, self.reader, self.namespace)
        return {entry.key: entry}

    # kopf event handlers: called for every event (incl. DELETED) after the index saw it

    def _desired(self, body: Mapping[str, object], entry: PolicyEntry | TrustRootEntry) -> dict[str, object]:
        trust_roots = self.state.trust_root_readiness() if isinstance(entry, PolicyEntry) else None
        now = self.state.engine.now()  # issue 8: the decision clock (enforceAfter)
        return desired_status(body, entry, now, trust_roots=trust_roots)

    def _on_event(
        self, index: str, type: str | None, body: Mapping[str, object], patch: Any, kwargs: Mapping[str, Any]
    ) -> None:
        self.rebuild(kwargs)
        key = object_key(body)
        if type == "DELETED":
            self.statuses.forget(key)
            return
        self.statuses.seen(key, body)
        entry = _entry(kwargs, index, key)
        if isinstance(entry, TrustRootEntry):
            refreshed = self._refreshed.get(key)
            entry = refreshed[1] if refreshed is not None and refreshed[0] is entry else entry
        if isinstance(entry, PolicyEntry):
            entry = self.keys.current(entry)
        if entry is None:
            return
        desired = self._desired(body, entry)
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
        if self.state.loaded:
            await self.sync_statuses(skip=object_key(body))

    async def on_crd_event(self, *, name: str | None, **kwargs: Any) -> None:
        """kopf calls this only after every index is populated: once all our CRDs are seen, we are loaded."""
        if name in CRD_NAMES:
            self.crds_seen.add(name)
        if self.crds_seen >= CRD_NAMES and not self.state.loaded:
            self.namespaces.push(kwargs)
            self.rebuild(kwargs)
            self.state.mark_loaded()
            await self.sync_statuses()

    async def sync_statuses(self, *, skip: ObjectKey | None = None) -> int:
        """Patch the objects whose status no longer tells the truth (``skip``: the one kopf handles now)."""
        entries: list[PolicyEntry | TrustRootEntry] = [
            *self.state.policy_entries,
            *self.state.trust_root_entries,
        ]
        return await self.statuses.sync(entries, self._desired, skip=skip)

    # TrustRoot references: re-read, recompile when the data changed

    async def refresh_references(self) -> bool:
        """Re-read every referenced ConfigMap/Secret key (TrustRoots' and policies' keys); recompile
        what changed. True if anything did."""
        async with self._lock:
            changed = await self.keys.refresh()  # policies' Secret-held keys
            for entry in self._trust_roots():
                if entry.ref is None:
                    continue
                fresh = await refresh_trust_root_entry(entry, self.reader)
                if fresh is entry:
                    continue
                base = next(
                    (
                        e
                        for e in _entries(self._indices, TRUST_ROOT_INDEX)
                        if isinstance(e, TrustRootEntry) and e.key == entry.key
                    ),
                    None,
                )
                if base is None:
                    continue  # deleted meanwhile
                log.info(
                    "%s: %s changed: %s", entry.key, entry.ref, "loaded" if fresh.ready else fresh.detail
                )
                self._refreshed[entry.key] = (base, fresh)
                changed = True
            if changed:
                self.rebuild({})
                if self.state.loaded:
                    await self.sync_statuses()
            return changed

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh_references()
            except Exception:
                log.exception("refreshing TrustRoot references failed")

    async def on_startup(self, **_: Any) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._refresh_forever(), name="imprimatur-trust-root-refresh")

    async def on_cleanup(self, **_: Any) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def probe(self, **_: Any) -> dict[str, object]:
        """Readiness: fails (HTTP 500 from kopf's health endpoint) until loaded, and while overloaded."""
        summary = self.state.summary()
        if not summary.loaded:
            raise kopf.PermanentError(
                f"{Reason.POLICIES_NOT_LOADED}: policies and trust roots are not loaded yet"
            )
        overloaded = self.overload() if self.overload is not None else None
        if overloaded is not None:
            # Not ready: the Service sends new reviews to the other replicas until this one catches up.
            # Permanent, like not-loaded: the probe answers 500 at once (kopf retries temporary ones).
            raise kopf.PermanentError(f"{Reason.OVERLOADED}: {overloaded}")
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


def _is_policy_crd(resource: kopf.Resource) -> bool:
    return any(
        (resource.group, resource.version, resource.plural) == (r.group, r.version, r.resource)
        for r in POLICY_CRD_RESOURCES
    )


LoginFn = Callable[..., Any]


def build_registry(
    admission: Admission,
    loader: Loader,
    *,
    login: LoginFn | None = None,
    pinning: Pinning | None = None,
    background: BackgroundScan | None = None,
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

    if pinning is not None:  # the mutating webhooks; kopf would allow a review no handler matched
        kopf.on.mutate(
            _is_pods, id=WEBHOOK_PIN_PODS, operations=["CREATE", "UPDATE"], subresource="*", registry=registry
        )(pinning.mutate_pods)
        kopf.on.mutate(
            _is_workload, id=WEBHOOK_PIN_WORKLOADS, operations=["CREATE", "UPDATE"], registry=registry
        )(pinning.mutate_workloads)

    kopf.on.validate(_is_policy_crd, id=WEBHOOK_POLICIES, operations=["CREATE", "UPDATE"], registry=registry)(
        loader.policy_review.validate
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

    kopf.index("", "v1", "namespaces", id=NAMESPACE_INDEX, registry=registry)(loader.namespaces.index)
    kopf.on.event("", "v1", "namespaces", id="namespace-labels", registry=registry)(
        loader.namespaces.on_event
    )

    # --- issue 8: ImagePolicyExceptions (controller/admission/exceptions.py)
    exceptions = Exceptions(loader.state)
    loader.policy_review.exceptions = exceptions
    register_exceptions(registry, exceptions)
    register_deadlines(registry, Deadlines(loader.state, loader._desired))  # the Enforcing condition
    # --- end issue 8

    kopf.on.startup(id="trust-root-refresh", registry=registry)(loader.on_startup)
    kopf.on.cleanup(id="trust-root-refresh-stop", registry=registry)(loader.on_cleanup)
    kopf.on.probe(id="policies", registry=registry)(loader.probe)
    if background is not None:
        register_background(registry, background)
    return registry


# --- background re-verification (issue 8): a block of its own


def register_background(registry: kopf.OperatorRegistry, background: BackgroundScan) -> None:
    """The loop starts and stops with the operator; any event of a policy or trust root (the objects
    the Loader indexes) asks for a cycle, debounced by the loop."""
    for plural in ("clusterimagepolicies", "imagepolicies", "trustroots"):
        kopf.on.event(GROUP, VERSION, plural, id=f"background-{plural}", registry=registry)(
            background.on_change
        )
    kopf.on.startup(id="background", registry=registry)(background.on_startup)
    kopf.on.cleanup(id="background-stop", registry=registry)(background.on_cleanup)


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
    quiet_admission_denials(
        (WEBHOOK_PODS, WEBHOOK_WORKLOADS, WEBHOOK_POLICIES, WEBHOOK_PIN_PODS, WEBHOOK_PIN_WORKLOADS)
    )
