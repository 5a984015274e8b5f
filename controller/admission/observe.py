"""One structured log line and the metrics for every answered review, at a cost the warm path can pay.

The line is the same for every review: uid, kind, object, operation, subresource, dry run, outcome,
reason, images, digests, signers, policies and duration, at INFO on ``controller.admission.decision``.
A cached verdict is logged from fragments serialised once per verdict object (its digest, signers and
policies), so a review of eight cached images does not re-encode eight signers' JSON; when INFO is
off for that logger, no JSON is built at all. Counters take their label values positionally.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from controller.admission.metrics import AdmissionMetrics
from controller.model import ImageVerdict

if TYPE_CHECKING:
    from controller.admission.webhook import ReviewContext

log = logging.getLogger("controller.admission.decision")

MAX_CACHED_FRAGMENTS: Final = 8192
"""Verdicts whose serialised fragments are kept; past it the table starts again."""

_Fragments = tuple[ImageVerdict, str | None, tuple[str, ...], tuple[str, ...]]


def _object_name(obj: Mapping[str, object] | None) -> str:
    meta = obj.get("metadata") if obj is not None else None
    if isinstance(meta, Mapping):
        name = meta.get("name") or meta.get("generateName")
        if isinstance(name, str):
            return name
    return "-"


class ReviewObserver:
    """Logs one structured line and updates the metrics for every answered review."""

    def __init__(self, metrics: AdmissionMetrics) -> None:
        self.metrics = metrics
        self._fragments: dict[int, _Fragments] = {}
        self._texts: dict[tuple[object, ...], tuple[tuple[ImageVerdict, ...], tuple[str, str, str, str]]] = {}

    def _of(self, verdict: ImageVerdict) -> _Fragments:
        """``(verdict, "image": "digest" item, signer objects, policies)`` as JSON text, made once."""
        hit = self._fragments.get(id(verdict))
        if hit is not None and hit[0] is verdict:
            return hit
        digest = (
            None
            if verdict.digest is None
            else f"{json.dumps(verdict.image)}: {json.dumps(str(verdict.digest))}"
        )
        signers = tuple(
            json.dumps(
                {"image": verdict.image, "subject": s.subject, "issuer": s.issuer, "logIndex": s.log_index}
            )
            for s in verdict.signers
        )
        made: _Fragments = (verdict, digest, signers, verdict.policies)
        if len(self._fragments) >= MAX_CACHED_FRAGMENTS:
            self._fragments.clear()
        self._fragments[id(verdict)] = made
        return made

    def record(
        self,
        *,
        kind: str,
        allowed: bool,
        reason: str,
        duration: float,
        ctx: ReviewContext | None = None,
        uid: str | None = None,
    ) -> None:
        self.metrics.decisions.inc_values((kind or "-", "true" if allowed else "false", reason))
        self.metrics.duration.observe(duration)
        if not log.isEnabledFor(logging.INFO):
            return
        request = ctx.request if ctx is not None else None
        images, digests, signers, policies = self._evidence_text(ctx)
        log.info(
            "admission uid=%s kind=%s object=%s/%s operation=%s subresource=%s dry_run=%s allowed=%s "
            "reason=%s images=%s digests=%s signers=%s policies=%s duration_ms=%.1f%s",
            request.uid if request is not None else (uid or "-"),
            kind or "-",
            (request.namespace or "-") if request is not None else "-",
            (request.name or _object_name(request.new_object)) if request is not None else "-",
            request.operation if request is not None else "-",
            (request.sub_resource or "-") if request is not None else "-",
            str(request.dry_run).lower() if request is not None else "false",
            str(allowed).lower(),
            reason,
            images,
            digests,
            signers,
            policies,
            duration * 1000,
            _exceptions_text(ctx),  # issue 8
        )

    def _evidence_text(self, ctx: ReviewContext | None) -> tuple[str, str, str, str]:
        """The images, digests, signers and policies of a review as JSON text; for a review whose
        verdicts all came from the cache, made once per (images, verdict objects) and reused."""
        if ctx is None:
            return "[]", "{}", "[]", "[]"
        verdicts = ctx.decision.verdicts if ctx.decision is not None else ()
        key = (ctx.images, tuple(id(v) for v in verdicts))
        hit = self._texts.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], verdicts, strict=True)):
            return hit[1]
        fragments = [self._of(v) for v in verdicts]
        digests = sorted((f[0].image, f[1]) for f in fragments if f[1] is not None)
        text = (
            json.dumps(list(ctx.images)),
            "{" + ", ".join(item for _, item in digests) + "}",
            "[" + ", ".join(s for f in fragments for s in f[2]) + "]",
            json.dumps(sorted({p for f in fragments for p in f[3]})),
        )
        if len(self._texts) >= MAX_CACHED_FRAGMENTS:
            self._texts.clear()
        self._texts[key] = (verdicts, text)
        return text


# --- issue 8: each use of an ImagePolicyException, on the decision's own line


def _exceptions_text(ctx: ReviewContext | None) -> str:
    """`` exceptions=[{...}]`` naming every exception this decision used (its namespace, name, creator,
    expiry, and the denial it overrode), or ``""`` when none did."""
    verdicts = ctx.decision.verdicts if ctx is not None and ctx.decision is not None else ()
    uses = [
        {
            "image": v.image,
            "namespace": v.exception.namespace,
            "name": v.exception.name,
            "creator": v.exception.creator,
            "expires": v.exception.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "denied": str(v.exception.denied),
        }
        for v in verdicts
        if v.exception is not None
    ]
    return f" exceptions={json.dumps(uses)}" if uses else ""
