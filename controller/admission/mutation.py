"""The mutating webhooks ``mutate-pods`` and ``mutate-workloads``: verified tags pinned to their digest.

A second admission handler over the same :class:`~controller.engine.Engine` verdicts, not a second
decision path. The Pod's images are decided exactly as ``validate-pods`` decides them (the same cache:
a tag is resolved once), and every image allowed at a digest is rewritten to ``image@digest``
(:mod:`controller.admission.pinning` builds the patch). kube-apiserver runs mutating webhooks before
validating ones, so ``validate-pods`` then sees the pinned Pod and verifies that exact digest; the pinned
references are decided here too, so that review is a cached answer.

**It never denies for a verification failure**: a denied image is left as written, and the validating
webhook denies it with its reason. **It fails closed on its own failures**: not loaded, overloaded, an
unreadable review, a bug, or an image it could not decide in time (a transient verdict) is a denial,
since allowing would let an unpinned tag through should the validating webhook succeed a moment later.

A cached decision is answered on the server's own loop (:meth:`Pinning.answer_now`, the fast path);
anything else goes through kopf's ``@kopf.on.mutate`` handlers, whose patch travels back in the
review context (the server writes the JSON patch itself).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from controller.admission.exceptions import object_labels  # issue 8
from controller.admission.handlers import (
    CODE_INTERNAL,
    CODE_NOT_LOADED,
    Admission,
    _invalid,
    _namespace,
    _not_loaded_message,
    answer_kopf_review,
    check_route,
    images_to_verify,
)
from controller.admission.pinning import (
    ANNOTATION,
    PinMode,
    VerifiedImage,
    build_patch,
    carries_record,
    effective_mode,
    encode_record,
    image_sites,
    merged_record,
    pinned,
    pins_at_least,
    record_key,
    verified_entry,
)
from controller.admission.review import bound_message
from controller.admission.webhook import (
    MUTATING_WEBHOOKS,
    NO_IMAGES_REASON,
    WEBHOOK_PIN_PODS,
    WEBHOOK_PIN_WORKLOADS,
    Answer,
    ReviewContext,
    WebhookHandler,
)
from controller.errors import InputError, Reason
from controller.model import Decision, ImageVerdict
from controller.policy import CompiledPolicy

log = logging.getLogger(__name__)

PINNED_REASON: Final = "Pinned"  # at least one image rewritten to its digest
UNCHANGED_REASON: Final = "NothingToPin"  # every image already pinned, denied, or not to be pinned
PINNING_OFF_REASON: Final = "PinningOff"  # no setting or policy asks for pinning here
MAX_CACHED_RECORDS: Final = 256  # encoded records kept for reuse (the lot is dropped when full)


def _wants(webhook: str) -> PinMode:
    return "workloads" if webhook == WEBHOOK_PIN_WORKLOADS else "pods"


def _undecided(decision: Decision) -> tuple[ImageVerdict, ...]:
    """Verdicts that are no decision (a deadline, an unreachable registry, a bug): never allow past them."""
    return tuple(v for v in decision.verdicts if v.transient or v.reason == Reason.INTERNAL_ERROR)


class Pinning:
    """Answers the mutating reviews with the engine and admission state of :class:`Admission`."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self._modes_of: tuple[object, Mapping[str, PinMode | None]] = (None, {})
        self._records: dict[tuple[tuple[str, VerifiedImage], ...], tuple[str | None, int]] = {}

    @property
    def handlers(self) -> dict[str, WebhookHandler]:
        return {WEBHOOK_PIN_PODS: self.mutate_pods, WEBHOOK_PIN_WORKLOADS: self.mutate_workloads}

    # --- who asks for pinning

    def _policy_modes(self) -> Mapping[str, PinMode | None]:
        """Each loaded policy's own ``spec.pinning`` by label (recomputed when the policy set changes)."""
        policies = self.admission.state.engine.policies
        key, modes = self._modes_of
        if key is not policies:  # the engine swaps the set whole: identity says it changed
            # an invalid policy denies its images: it never asks for pinning
            modes = {p.label: p.pinning if isinstance(p, CompiledPolicy) else None for p in policies}
            self._modes_of = (policies, modes)
        return modes

    def _mode_for(self, verdict: ImageVerdict) -> PinMode:
        modes = self._policy_modes()
        setting = self.admission.state.engine.settings.pinning
        cluster = [modes.get(label) for label in verdict.policies if label.startswith("ClusterImagePolicy ")]
        namespaced = [modes.get(label) for label in verdict.policies if label.startswith("ImagePolicy ")]
        return effective_mode(setting, cluster, namespaced)

    def _anyone_wants(self, webhook: str) -> bool:
        wanted = _wants(webhook)
        if pins_at_least(self.admission.state.engine.settings.pinning, wanted):
            return True
        return any(mode is not None and pins_at_least(mode, wanted) for mode in self._policy_modes().values())

    def _encoded(self, entries: Mapping[str, VerifiedImage]) -> tuple[str | None, int]:
        """:func:`encode_record`, memoised: the same images and signers (warm pods) make the same text."""
        key = tuple(sorted(entries.items()))
        hit = self._records.get(key)
        if hit is None:
            if len(self._records) >= MAX_CACHED_RECORDS:
                self._records.clear()
            hit = self._records[key] = encode_record(entries)
        return hit

    # --- the answer, on the event loop, without waiting

    def answer_now(self, ctx: ReviewContext) -> Answer | None:
        """The answer if it needs no waiting (cached, nothing to pin, not loaded, shed); else None."""
        if ctx.webhook not in MUTATING_WEBHOOKS:
            return None
        request = ctx.request
        if not self.admission.state.loaded:
            return Answer(False, _not_loaded_message(()), CODE_NOT_LOADED, str(Reason.POLICIES_NOT_LOADED))
        if not self._anyone_wants(ctx.webhook):
            return Answer(True, None, None, PINNING_OFF_REASON)
        try:
            images = images_to_verify(request)
        except InputError as e:
            return _invalid(e.detail)
        ctx.images = tuple(images)
        if not images:
            return self.conclude(ctx, Decision(allowed=True, verdicts=()))
        return self.admission.cached_or_shed(ctx, images, self.conclude)

    def conclude(self, ctx: ReviewContext, decision: Decision) -> Answer:
        """Allowed, with the patch that pins every image allowed at a digest, and the record; or a denial
        when an image could not be decided (see :func:`_undecided`)."""
        # issue 8: an active ImagePolicyException admits what it covers, as in Admission.conclude (even a
        # transient failure: its registry down is the break-glass case); such an image is left as written
        decision = self.admission.state.engine.grant_exceptions(
            decision, _namespace(ctx.request), object_labels(ctx.request.new_object)
        )
        ctx.decision = decision
        undecided = _undecided(decision)
        if undecided:
            first = undecided[0]
            code = CODE_INTERNAL if first.reason == Reason.INTERNAL_ERROR else 503
            return Answer(False, bound_message([v.message() for v in undecided]), code, str(first.reason))
        request = ctx.request
        obj = request.new_object
        if obj is None:
            raise InputError(Reason.REVIEW_INVALID, "request.object is missing")
        wanted = _wants(ctx.webhook)
        pins: dict[str, str] = {}
        fresh: dict[str, VerifiedImage] = {}
        for verdict in decision.verdicts:
            if verdict.exception is not None:
                continue  # issue 8: admitted by an exception, not verified: never pinned nor recorded
            target = (
                pinned(verdict.image, verdict) if pins_at_least(self._mode_for(verdict), wanted) else None
            )
            if target is not None:
                pins[verdict.image] = target
            entry = verified_entry(verdict)
            final = target or verdict.image
            if entry is not None and final.endswith(f"@{entry.digest}"):
                fresh[record_key(final)] = entry
        manage_record = ctx.webhook == WEBHOOK_PIN_PODS and request.sub_resource is None
        record, omitted = None, 0
        sites = image_sites(obj)  # once: the record and the patch both walk them
        if manage_record:
            old = request.old_object if request.operation == "UPDATE" else None
            if pins or carries_record(obj) or carries_record(old):  # else none: pinning's "The record"
                final_images = [pins.get(site.image, site.image) for site in sites]
                record, omitted = self._encoded(merged_record(final_images, fresh, old))
        patch = build_patch(obj, pins, record=record, manage_record=manage_record, sites=sites)
        warnings = (f"{ANNOTATION}: {omitted} images not recorded (the record is full)",) if omitted else ()
        reason = PINNED_REASON if pins else (UNCHANGED_REASON if decision.verdicts else NO_IMAGES_REASON)
        return Answer(True, None, None, reason, warnings, tuple(patch))

    # --- the kopf handlers: the same answer, after waiting for the engine when it must

    async def mutate_pods(self, *, warnings: list[str], **_: Any) -> None:
        """``mutate-pods``: Pods on CREATE and UPDATE, and ``ephemeralcontainers`` (kubectl debug)."""
        await self._mutate(WEBHOOK_PIN_PODS, warnings)

    async def mutate_workloads(self, *, warnings: list[str], **_: Any) -> None:
        """``mutate-workloads``: pod templates, only where pinning is ``workloads``."""
        await self._mutate(WEBHOOK_PIN_WORKLOADS, warnings)

    async def _mutate(self, webhook: str, warnings: list[str]) -> None:
        ctx, answer = await answer_kopf_review(webhook, warnings, self._review, log, "pinning")
        ctx.patch = answer.patch

    async def _review(self, ctx: ReviewContext, webhook: str) -> Answer:
        check_route(ctx, webhook)
        answer = self.answer_now(ctx)
        if answer is not None:
            return answer
        decision = await self.admission.decide_review(ctx, list(ctx.images))
        answer = self.conclude(ctx, decision)
        targets = [op["value"] for op in answer.patch if op.get("op") == "replace"]
        if answer.allowed and targets:
            # The validating webhook reviews these next: decide them now (the evidence is at hand), so
            # that review is a cached answer on the fast path.
            await self.admission.decide_review(ctx, [str(t) for t in targets if isinstance(t, str)])
        return answer
