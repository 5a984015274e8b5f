"""The kopf admission handlers (``validate-pods``, ``validate-workloads``) and the fast path beside them.

**One answer, two doors.** :meth:`Admission.answer_now` decides a review on the event loop when it
can without waiting: every image's verdict is cached (:meth:`Engine.cached_decision`), or nothing needs
deciding, or the policies are not loaded, or the controller is past capacity (then the review is shed
at once with ``Overloaded``, HTTP 429, transient: kube-apiserver's caller retries, and no queue builds
up until everything times out). The webhook server asks it first, for every review, and answers
without kopf's machinery when it can. Otherwise the review goes through kopf to the
``@kopf.on.validate`` handlers here, which ask :meth:`Admission.answer_now` once more and then
:meth:`Engine.decide` within what is left of the review's deadline. Both doors build the answer
with the same :meth:`Admission.conclude`, so they cannot disagree.

The images to verify are all of the object's on CREATE and only the new ones on UPDATE (an ephemeral
container added by ``kubectl debug``, a changed image): an image already running was verified when
it was admitted, and an UPDATE that adds none (labels, scaling) needs no registry round trip. A
denial lists every failing image as ``Reason: image: detail``, one per line.

The operator side (indexes, status, readiness) is :mod:`controller.admission.operator`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import kopf

from controller.admission.credentials import CredentialResolver
from controller.admission.exceptions import object_labels  # issue 8
from controller.admission.review import AdmissionRequest, bound_message
from controller.admission.state import PolicyState
from controller.admission.webhook import (
    NO_IMAGES_REASON,
    WEBHOOK_PODS,
    WEBHOOK_RESOURCES,
    WEBHOOK_WORKLOADS,
    Answer,
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
CODE_OVERLOADED: Final = 429
CODE_NOT_LOADED: Final = 503
CODE_INTERNAL: Final = 500
LAG_SHED_SECONDS: Final = 1.0
"""Event-loop lag past which new uncached reviews are shed: answers are already queueing."""


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


def _invalid(detail: str) -> Answer:
    return Answer(False, f"{Reason.REVIEW_INVALID}: -: {detail}", CODE_INVALID, str(Reason.REVIEW_INVALID))


def _overloaded(images: Iterable[str], why: str) -> str:
    detail = f"the controller is past capacity ({why}); retry shortly"
    return bound_message([f"{Reason.OVERLOADED}: {image}: {detail}" for image in images])


def check_route(ctx: ReviewContext, webhook: str) -> None:
    """Raise :class:`InputError` (``ReviewInvalid``) unless the review came to ``webhook`` for one of its
    resources."""
    request = ctx.request
    if ctx.webhook != webhook or request.resource not in WEBHOOK_RESOURCES[webhook]:
        raise InputError(Reason.REVIEW_INVALID, f"/{webhook} does not review {request.resource}")


async def answer_kopf_review(
    webhook: str,
    warnings: list[str],
    review: Callable[[ReviewContext, str], Awaitable[Answer]],
    logger: logging.Logger,
    what: str,
) -> tuple[ReviewContext, Answer]:
    """The body of a kopf admission handler (validating or mutating): ``review`` the review in flight,
    record its reason and warnings, and raise :class:`kopf.AdmissionError` unless it is allowed.

    Fails closed: an :class:`InputError` is ``ReviewInvalid``, any other exception ``InternalError``
    (its type in the response, the traceback logged to ``logger`` as ``<what> uid=... failed``).
    Returns the allowed answer with its context (the mutating webhook hands on the patch).
    """
    try:
        ctx = current_review()
    except InputError as e:
        raise kopf.AdmissionError(e.message(), code=CODE_INTERNAL) from e
    ctx.handled = True
    try:
        answer = await review(ctx, webhook)
    except InputError as e:
        answer = _invalid(e.detail)
    except Exception as e:  # never allow on a bug; say what kind of bug in the log, not the response
        logger.exception("%s uid=%s failed", what, ctx.request.uid)
        answer = Answer(
            False,
            f"{Reason.INTERNAL_ERROR}: -: {type(e).__name__}",
            CODE_INTERNAL,
            str(Reason.INTERNAL_ERROR),
        )
    ctx.reason = answer.reason
    warnings.extend(answer.warnings)
    if not answer.allowed:
        raise kopf.AdmissionError(answer.message, code=answer.code)
    return ctx, answer


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
        self.max_concurrent = max_concurrent
        self.in_flight = 0  # reviews waiting on slow work (uncached images) right now
        self.loop_lag = 0.0  # seconds, measured by the server's monitor

    @property
    def handlers(self) -> dict[str, WebhookHandler]:
        """The webhook handlers by id: what kopf registers, and what a local server calls."""
        return {WEBHOOK_PODS: self.validate_pods, WEBHOOK_WORKLOADS: self.validate_workloads}

    async def watch_loop(self, interval: float = 0.1) -> None:
        """Measure how late the event loop runs (until cancelled): the lag new reviews would wait."""
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + interval
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - expected)
            # rise at once, decay slowly: one quiet tick must not reopen the door to a backlog
            self.loop_lag = lag if lag > self.loop_lag else self.loop_lag * 0.5 + lag * 0.5

    def overload(self) -> str | None:
        """Why new slow work would be refused now, or None. Readiness reports the same."""
        if self.in_flight >= self.max_concurrent:
            return f"{self.in_flight} reviews already wait on registries"
        if self.loop_lag >= LAG_SHED_SECONDS:
            return f"answers are {self.loop_lag:.1f}s behind"
        return None

    # --- the answer, on the event loop, without waiting

    def answer_now(self, ctx: ReviewContext) -> Answer | None:
        """The answer if it needs no waiting (cached, nothing to verify, not loaded, shed); else None."""
        request = ctx.request
        if ctx.webhook not in (WEBHOOK_PODS, WEBHOOK_WORKLOADS):
            return None  # not an image review (validate-policies): kopf's handler answers it
        if not self.state.loaded:
            # Every review is denied until loading completes, whatever it holds.
            try:
                ctx.images = tuple(images_to_verify(request))
            except InputError:
                ctx.images = ()
            return Answer(
                False, _not_loaded_message(ctx.images), CODE_NOT_LOADED, str(Reason.POLICIES_NOT_LOADED)
            )
        try:
            images = images_to_verify(request)
        except InputError as e:
            return _invalid(e.detail)
        ctx.images = tuple(images)
        if not images:
            return Answer(True, None, None, NO_IMAGES_REASON)
        return self.cached_or_shed(ctx, images, self.conclude)

    def cached_or_shed(
        self, ctx: ReviewContext, images: list[str], conclude: Callable[[ReviewContext, Decision], Answer]
    ) -> Answer | None:
        """``conclude`` on the cached decision of ``images``; else ``Overloaded`` when past capacity;
        else None (the review must wait). The tail of both webhooks' fast paths."""
        decision = self.state.engine.cached_decision(images, _namespace(ctx.request))
        if decision is not None:
            return conclude(ctx, decision)
        why = self.overload()
        if why is not None:
            return Answer(False, _overloaded(images, why), CODE_OVERLOADED, str(Reason.OVERLOADED))
        return None

    def conclude(self, ctx: ReviewContext, decision: Decision) -> Answer:
        """The answer for a decision: allowed with its warnings, or every failing image, one a line."""
        # issue 8: an active ImagePolicyException of the namespace may admit a denied image
        decision = self.state.engine.grant_exceptions(
            decision, _namespace(ctx.request), object_labels(ctx.request.new_object)
        )
        ctx.decision = decision
        # Tag-only references, warn-mode policies and signatures without a tlog entry: every
        # verdict's warnings, in image order (the engine gathers them, signers' included).
        warnings = tuple(
            w if verdict.image in w else f"{verdict.image}: {w}"
            for verdict in decision.verdicts
            for w in verdict.warnings
        )
        if decision.allowed:
            reason = str(decision.verdicts[0].reason) if decision.verdicts else NO_IMAGES_REASON
            return Answer(True, None, None, reason, warnings)
        denials = decision.denials
        return Answer(
            False,
            bound_message([v.message() for v in denials]),
            CODE_DENIED,
            str(denials[0].reason),
            warnings,
        )

    # --- the kopf handlers: the same answer, after waiting for the engine when it must

    async def validate_pods(self, *, warnings: list[str], **_: Any) -> None:
        """``validate-pods``: Pods on CREATE, and UPDATE of ``ephemeralcontainers``."""
        await self._validate(WEBHOOK_PODS, warnings)

    async def validate_workloads(self, *, warnings: list[str], **_: Any) -> None:
        """``validate-workloads``: the pod templates of Deployments, ReplicaSets, StatefulSets, ..."""
        await self._validate(WEBHOOK_WORKLOADS, warnings)

    async def _validate(self, webhook: str, warnings: list[str]) -> None:
        await answer_kopf_review(webhook, warnings, self._review, log, "admission")

    async def _review(self, ctx: ReviewContext, webhook: str) -> Answer:
        request = ctx.request
        check_route(ctx, webhook)
        answer = self.answer_now(ctx)
        if answer is not None:
            return answer
        if request.new_object is None:  # parse_review guarantees one for CREATE and UPDATE
            raise InputError(Reason.REVIEW_INVALID, "request.object is missing")
        self.in_flight += 1
        try:
            decision = await self._decide(ctx, list(ctx.images), request.new_object, _namespace(request))
        finally:
            self.in_flight -= 1
        return self.conclude(ctx, decision)

    async def decide_review(self, ctx: ReviewContext, images: list[str]) -> Decision:
        """Decide ``images`` of the review in flight as :meth:`_review` does (pull credentials, the
        review's deadline, counted in flight): what the mutating webhook shares with this one."""
        request = ctx.request
        if request.new_object is None:
            raise InputError(Reason.REVIEW_INVALID, "request.object is missing")
        self.in_flight += 1
        try:
            return await self._decide(ctx, images, request.new_object, _namespace(request))
        finally:
            self.in_flight -= 1

    async def _decide(
        self, ctx: ReviewContext, images: list[str], obj: Mapping[str, object], namespace: str | None
    ) -> Decision:
        """Read the pull credentials and decide, all within the review's deadline."""
        deadline = ctx.started + self.decision_timeout
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                keychain = await self.credentials.keychain_for(obj, namespace)
        except TimeoutError:
            taken = time.monotonic() - ctx.started
            detail = f"no decision after {taken:.1f}s: reading pull secrets took too long"
            verdicts = tuple(
                ImageVerdict(i, False, Reason.LIMIT_EXCEEDED, detail, transient=True) for i in images
            )
            return Decision(allowed=False, verdicts=verdicts)
        return await self.state.engine.decide(
            images, namespace=namespace, keychain=keychain, timeout=self.decision_timeout, started=ctx.started
        )
