"""The kopf handlers: admission (``validate-pods``, ``validate-workloads``), indexes, status, readiness.

**Admission.** :class:`Admission` decides one review in a worker thread, under a deadline. The
images to verify are all of the object's on CREATE and only the new ones on UPDATE (an ephemeral
container added by ``kubectl debug``, a changed image): an image already running was verified when
it was admitted, and an UPDATE that adds none (labels, scaling) needs no registry round trip. A
denial lists every failing image as ``Reason: image: detail``, one per line.

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

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import kopf

from controller.admission.credentials import CredentialResolver
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
from controller.admission.review import AdmissionRequest, bound_message
from controller.admission.state import PolicyState
from controller.admission.webhook import (
    NO_IMAGES_REASON,
    POD_RESOURCES,
    WEBHOOK_PODS,
    WEBHOOK_RESOURCES,
    WEBHOOK_WORKLOADS,
    WORKLOAD_RESOURCES,
    ReviewContext,
    WebhookHandler,
    current_review,
)
from controller.errors import InputError, Reason
from controller.model import Decision, ImageVerdict
from controller.workload import images_of

log = logging.getLogger(__name__)

# Index ids: kopf passes every index to every handler as a keyword argument of this name.
CLUSTER_POLICY_INDEX: Final = "imprimatur_cluster_policies"
POLICY_INDEX: Final = "imprimatur_image_policies"
TRUST_ROOT_INDEX: Final = "imprimatur_trust_roots"

CRD_NAMES: Final = frozenset(
    {f"clusterimagepolicies.{GROUP}", f"imagepolicies.{GROUP}", f"trustroots.{GROUP}"}
)

CODE_DENIED: Final = 403
CODE_INVALID: Final = 400
CODE_NOT_LOADED: Final = 503
CODE_INTERNAL: Final = 500


def _not_loaded_message(images: Iterable[str]) -> str:
    detail = "policies and trust roots are not loaded yet; retry shortly"
    return bound_message(
        [f"{Reason.POLICIES_NOT_LOADED}: {image}: {detail}" for image in images]
        or [f"{Reason.POLICIES_NOT_LOADED}: -: {detail}"]
    )


def _images(obj: Mapping[str, object] | None) -> list[str]:
    return [c.image for c in images_of(obj)] if obj is not None else []


def images_to_verify(request: AdmissionRequest) -> list[str]:
    """The images a review must verify: all on CREATE; on UPDATE only those the old object lacked.

    Raises :class:`InputError` (``ReviewInvalid``) when the new object's containers cannot be read.
    """
    if request.operation not in ("CREATE", "UPDATE"):
        return []
    try:
        new = list(dict.fromkeys(_images(request.new_object)))
    except InputError as e:
        raise InputError(Reason.REVIEW_INVALID, e.detail) from e
    if request.operation == "CREATE":
        return new
    try:
        old = set(_images(request.old_object))
    except InputError:
        return new  # an unreadable old object proves nothing was admitted: verify everything
    return [image for image in new if image not in old]


def _namespace(request: AdmissionRequest) -> str | None:
    if request.namespace:
        return request.namespace
    meta = request.new_object.get("metadata") if request.new_object is not None else None
    namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
    return namespace if isinstance(namespace, str) and namespace else None


def _timeout_verdicts(images: Iterable[str], seconds: float) -> Decision:
    verdicts = tuple(
        ImageVerdict(image, False, Reason.LIMIT_EXCEEDED, f"no decision within {seconds:g}s", transient=True)
        for image in images
    )
    return Decision(allowed=False, verdicts=verdicts)


class Admission:
    """Decides admission reviews with the engine that :class:`PolicyState` keeps up to date."""

    def __init__(
        self,
        *,
        state: PolicyState,
        credentials: CredentialResolver,
        decision_timeout: float,
        max_concurrent: int,
    ) -> None:
        self.state = state
        self.credentials = credentials
        self.decision_timeout = decision_timeout
        # Bounded: beyond this many decisions at once, reviews queue and then time out (deny).
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="admission")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def handlers(self) -> dict[str, WebhookHandler]:
        """The webhook handlers by id: what kopf registers, and what a local server calls."""
        return {WEBHOOK_PODS: self.validate_pods, WEBHOOK_WORKLOADS: self.validate_workloads}

    async def validate_pods(self, *, warnings: list[str], **_: Any) -> None:
        """``validate-pods``: Pods on CREATE, and UPDATE of ``ephemeralcontainers``."""
        await self._validate(WEBHOOK_PODS, warnings)

    async def validate_workloads(self, *, warnings: list[str], **_: Any) -> None:
        """``validate-workloads``: the pod templates of Deployments, ReplicaSets, StatefulSets, ..."""
        await self._validate(WEBHOOK_WORKLOADS, warnings)

    async def _validate(self, webhook: str, warnings: list[str]) -> None:
        try:
            ctx = current_review()
        except InputError as e:
            raise kopf.AdmissionError(e.message(), code=CODE_INTERNAL) from e
        ctx.handled = True
        try:
            await self._review(ctx, webhook, warnings)
        except kopf.AdmissionError:
            raise
        except InputError as e:
            ctx.reason = str(Reason.REVIEW_INVALID)
            raise kopf.AdmissionError(f"{Reason.REVIEW_INVALID}: -: {e.detail}", code=CODE_INVALID) from e
        except Exception as e:  # never allow on a bug; say what kind of bug in the log, not the response
            log.exception("admission uid=%s failed", ctx.request.uid)
            ctx.reason = str(Reason.INTERNAL_ERROR)
            raise kopf.AdmissionError(
                f"{Reason.INTERNAL_ERROR}: -: {type(e).__name__}", code=CODE_INTERNAL
            ) from e

    async def _review(self, ctx: ReviewContext, webhook: str, warnings: list[str]) -> None:
        request = ctx.request
        if ctx.webhook != webhook or request.resource not in WEBHOOK_RESOURCES[webhook]:
            raise InputError(Reason.REVIEW_INVALID, f"/{webhook} does not review {request.resource}")
        if not self.state.loaded:
            # Every review is denied until loading completes, whatever it holds.
            try:
                ctx.images = tuple(images_to_verify(request))
            except InputError:
                ctx.images = ()
            ctx.reason = str(Reason.POLICIES_NOT_LOADED)
            raise kopf.AdmissionError(_not_loaded_message(ctx.images), code=CODE_NOT_LOADED)
        images = images_to_verify(request)
        ctx.images = tuple(images)
        if not images:
            ctx.reason = NO_IMAGES_REASON
            return
        if request.new_object is None:  # parse_review guarantees one for CREATE and UPDATE
            raise InputError(Reason.REVIEW_INVALID, "request.object is missing")
        decision = await self._decide(images, request.new_object, _namespace(request))
        ctx.decision = decision
        # Tag-only references, warn-mode policies and signatures without a tlog entry: every
        # verdict's warnings, in image order (the engine gathers them, signers' included).
        for verdict in decision.verdicts:
            warnings.extend(w if verdict.image in w else f"{verdict.image}: {w}" for w in verdict.warnings)
        if decision.allowed:
            ctx.reason = str(decision.verdicts[0].reason) if decision.verdicts else NO_IMAGES_REASON
            return
        denials = decision.denials
        ctx.reason = str(denials[0].reason)
        raise kopf.AdmissionError(bound_message([v.message() for v in denials]), code=CODE_DENIED)

    async def _decide(self, images: list[str], obj: Mapping[str, object], namespace: str | None) -> Decision:
        """Read the pull credentials and decide, all within one deadline; past it every image is denied."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.decision_timeout):
                keychain = await self.credentials.keychain_for(obj, namespace)
                call = functools.partial(
                    self.state.engine.decide_images, images, namespace=namespace, keychain=keychain
                )
                return await loop.run_in_executor(self._executor, call)
        except TimeoutError:
            log.warning("no decision for %s within %.1fs: denied", images, self.decision_timeout)
            return _timeout_verdicts(images, self.decision_timeout)


# --- the operator side: indexes, status, readiness


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
