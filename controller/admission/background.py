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

**Never in admission's way.** Everything the cycle does itself (listing, planning, findings, flips,
building and encoding reports) is *paced* (:mod:`~controller.admission.background_pace`): slices of
about 2 ms that fill at most ``share`` (2%) of the wall time, and between items it steps aside while
the webhook's thread is running, so the fast path on that thread rarely finds the interpreter lock
taken. A cycle of 1,000 Pods takes about 50 ms of CPU and 2-4 s of wall time.

**Out.** Reports per namespace (PolicyReport and/or OpenReports Report) and one cluster-scoped
report (ClusterPolicyReport / ClusterReport: each ClusterImagePolicy and TrustRoot, ready or why
not), written only when their content changed; a Warning Event on a workload when an image flips
from pass to fail (once per flip); the ``imprimatur_running_images`` gauges and the cycle's
duration, time and count.

**After a restart.** The first cycle reads the reports back (:meth:`ReportWriter.read_back`): the
flip memory is seeded from them, so a pass before the restart and a fail after it still raise the
Event, and a namespace emptied while the controller was down still gets its report emptied.
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

from controller.admission.background_listing import EXCLUDE_LABEL, collect
from controller.admission.background_pace import PaceLimits, Pacer, PaceStats, ThreadActivity
from controller.admission.background_reports import ReportWriter
from controller.admission.metrics import AdmissionMetrics
from controller.admission.posture_kube import WORKLOAD_KINDS, ObjectLister, PostureWriter, WorkloadKind
from controller.admission.state import PolicyState
from controller.config import BackgroundSettings
from controller.errors import ImprimaturError
from controller.model import ImageVerdict
from controller.posture import (
    ClusterObjectStatus,
    CyclePlan,
    Finding,
    FlipTracker,
    PlanLimits,
    WorkloadImages,
    cluster_findings,
    finding_of,
    gauge_counts,
    plan_cycle,
    unchecked,
)

log = logging.getLogger(__name__)

