"""Posture: what is running now, judged by the same verdicts as admission, as reports and summaries.

Pure: verdicts in, report documents, flips and gauge counts out. No kopf, no Kubernetes client, no
clock (timestamps are passed in). The background loop that feeds it, and the writers that store its
documents, live in :mod:`controller.admission.background`, which owns the Kubernetes API.
"""

from controller.posture.cluster import ClusterObjectStatus, cluster_findings
from controller.posture.findings import (
    Finding,
    Outcome,
    WorkloadImages,
    WorkloadRef,
    finding_of,
    outcome_of,
    unchecked,
)
from controller.posture.flips import Flip, FlipTracker
from controller.posture.plan import CyclePlan, PlanLimits, plan_cycle
from controller.posture.reports import (
    CLUSTER_REPORT_FORMATS,
    REPORT_FORMATS,
    ReportFormat,
    ReportLimits,
    ReportRow,
    cluster_report_document,
    content_of,
    gauge_counts,
    report_documents,
    results_of_report,
    summary_of,
)

__all__ = [
    "CLUSTER_REPORT_FORMATS",
    "REPORT_FORMATS",
    "ClusterObjectStatus",
    "CyclePlan",
    "Finding",
    "Flip",
    "FlipTracker",
    "Outcome",
    "PlanLimits",
    "ReportFormat",
    "ReportLimits",
    "ReportRow",
    "WorkloadImages",
    "WorkloadRef",
    "cluster_findings",
    "cluster_report_document",
    "content_of",
    "finding_of",
    "gauge_counts",
    "outcome_of",
    "plan_cycle",
    "report_documents",
    "results_of_report",
    "summary_of",
    "unchecked",
]
