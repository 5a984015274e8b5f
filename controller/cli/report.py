"""``imprimatur report``: what the background loop found, read back from the cluster's reports.

    imprimatur report [-n NAMESPACE | -A] [--reason CODE] [--verdict pass|fail|warn|error] [-o json]

Reads the PolicyReports (``wgpolicyk8s.io/v1alpha2``) this controller wrote, or its OpenReports Reports
(``--format openreports``; ``auto`` reads PolicyReports and falls back to Reports where the cluster has
no PolicyReport API), with the kubeconfig as kubectl finds it (``--kubeconfig``, ``$KUBECONFIG``,
``~/.kube/config``; ``--context``). Without ``-n`` or ``-A`` it reads the context's namespace
(``default`` when it names none), as kubectl does.

With ``-A`` the cluster-scoped report (ClusterPolicyReport / ClusterReport: each ClusterImagePolicy
and TrustRoot, ready or why not) is read too; its rows have no namespace (``-`` in the table).

Prints a table of workload, image, verdict and reason (or ``-o json``: a list of objects). Exit codes,
like the other commands: ``0`` no listed result fails; ``1`` at least one listed result is ``fail``
(after the filters, so ``--verdict pass`` never exits 1); ``2`` usage, configuration or API error.
``error`` results (undecided this cycle) do not make the exit code 1: they are not a denial.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, Final, Protocol, TextIO

from controller.errors import ImprimaturError
from controller.posture import CLUSTER_REPORT_FORMATS, REPORT_FORMATS, ReportRow, results_of_report

EXIT_OK: Final = 0
EXIT_FAILING: Final = 1
EXIT_USAGE: Final = 2
VERDICTS: Final = ("pass", "fail", "warn", "error")
MAX_CELL: Final = 80


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``report`` to the CLI."""
    p = sub.add_parser("report", help="show the background re-verification reports from the cluster")
    where = p.add_mutually_exclusive_group()
    where.add_argument("-n", "--namespace", default=None, help="one namespace (default: the context's)")
    where.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    p.add_argument(
        "--reason", action="append", default=[], metavar="CODE", help="only this reason (repeatable)"
    )
    p.add_argument(
        "--verdict", action="append", default=[], choices=VERDICTS, help="only this verdict (repeatable)"
    )
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.add_argument(
        "--format", choices=("auto", "wgpolicyk8s", "openreports"), default="auto", dest="report_format"
    )
    p.add_argument("--kubeconfig", default=None)
    p.add_argument("--context", default=None)
    p.set_defaults(run=run)


class ReportSource(Protocol):
    """Where reports are read from (:class:`~controller.admission.posture_kube.KubernetesPosture`)."""

    def list_reports(
        self, api_version: str, plural: str, namespace: str | None
    ) -> list[Mapping[str, object]]:
        """Our reports of ``plural`` in ``namespace`` (None: all, or cluster-scoped). Raises
        :class:`ImprimaturError`; an unserved API is an empty list."""
        ...


def read_rows(source: ReportSource, *, namespace: str | None, report_format: str) -> list[ReportRow]:
    """The rows of our reports, sorted: PolicyReports, or OpenReports Reports (``auto``: the first
    format that has any); with ``namespace`` None, every namespace and the cluster-scoped report."""
    for fmt, (api_version, _, plural) in REPORT_FORMATS.items():
        if report_format not in ("auto", fmt):
            continue
        documents = list(source.list_reports(api_version, plural, namespace))
        if namespace is None:
            cluster_api, _, cluster_plural = CLUSTER_REPORT_FORMATS[fmt]
            documents.extend(source.list_reports(cluster_api, cluster_plural, None))
        if documents:
            rows = [row for doc in documents for row in results_of_report(doc)]
            rows.sort(key=lambda r: (r.namespace, r.kind, r.name, r.image))
            return rows
    return []


def _context_namespace(kubeconfig: str | None, context: str | None) -> str:
    import kubernetes  # noqa: PLC0415 - only this command needs it

    try:
        contexts: Any = kubernetes.config.list_kube_config_contexts
        listed, active = contexts(config_file=kubeconfig)
    except Exception:  # noqa: BLE001 - no kubeconfig to read a namespace from: kubectl's default
        return "default"
    chosen = next((c for c in listed if c.get("name") == context), active) if context else active
    namespace = (chosen or {}).get("context", {}).get("namespace")
    return namespace if isinstance(namespace, str) and namespace else "default"


def filter_rows(
    rows: Sequence[ReportRow], *, reasons: Sequence[str], verdicts: Sequence[str]
) -> list[ReportRow]:
    return [
        r for r in rows if (not reasons or r.reason in reasons) and (not verdicts or r.result in verdicts)
    ]


def _cell(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_CELL else flat[: MAX_CELL - 1] + "…"


def render_table(rows: Sequence[ReportRow], out: TextIO) -> None:
    header = ("NAMESPACE", "WORKLOAD", "IMAGE", "VERDICT", "REASON", "SIGNER/DETAIL")
    body = [
        (
            r.namespace or "-",
            f"{r.kind.lower()}/{r.name}",
            _cell(r.image) or "-",
            r.result,
            r.reason,
            _cell(r.signer or r.message),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    for line in (header, *body):
        out.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n")


def exit_code(rows: Sequence[ReportRow]) -> int:
    return EXIT_FAILING if any(r.result == "fail" for r in rows) else EXIT_OK


def run(args: argparse.Namespace, out: TextIO, source: ReportSource | None = None) -> int:
    import sys  # noqa: PLC0415

    try:
        if source is None:
            from controller.admission.posture_kube import KubernetesPosture  # noqa: PLC0415 - kubernetes client

            source = KubernetesPosture.from_environment(args.kubeconfig, args.context)
        namespace = (
            None
            if args.all_namespaces
            else (args.namespace or _context_namespace(args.kubeconfig, args.context))
        )
        rows = read_rows(source, namespace=namespace, report_format=args.report_format)
    except ImprimaturError as e:
        sys.stderr.write(f"imprimatur report: {e.reason}: {e.detail}\n")
        return EXIT_USAGE
    rows = filter_rows(rows, reasons=args.reason, verdicts=args.verdict)
    if args.output == "json":
        json.dump([asdict(r) for r in rows], out, indent=2)
        out.write("\n")
    elif rows:
        render_table(rows, out)
    else:
        sys.stderr.write("no results\n")
    return exit_code(rows)
