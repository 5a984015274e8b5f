"""Background re-verification: every image that runs now, judged again as admission would judge it.

**What.** Each cycle lists Pods (running or pending) and workloads (Deployment, StatefulSet,
DaemonSet, ReplicaSet with replicas, Job, CronJob) across the cluster in bounded pages
(:class:`~controller.admission.posture_kube.ObjectLister`), skipping the namespaces the webhook never
sees (the controller's own, ``exclude_namespaces``, and any labelled ``imprimatur.dev/exclude=true``).
Only (workload, images) pairs are kept, bounded by ``max_objects`` per kind; nothing outlives a cycle
but the outcomes :class:`~controller.posture.FlipTracker` needs and the report contents last written.

**When.** Every ``period_seconds``, and ``debounce_seconds`` after a policy or trust root changed
(:meth:`BackgroundScan.request`, called by the kopf event handlers :mod:`operator` registers).
Tests and benchmarks call :meth:`BackgroundScan.run_cycle` directly.

**At a lower priority than admission.** The same :class:`~controller.engine.Engine`: a cached verdict
(:meth:`Engine.cached_decision`) is a dictionary lookup with no worker and costs nothing. An uncached
one goes through :meth:`Engine.decide`, at most ``max_concurrent`` at once (so the loop never holds
more than that many images' worth of the lanes' slots, whatever admission needs), within the cycle's
budget: ``max_uncached`` in all and ``max_uncached_per_namespace``, visited round-robin across
namespaces (:func:`~controller.posture.plan_cycle`), and ``cycle_seconds`` of wall time. What the
budget leaves undecided is reported ``error`` / ``LimitExceeded`` and comes first next cycle only if
it is still uncached; one tenant's thousands of images cannot starve another's re-verification.

**Out.** Reports per namespace (PolicyReport and/or OpenReports Report), written only when their
content changed; a Warning Event on a workload when an image flips from pass to fail (once per
flip); the ``imprimatur_running_images`` gauges and the cycle's duration, time and count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from controller.admission.metrics import AdmissionMetrics
from controller.admission.posture_kube import WORKLOAD_KINDS, ObjectLister, PostureWriter, WorkloadKind
from controller.admission.state import PolicyState
from controller.config import BackgroundSettings
from controller.errors import ImprimaturError, InputError
from controller.model import ImageVerdict
from controller.posture import (
    REPORT_FORMATS,
    Finding,
    FlipTracker,
    PlanLimits,
    ReportFormat,
    ReportLimits,
    WorkloadImages,
    WorkloadRef,
    content_of,
    finding_of,
    gauge_counts,
    plan_cycle,
    report_documents,
    unchecked,
)
from controller.workload import images_of

log = logging.getLogger(__name__)

EXCLUDE_LABEL: Final = "imprimatur.dev/exclude"
MAX_EVENTS_PER_CYCLE: Final = 200
MAX_NAME: Final = 253
YIELD_EVERY: Final = 32
"""Items (objects, images, findings) between two yields to the event loop: a cycle runs in slices of
well under a millisecond, so an admission review never waits behind it for long."""


@dataclass(slots=True)
class CycleResult:
    """What one cycle did."""

    started: datetime
    seconds: float = 0.0
    objects: int = 0
    workloads: int = 0
    pairs: int = 0  # distinct (namespace, image)
    cached: int = 0
    decided: int = 0  # uncached, decided now
    unchecked: int = 0  # left undecided by the budget
    complete: bool = True  # every object listed (no max_objects cut, no list failure)
    findings: list[Finding] = field(default_factory=list)
    flips: int = 0
    events: int = 0
    reports_written: int = 0
    skipped: str = ""  # why the cycle did nothing


def _ref(kind: WorkloadKind, obj: Mapping[str, object]) -> WorkloadRef | None:
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    namespace, name, uid = metadata.get("namespace"), metadata.get("name"), metadata.get("uid")
    if not isinstance(namespace, str) or not isinstance(name, str) or not namespace or not name:
        return None
    return WorkloadRef(
        namespace[:MAX_NAME],
        kind.kind,
        name[:MAX_NAME],
        kind.api_version,
        uid[:64] if isinstance(uid, str) else "",
    )


def _inactive(kind: WorkloadKind, obj: Mapping[str, object]) -> bool:
    """A finished Pod, or a ReplicaSet scaled to zero (an old rollout): nothing of it runs."""
    if kind.kind == "Pod":
        status = obj.get("status")
        return isinstance(status, Mapping) and status.get("phase") in ("Succeeded", "Failed")
    if kind.kind == "ReplicaSet":
        spec = obj.get("spec")
        return isinstance(spec, Mapping) and spec.get("replicas") == 0
    return False


class BackgroundScan:
    """The loop, its trigger, and one cycle."""

    def __init__(
        self,
        state: PolicyState,
        lister: ObjectLister,
        writer: PostureWriter,
        settings: BackgroundSettings,
        metrics: AdmissionMetrics | None = None,
        *,
        controller_namespace: str | None = None,
        namespace_labels: Callable[[], Mapping[str, Mapping[str, str]]] = dict,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        kinds: tuple[WorkloadKind, ...] = WORKLOAD_KINDS,
    ) -> None:
        self.state = state
        self.lister = lister
        self.writer = writer
        self.settings = settings
        self.metrics = metrics
        self.controller_namespace = controller_namespace
        self.namespace_labels = namespace_labels
        self.clock = clock
        self.monotonic = monotonic
        self.kinds = kinds
        self.flips = FlipTracker()
        self._written: dict[tuple[str, str], object] = {}  # (plural, namespace) -> content last written
        self._gauge_keys: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._cycle_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.cycles = 0
        self.last: CycleResult | None = None

    # --- when

    def request(self) -> None:
        """Run a cycle soon (after ``debounce_seconds``): policies or trust roots changed."""
        self._wake.set()

    async def on_change(self, **_: Any) -> None:
        """kopf event handler for policies and trust roots."""
        if self.state.loaded:
            self.request()

    async def run_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.period_seconds):
                    await self._wake.wait()
                    await asyncio.sleep(self.settings.debounce_seconds)  # let a burst of edits settle
            self._wake.clear()
            try:
                await self.run_cycle()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background cycle failed")

    async def on_startup(self, **_: Any) -> None:
        if self._task is None and self.settings.enabled:
            self._task = asyncio.create_task(self.run_forever(), name="imprimatur-background")
            self.request()  # a first cycle once loaded (skipped, and retried at the period, if not)

    async def on_cleanup(self, **_: Any) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- one cycle

    def _excluded(self, namespace: str, labels: Mapping[str, Mapping[str, str]]) -> bool:
        if namespace == self.controller_namespace or namespace in self.settings.exclude_namespaces:
            return True
        return labels.get(namespace, {}).get(EXCLUDE_LABEL) == "true"

    async def _collect(self, result: CycleResult) -> list[WorkloadImages]:
        labels = self.namespace_labels()
        s = self.settings
        out: list[WorkloadImages] = []
        for kind in self.kinds:
            token: str | None = None
            seen = 0
            while True:
                try:
                    page = await self.lister.list_page(kind, limit=s.page_size, token=token)
                except ImprimaturError as e:
                    log.warning("background: listing %s failed: %s", kind.plural, e.message())
                    result.complete = False
                    break
                for i, obj in enumerate(page.items):
                    if i % YIELD_EVERY == YIELD_EVERY - 1:
                        await asyncio.sleep(0)  # admission first
                    seen += 1
                    if seen > s.max_objects:
                        break
                    ref = _ref(kind, obj)
                    if ref is None or self._excluded(ref.namespace, labels) or _inactive(kind, obj):
                        continue
                    typed = {**obj, "apiVersion": kind.api_version, "kind": kind.kind}  # list items lack both
                    try:
                        images = tuple(dict.fromkeys(c.image for c in images_of(typed)))
                    except InputError as e:
                        log.debug("background: %s: %s", ref, e.detail)
                        continue
                    if images:
                        out.append(WorkloadImages(ref, images))
                result.objects += min(len(page.items), max(0, s.max_objects - (seen - len(page.items))))
                if seen > s.max_objects:
                    log.warning(
                        "background: more than %d %s: the rest wait for a later cycle",
                        s.max_objects,
                        kind.plural,
                    )
                    result.complete = False
                    break
                if page.token is None:
                    break
                token = page.token
        return out

    async def _decide(
        self, namespace: str, image: str, gate: asyncio.Semaphore, deadline: float
    ) -> ImageVerdict | str:
        async with gate:
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                return f"the cycle's time budget of {self.settings.cycle_seconds:g}s ran out"
            decision = await self.state.engine.decide(
                [image], namespace=namespace, timeout=min(remaining, self.settings.decision_timeout_seconds)
            )
            return decision.verdicts[0]

    async def run_cycle(self) -> CycleResult:
        """One cycle, now. Cycles never overlap: a second caller waits for the first."""
        async with self._cycle_lock:
            result = await self._cycle()
            self.cycles += 1
            self.last = result
            return result

    async def _cycle(self) -> CycleResult:
        s = self.settings
        result = CycleResult(started=self.clock())
        if not self.state.loaded:
            result.skipped = "policies and trust roots are not loaded yet"
            return result
        began = self.monotonic()
        deadline = began + s.cycle_seconds
        workloads = await self._collect(result)
        result.workloads = len(workloads)
        plan = plan_cycle(
            workloads,
            PlanLimits(s.max_images_per_namespace, s.max_uncached, s.max_uncached_per_namespace),
        )
        result.pairs = len(plan.order)
        engine = self.state.engine
        verdicts: dict[tuple[str, str], ImageVerdict | str] = dict(plan.over)
        gate = asyncio.Semaphore(s.max_concurrent)
        pending: dict[tuple[str, str], asyncio.Task[ImageVerdict | str]] = {}
        for i, (namespace, image) in enumerate(plan.order):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            cached = engine.cached_decision([image], namespace)
            if cached is not None:
                verdicts[(namespace, image)] = cached.verdicts[0]
                result.cached += 1
                continue
            why = plan.spend(namespace)
            if why is not None:
                verdicts[(namespace, image)] = why
                continue
            pending[(namespace, image)] = asyncio.ensure_future(
                self._decide(namespace, image, gate, deadline)
            )
        if pending:
            done, late = await asyncio.wait(pending.values(), timeout=max(0.0, deadline - self.monotonic()))
            for task in late:
                task.cancel()
            for key, task in pending.items():
                if task in done and not task.cancelled() and task.exception() is None:
                    verdicts[key] = task.result()
                    result.decided += isinstance(verdicts[key], ImageVerdict)
                else:
                    verdicts[key] = f"the cycle's time budget of {s.cycle_seconds:g}s ran out"
        findings: list[Finding] = []
        for i, item in enumerate(workloads):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            for image in item.images:
                verdict = verdicts.get((item.workload.namespace, image), "not planned")
                findings.append(
                    finding_of(item.workload, verdict)
                    if isinstance(verdict, ImageVerdict)
                    else unchecked(item.workload, image, verdict)
                )
        result.unchecked = sum(1 for v in verdicts.values() if isinstance(v, str))
        result.findings = findings
        await self._raise_events(findings, result)
        if result.complete:
            self.flips.retain((f.workload, f.image) for f in findings)
        await self._write_reports(findings, result)
        result.seconds = self.monotonic() - began
        self._publish(findings, result)
        log.info(
            "background cycle: %d objects, %d (namespace, image) pairs: %d cached, %d decided, %d left "
            "undecided; %d flips; %d reports written; %.2fs",
            result.objects,
            result.pairs,
            result.cached,
            result.decided,
            result.unchecked,
            result.flips,
            result.reports_written,
            result.seconds,
        )
        return result

    async def _raise_events(self, findings: list[Finding], result: CycleResult) -> None:
        flips = self.flips.observe(findings)
        result.flips = len(flips)
        now = self.clock()
        for flip in flips[:MAX_EVENTS_PER_CYCLE]:
            f = flip.finding
            message = f"{f.reason}: {f.image}: {f.detail} (it passed the previous check)"
            try:
                await self.writer.post_event(f.workload, f.reason, message, now)
                result.events += 1
            except ImprimaturError as e:
                log.warning("background: event on %s failed: %s", f.workload, e.message())
        if len(flips) > MAX_EVENTS_PER_CYCLE:
            log.warning(
                "background: %d flips; Events raised for the first %d", len(flips), MAX_EVENTS_PER_CYCLE
            )

    async def _formats(self) -> list[ReportFormat]:
        wanted = self.settings.report_format
        if wanted == "off":
            return []
        if wanted == "both":
            return ["wgpolicyk8s", "openreports"]
        if wanted in ("wgpolicyk8s", "openreports"):
            return [wanted]
        formats: list[ReportFormat] = []
        for fmt, (api_version, _, _) in REPORT_FORMATS.items():
            try:
                if await self.writer.served(api_version):
                    formats.append(fmt)
            except ImprimaturError as e:
                log.warning("background: discovery of %s failed: %s", api_version, e.message())
        return formats

    async def _write_reports(self, findings: list[Finding], result: CycleResult) -> None:
        limits = ReportLimits(self.settings.max_results)
        now = self.clock()
        for fmt in await self._formats():
            api_version, _, plural = REPORT_FORMATS[fmt]
            # a namespace whose workloads are all gone gets an empty report (only after a complete listing)
            gone = {ns for (p, ns) in self._written if p == plural} if result.complete else set()
            documents = report_documents(findings, now=now, report_format=fmt, limits=limits, also=gone)
            for namespace, document in documents.items():
                content = content_of(document)
                if self._written.get((plural, namespace)) == content:
                    continue
                try:
                    await self.writer.apply_report(plural, api_version, namespace, document)
                except ImprimaturError as e:
                    log.warning("background: writing %s %s failed: %s", plural, namespace, e.message())
                    continue
                self._written[(plural, namespace)] = content
                result.reports_written += 1

    def _publish(self, findings: list[Finding], result: CycleResult) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        counts = gauge_counts(findings)
        for key in self._gauge_keys - set(counts):
            metrics.running_images.set(0, verdict=key[0], reason=key[1])
        for (verdict, reason), n in counts.items():
            metrics.running_images.set(n, verdict=verdict, reason=reason)
        self._gauge_keys = set(counts)
        metrics.background_cycle_seconds.set(result.seconds)
        metrics.background_cycle_time.set(self.clock().timestamp())
        metrics.background_images_checked.set(result.cached + result.decided)


def build_background(
    state: PolicyState,
    metrics: AdmissionMetrics,
    settings: BackgroundSettings,
    *,
    loader_namespace: str | None,
    namespace_labels: Callable[[], Mapping[str, Mapping[str, str]]],
) -> BackgroundScan | None:
    """The loop over the in-cluster API (service account or kubeconfig), or None when disabled."""
    if not settings.enabled:
        return None
    from controller.admission.posture_kube import KubernetesPosture  # noqa: PLC0415 - only in a cluster

    kube = KubernetesPosture.from_environment()
    return BackgroundScan(
        state,
        kube,
        kube,
        settings,
        metrics,
        controller_namespace=loader_namespace,
        namespace_labels=namespace_labels,
    )
