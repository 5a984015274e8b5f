"""Findings as report documents: ``wgpolicyk8s.io/v1alpha2`` PolicyReport and OpenReports
``openreports.io/v1alpha1`` Report, one per namespace, and the summaries and gauge counts over them.

Field shapes follow the CRDs (kyverno ``config/crds/wgpolicyk8s.io``; openreports ``reports-api``
``apis/openreports.io/v1alpha1``): ``results[]`` with ``source``, ``policy``, ``rule``, ``result``
(pass/fail/warn/error/skip), ``message``, ``resources`` (ObjectReferences), ``properties`` (strings),
``timestamp`` ``{seconds, nanos}``, and ``summary`` counts. One result per workload and image:
``policy`` is the governing policies, ``rule`` the reason code, ``message`` the detail, and
``properties`` the image, its digest and, for passes, the signer.

Cluster-scoped results (each ClusterImagePolicy and TrustRoot: ready, or why not; see
:mod:`controller.posture.cluster`) go in one ``ClusterPolicyReport`` / OpenReports ``ClusterReport``
named ``imprimatur`` (:func:`cluster_report_document`), in the same shape.

**Bounded.** A report holds at most ``max_results`` results (failures first, then errors, warnings,
passes); its ``summary`` still counts every finding, and the annotation ``imprimatur.dev/truncated``
says how many results were left out. **Idempotent.** Results are sorted, and :func:`content_of`
compares two documents without their timestamps, so a writer updates a report only when a result
changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from controller.posture.findings import Finding, Outcome

ReportFormat = Literal["wgpolicyk8s", "openreports"]
REPORT_FORMATS: Final[Mapping[ReportFormat, tuple[str, str, str]]] = {
    # format -> (apiVersion, kind, plural)
    "wgpolicyk8s": ("wgpolicyk8s.io/v1alpha2", "PolicyReport", "policyreports"),
    "openreports": ("openreports.io/v1alpha1", "Report", "reports"),
}
CLUSTER_REPORT_FORMATS: Final[Mapping[ReportFormat, tuple[str, str, str]]] = {
    "wgpolicyk8s": ("wgpolicyk8s.io/v1alpha2", "ClusterPolicyReport", "clusterpolicyreports"),
    "openreports": ("openreports.io/v1alpha1", "ClusterReport", "clusterreports"),
}
REPORT_NAME: Final = "imprimatur"
SOURCE: Final = "imprimatur"
MANAGED_BY: Final = {"app.kubernetes.io/managed-by": "imprimatur"}
TRUNCATED_ANNOTATION: Final = "imprimatur.dev/truncated"
DEFAULT_POLICY: Final = "default-decision"  # the policy of an image no policy governs
OUTCOMES: Final[tuple[Outcome, ...]] = ("fail", "error", "warn", "pass")
MAX_PROPERTY: Final = 1024


@dataclass(frozen=True, slots=True)
class ReportLimits:
    max_results: int = 1000  # per report: ~1 KiB each keeps a report well under etcd's 1.5 MiB


def summary_of(findings: Iterable[Finding]) -> dict[str, int]:
    counts = Counter(f.outcome for f in findings)
    return {
        "pass": counts["pass"],
        "fail": counts["fail"],
        "warn": counts["warn"],
        "error": counts["error"],
        "skip": 0,
    }


def gauge_counts(findings: Iterable[Finding]) -> dict[tuple[str, str], int]:
    """Distinct running images by (outcome, reason): an image in ten Pods of one namespace counts once
    there (keyed by namespace and image), and once more in each other namespace."""
    seen: dict[tuple[str, str], Finding] = {}
    for f in findings:
        seen.setdefault((f.workload.namespace, f.image), f)
    counts: Counter[tuple[str, str]] = Counter((str(f.outcome), f.reason) for f in seen.values())
    return dict(counts)


def _result(finding: Finding, seconds: int) -> dict[str, object]:
    properties = {"image": finding.image[:MAX_PROPERTY]} if finding.image else {}
    if finding.digest:
        properties["digest"] = finding.digest
    if finding.signer:
        properties["signer"] = finding.signer[:MAX_PROPERTY]
    return {
        "source": SOURCE,
        "policy": ",".join(finding.policies)[:MAX_PROPERTY] or DEFAULT_POLICY,
        "rule": finding.reason,
        "result": finding.outcome,
        "scored": True,
        "message": finding.detail,
        "resources": [finding.workload.reference()],
        "properties": properties,
        "timestamp": {"seconds": seconds, "nanos": 0},
    }


def _ordered(findings: Sequence[Finding]) -> list[Finding]:
    rank = {o: i for i, o in enumerate(OUTCOMES)}
    return sorted(findings, key=lambda f: (rank[f.outcome], f.workload, f.image))


def _document(
    items: Sequence[Finding],
    *,
    api_version: str,
    kind: str,
    namespace: str | None,
    report_format: ReportFormat,
    limits: ReportLimits,
    seconds: int,
) -> dict[str, object]:
    kept = _ordered(items)[: limits.max_results]
    kept.sort(key=lambda f: (f.workload, f.image))
    metadata: dict[str, object] = {"name": REPORT_NAME}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["labels"] = dict(MANAGED_BY)
    if len(items) > len(kept):
        metadata["annotations"] = {
            TRUNCATED_ANNOTATION: f"{len(items) - len(kept)} of {len(items)} results left out "
            f"(at most {limits.max_results}; failures kept first); the summary counts all"
        }
    document: dict[str, object] = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
    if report_format == "openreports":
        document["source"] = SOURCE
    document["summary"] = summary_of(items)
    document["results"] = [_result(f, seconds) for f in kept]
    return document


def report_documents(
    findings: Iterable[Finding],
    *,
    now: datetime,
    report_format: ReportFormat = "wgpolicyk8s",
    limits: ReportLimits | None = None,
    also: Iterable[str] = (),
) -> dict[str, dict[str, object]]:
    """namespace -> the report document for it: every namespace with at least one finding, and every
    namespace in ``also`` (with no results, e.g. its workloads are gone)."""
    api_version, kind, _ = REPORT_FORMATS[report_format]
    by_ns: dict[str, list[Finding]] = {namespace: [] for namespace in also}
    for f in findings:
        by_ns.setdefault(f.workload.namespace, []).append(f)
    return {
        namespace: _document(
            items,
            api_version=api_version,
            kind=kind,
            namespace=namespace,
            report_format=report_format,
            limits=limits or ReportLimits(),
            seconds=int(now.timestamp()),
        )
        for namespace, items in sorted(by_ns.items())
    }


def cluster_report_document(
    findings: Sequence[Finding],
    *,
    now: datetime,
    report_format: ReportFormat = "wgpolicyk8s",
    limits: ReportLimits | None = None,
) -> dict[str, object]:
    """The cluster-scoped report (``ClusterPolicyReport`` / ``ClusterReport``) of cluster findings."""
    api_version, kind, _ = CLUSTER_REPORT_FORMATS[report_format]
    return _document(
        findings,
        api_version=api_version,
        kind=kind,
        namespace=None,
        report_format=report_format,
        limits=limits or ReportLimits(),
        seconds=int(now.timestamp()),
    )


def content_of(document: Mapping[str, object]) -> object:
    """What a writer compares: the results without their timestamps, the summary, our labels and
    annotations (never the server's own metadata)."""
    results = document.get("results")
    stripped = [
        {k: v for k, v in r.items() if k != "timestamp"}
        for r in (results if isinstance(results, list) else [])
        if isinstance(r, Mapping)
    ]
    metadata = document.get("metadata")
    meta = metadata if isinstance(metadata, Mapping) else {}
    annotations = meta.get("annotations")
    ours = (
        {k: v for k, v in annotations.items() if str(k).startswith("imprimatur.dev/")}
        if isinstance(annotations, Mapping)
        else {}
    )
    return (stripped, document.get("summary"), document.get("source"), ours)


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One result read back from a report (for ``imprimatur report``)."""

    namespace: str
    kind: str
    name: str
    image: str
    result: str
    reason: str
    policy: str
    message: str
    digest: str
    signer: str
    api_version: str = ""  # of the workload (what a restart needs to match it again)
    uid: str = ""


def _text(value: object, limit: int = MAX_PROPERTY) -> str:
    return value[:limit] if isinstance(value, str) else ""


def results_of_report(document: Mapping[str, object], *, max_results: int = 10_000) -> list[ReportRow]:
    """The rows of a PolicyReport or Report written by this controller (``source: imprimatur``); other
    sources' results are skipped, malformed entries too."""
    metadata = document.get("metadata")
    report_ns = _text(metadata.get("namespace")) if isinstance(metadata, Mapping) else ""
    results = document.get("results")
    rows: list[ReportRow] = []
    if not isinstance(results, list):
        return rows
    for r in results[:max_results]:
        if not isinstance(r, Mapping) or r.get("source") != SOURCE:
            continue
        resources = r.get("resources")
        ref = (
            resources[0]
            if isinstance(resources, list) and resources and isinstance(resources[0], Mapping)
            else {}
        )
        props = r.get("properties")
        props = props if isinstance(props, Mapping) else {}
        rows.append(
            ReportRow(
                namespace=_text(ref.get("namespace")) or report_ns,
                kind=_text(ref.get("kind")),
                name=_text(ref.get("name")),
                image=_text(props.get("image")),
                result=_text(r.get("result")),
                reason=_text(r.get("rule")),
                policy=_text(r.get("policy")),
                message=_text(r.get("message")),
                digest=_text(props.get("digest")),
                signer=_text(props.get("signer")),
                api_version=_text(ref.get("apiVersion")),
                uid=_text(ref.get("uid"), 64),
            )
        )
    return rows
