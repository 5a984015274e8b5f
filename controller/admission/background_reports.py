"""The background loop's reports: which formats, written only when changed, encoded in paced slices,
and read back on start so a restart forgets neither the flips nor the reports it must empty.

Namespaced reports (PolicyReport / Report) carry the workloads' results; one cluster-scoped report
(ClusterPolicyReport / ClusterReport) carries the ClusterImagePolicies' and TrustRoots' results
(:mod:`controller.posture.cluster`).

**Encoding off the lock's critical path.** A report of 1,000 results is about a megabyte of JSON:
``json.dumps`` of it in one call holds the interpreter lock for milliseconds in C, where no switch
interval can interrupt it. So each result is encoded on its own, with a :meth:`Pacer.tick` between
them, and the pieces are joined; the writer sends those bytes as they are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

from controller.admission.background_pace import Pacer
from controller.admission.posture_kube import PostureWriter
from controller.config import BackgroundSettings
from controller.errors import ImprimaturError
from controller.posture import (
    CLUSTER_REPORT_FORMATS,
    REPORT_FORMATS,
    Finding,
    ReportFormat,
    ReportLimits,
    WorkloadRef,
    cluster_report_document,
    content_of,
    report_documents,
    results_of_report,
)

log = logging.getLogger(__name__)

CLUSTER: Final = ""  # the namespace key of the cluster-scoped report in what was written
MAX_SEED_REPORTS: Final = 10_000  # reports read back on start, per format


async def encode(document: Mapping[str, object], pace: Pacer) -> bytes:
    """``document`` as JSON, one result at a time with a tick between (the same JSON as
    ``json.dumps(document)``, without one long call)."""
    results = document.get("results")
    items = results if isinstance(results, list) else []
    head = {k: v for k, v in document.items() if k != "results"}
    parts: list[str] = []
    for item in items:
        parts.append(json.dumps(item, separators=(",", ":")))
        await pace.tick()
    text = json.dumps(head, separators=(",", ":"))
    return f'{text[:-1]},"results":[{",".join(parts)}]}}'.encode()


class ReportWriter:
    """What was last written per (plural, namespace), and the writes."""

    def __init__(self, writer: PostureWriter, settings: BackgroundSettings) -> None:
        self.writer = writer
        self.settings = settings
        self._written: dict[tuple[str, str], object] = {}  # (plural, namespace) -> content last written

    async def formats(self) -> list[ReportFormat]:
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

    async def read_back(self, pace: Pacer) -> list[tuple[WorkloadRef, str, str]]:
        """The (workload, image, outcome) of every namespaced result we wrote before (for the flip
        memory), and what each report held (so an unchanged one is not rewritten, and a namespace
        whose workloads went away while we were down still gets emptied). Raises what reading raised."""
        outcomes: list[tuple[WorkloadRef, str, str]] = []
        for fmt in await self.formats():
            api_version, _, plural = REPORT_FORMATS[fmt]
            async with pace.away():
                documents = await self.writer.read_reports(api_version, plural)
            for document in documents[:MAX_SEED_REPORTS]:
                metadata = document.get("metadata")
                namespace = metadata.get("namespace") if isinstance(metadata, Mapping) else None
                if not isinstance(namespace, str) or not namespace:
                    continue
                self._written.setdefault((plural, namespace), content_of(document))
                for row in results_of_report(document):
                    if row.image and row.name and row.kind:
                        ref = WorkloadRef(row.namespace, row.kind, row.name, row.api_version or "v1", row.uid)
                        outcomes.append((ref, row.image, row.result))
                    await pace.tick()
        return outcomes

    async def _put(
        self, plural: str, api_version: str, namespace: str, document: Mapping[str, object], pace: Pacer
    ) -> bool:
        content = content_of(document)
        if self._written.get((plural, namespace)) == content:
            return False
        body = await encode(document, pace)
        try:
            async with pace.away():
                await self.writer.apply_report(plural, api_version, namespace or None, body)
        except ImprimaturError as e:
            log.warning("background: writing %s %s failed: %s", plural, namespace or "(cluster)", e.message())
            return False
        self._written[(plural, namespace)] = content
        return True

    async def write(
        self,
        findings: Sequence[Finding],
        cluster: Sequence[Finding],
        *,
        now: datetime,
        complete: bool,
        pace: Pacer,
    ) -> int:
        """Write every report whose content changed; how many were written."""
        limits = ReportLimits(self.settings.max_results)
        by_ns: dict[str, list[Finding]] = {}
        for f in findings:
            by_ns.setdefault(f.workload.namespace, []).append(f)
            await pace.tick()
        written = 0
        for fmt in await self.formats():
            api_version, _, plural = REPORT_FORMATS[fmt]
            # a namespace whose workloads are all gone gets an empty report (only after a complete listing)
            gone = {ns for (p, ns) in self._written if p == plural and ns != CLUSTER} if complete else set()
            for namespace in sorted(set(by_ns) | gone):
                documents = report_documents(
                    by_ns.get(namespace, []), now=now, report_format=fmt, limits=limits, also=(namespace,)
                )
                await pace.tick()
                written += await self._put(plural, api_version, namespace, documents[namespace], pace)
            cluster_api, _, cluster_plural = CLUSTER_REPORT_FORMATS[fmt]
            document = cluster_report_document(cluster, now=now, report_format=fmt, limits=limits)
            written += await self._put(cluster_plural, cluster_api, CLUSTER, document, pace)
        return written