MAX_EVENTS_PER_CYCLE: Final = 200
FLIP_CHUNK: Final = 64  # findings observed between two ticks


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
    cluster_findings: list[Finding] = field(default_factory=list)  # ClusterImagePolicies, TrustRoots
    seeded: int = 0  # outcomes read back from earlier reports (the first cycle after a start)
    pace: PaceStats = field(default_factory=PaceStats)
    skipped: str = ""  # why the cycle did nothing


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
        pace: PaceLimits | None = None,
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
        self.pace = pace or PaceLimits()
        self.flips = FlipTracker()
        self.reports = ReportWriter(writer, settings)
        self._seeded = False
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

    async def _collect(self, result: CycleResult, pace: Pacer) -> list[WorkloadImages]:
        labels = self.namespace_labels()
        settings = self.settings

        def excluded(namespace: str) -> bool:
            if namespace == self.controller_namespace or namespace in settings.exclude_namespaces:
                return True
            return labels.get(namespace, {}).get(EXCLUDE_LABEL) == "true"

        listing = await collect(self.lister, self.kinds, settings, excluded, pace)
        result.objects += listing.objects
        result.complete = result.complete and listing.complete
        return listing.workloads

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

    async def _seed(self, result: CycleResult, pace: Pacer) -> None:
        """Once per process: the flip memory and the written reports, from the reports in the cluster."""
        if self._seeded:
            return
        try:
            outcomes = await self.reports.read_back(pace)
        except ImprimaturError as e:
            log.warning("background: reading earlier reports failed (retried next cycle): %s", e.message())
            return
        self._seeded = True
        result.seeded = self.flips.seed(outcomes)

    def _cluster_findings(self) -> list[Finding]:
        state = self.state
        policies = [
            ClusterObjectStatus(
                e.key.kind,
                e.key.name,
                "" if e.ready else str(e.reason or "PolicyInvalid"),
                e.detail,
                e.policy.trust_root if e.policy is not None else "",
            )
            for e in state.policy_entries
            if e.key.namespace is None
        ]
        roots = [
            ClusterObjectStatus(
                e.key.kind, e.key.name, "" if e.ready else str(e.reason or "TrustRootInvalid"), e.detail
            )
            for e in state.trust_root_entries
        ]
        return cluster_findings(policies, roots, readiness=state.trust_root_readiness())

    async def _verdicts(
        self, plan: CyclePlan, result: CycleResult, pace: Pacer, deadline: float
    ) -> dict[tuple[str, str], ImageVerdict | str]:
        """Cached verdicts now (free), uncached ones within the budget, the rest why not."""
        s = self.settings
        engine = self.state.engine
        verdicts: dict[tuple[str, str], ImageVerdict | str] = dict(plan.over)
        gate = asyncio.Semaphore(s.max_concurrent)
        pending: dict[tuple[str, str], asyncio.Task[ImageVerdict | str]] = {}
        for namespace, image in plan.order:
            await pace.tick()
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
            async with pace.away():  # the engine's own work, bounded by max_concurrent
                done, late = await asyncio.wait(
                    pending.values(), timeout=max(0.0, deadline - self.monotonic())
                )
            for task in late:
                task.cancel()
            for key, task in pending.items():
                if task in done and not task.cancelled() and task.exception() is None:
                    verdicts[key] = task.result()
                    result.decided += isinstance(verdicts[key], ImageVerdict)
                else:
                    verdicts[key] = f"the cycle's time budget of {s.cycle_seconds:g}s ran out"
        return verdicts

    async def _cycle(self) -> CycleResult:
        s = self.settings
        result = CycleResult(started=self.clock())
        if not self.state.loaded:
            result.skipped = "policies and trust roots are not loaded yet"
            return result
        pace = Pacer(self.pace, busy=ThreadActivity())
        result.pace = pace.stats
        began = self.monotonic()
        deadline = began + s.cycle_seconds
        await self._seed(result, pace)
        workloads = await self._collect(result, pace)
        result.workloads = len(workloads)
        plan = plan_cycle(
            workloads,
            PlanLimits(s.max_images_per_namespace, s.max_uncached, s.max_uncached_per_namespace),
        )
        await pace.tick()
        result.pairs = len(plan.order)
        verdicts = await self._verdicts(plan, result, pace, deadline)
        findings: list[Finding] = []
        for item in workloads:
            await pace.tick()
            for image in item.images:
                verdict = verdicts.get((item.workload.namespace, image), "not planned")
                findings.append(
                    finding_of(item.workload, verdict)
                    if isinstance(verdict, ImageVerdict)
                    else unchecked(item.workload, image, verdict)
                )
        result.unchecked = sum(1 for v in verdicts.values() if isinstance(v, str))
        result.findings = findings
        result.cluster_findings = self._cluster_findings()
        await self._raise_events(findings, result, pace)
        if result.complete:
            self.flips.retain((f.workload, f.image) for f in findings)
        await pace.tick()
        result.reports_written = await self.reports.write(
            findings, result.cluster_findings, now=self.clock(), complete=result.complete, pace=pace
        )
        result.seconds = self.monotonic() - began
        self._publish(findings, result)
        log.info(
            "background cycle: %d objects, %d (namespace, image) pairs: %d cached, %d decided, %d left "
            "undecided; %d flips; %d reports written; %.2fs (%.0f ms in %d slices, longest %.1f ms)",
            result.objects,
            result.pairs,
            result.cached,
            result.decided,
            result.unchecked,
            result.flips,
            result.reports_written,
            result.seconds,
            pace.stats.busy_seconds * 1000,
            pace.stats.slices,
            pace.stats.longest_slice * 1000,
        )
        return result

    async def _raise_events(self, findings: list[Finding], result: CycleResult, pace: Pacer) -> None:
        flips = []
        for start in range(0, len(findings), FLIP_CHUNK):
            flips.extend(self.flips.observe(findings[start : start + FLIP_CHUNK]))
            await pace.tick()
        result.flips = len(flips)
        now = self.clock()
        for flip in flips[:MAX_EVENTS_PER_CYCLE]:
            f = flip.finding
            message = f"{f.reason}: {f.image}: {f.detail} (it passed the previous check)"
            try:
                async with pace.away():
                    await self.writer.post_event(f.workload, f.reason, message, now)
                result.events += 1
            except ImprimaturError as e:
                log.warning("background: event on %s failed: %s", f.workload, e.message())
        if len(flips) > MAX_EVENTS_PER_CYCLE:
            log.warning(
                "background: %d flips; Events raised for the first %d", len(flips), MAX_EVENTS_PER_CYCLE
            )

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
