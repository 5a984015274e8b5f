"""The kopf admission handlers: ``validate-pods`` and ``validate-workloads``.

**Admission.** :class:`Admission` decides one review in a worker thread, under a deadline. The
images to verify are all of the object's on CREATE and only the new ones on UPDATE (an ephemeral
container added by ``kubectl debug``, a changed image): an image already running was verified when
it was admitted, and an UPDATE that adds none (labels, scaling) needs no registry round trip. A
denial lists every failing image as ``Reason: image: detail``, one per line.

The operator side (indexes, status, readiness) is :mod:`controller.admission.operator`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import kopf

from controller.admission.credentials import CredentialResolver
from controller.admission.review import AdmissionRequest, bound_message
from controller.admission.state import PolicyState
from controller.admission.webhook import (
    NO_IMAGES_REASON,
    WEBHOOK_PODS,
    WEBHOOK_RESOURCES,
    WEBHOOK_WORKLOADS,
    ReviewContext,
    WebhookHandler,
    current_review,
)
from controller.errors import InputError, Reason
from controller.model import Decision, ImageVerdict
from controller.workload import images_of

log = logging.getLogger(__name__)

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
