"""``imprimatur report`` against report documents served by a fake source (no cluster): the table,
the filters, ``-o json``, the cluster-scoped rows with ``-A``, and the exit codes 0, 1 and 2."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.cli import _parser, main
from controller.cli import report as report_cli
from controller.errors import FetchError, Reason
from controller.model import ImageVerdict
from controller.posture import (
    ClusterObjectStatus,
    Finding,
    ReportFormat,
    WorkloadRef,
    cluster_findings,
    cluster_report_document,
    finding_of,
    report_documents,
)

NOW = datetime(2026, 1, 2, tzinfo=UTC)
GOOD = "reg.example/app@sha256:" + "a" * 64
BAD = "reg.example/evil:latest"


def _findings() -> list[Finding]:
    web = WorkloadRef("team-a", "Deployment", "web", "apps/v1", "u1")
    job = WorkloadRef("team-b", "CronJob", "nightly", "batch/v1", "u2")
    return [
        finding_of(
            web, ImageVerdict(GOOD, True, Reason.VERIFIED, "signed", policies=("ClusterImagePolicy p",))
        ),
        finding_of(web, ImageVerdict(BAD, False, Reason.SIGNATURE_NOT_FOUND, "no signature\nat all")),
        finding_of(
            job, ImageVerdict(GOOD, True, Reason.VERIFIED, "signed", policies=("ClusterImagePolicy p",))
        ),
        finding_of(
            job, ImageVerdict("reg.example/x:1", True, Reason.REGISTRY_UNAVAILABLE, "down", transient=True)
        ),
    ]


class FakeSource:
    """Serves report documents by (plural, namespace); records what was asked."""

    def __init__(self, fmt: ReportFormat = "wgpolicyk8s", *, fail: bool = False) -> None:
        self.asked: list[tuple[str, str, str | None]] = []
        self.fail = fail
        documents = report_documents(_findings(), now=NOW, report_format=fmt)
        self.namespaced = {ns: dict(doc) for ns, doc in documents.items()}
        self.cluster = cluster_report_document(
            cluster_findings(
                [ClusterObjectStatus("ClusterImagePolicy", "broken", "PolicyInvalid", "no images")],
                [ClusterObjectStatus("TrustRoot", "corp")],
                readiness={"corp": True},
            ),
            now=NOW,
            report_format=fmt,
        )
        self.plurals = (
            {"policyreports", "clusterpolicyreports"}
            if fmt == "wgpolicyk8s"
            else {"reports", "clusterreports"}
        )

    def list_reports(
        self, api_version: str, plural: str, namespace: str | None
    ) -> list[Mapping[str, object]]:
        self.asked.append((api_version, plural, namespace))
        if self.fail:
            raise FetchError(Reason.INTERNAL_ERROR, "kubernetes API: GET: HTTP 403 forbidden")
        if plural not in self.plurals:
            return []
        if plural.startswith("cluster"):
            return [self.cluster]
        if namespace is None:
            return list(self.namespaced.values())
        return [self.namespaced[namespace]] if namespace in self.namespaced else []


def _run(argv: list[str], source: FakeSource) -> tuple[int, str]:
    args = _parser().parse_args(["report", *argv])
    out = io.StringIO()
    return report_cli.run(args, out, source=source), out.getvalue()


def test_table_of_one_namespace_and_exit_1_when_a_result_fails() -> None:
    code, text = _run(["-n", "team-a"], FakeSource())
    assert code == 1
    lines = text.splitlines()
    assert lines[0].split() == ["NAMESPACE", "WORKLOAD", "IMAGE", "VERDICT", "REASON", "SIGNER/DETAIL"]
    assert len(lines) == 3
    fail = next(line for line in lines if BAD in line)
    assert fail.split()[:5] == ["team-a", "deployment/web", BAD, "fail", "SignatureNotFound"]
    assert "no signature at all" in fail  # newlines flattened in a cell


def test_filters_by_verdict_and_reason_change_the_exit_code() -> None:
    code, text = _run(["-A", "--verdict", "pass"], FakeSource())
    assert code == 0
    assert {line.split()[3] for line in text.splitlines()[1:]} == {"pass"}
    code, text = _run(["-A", "--reason", "RegistryUnavailable"], FakeSource())
    assert code == 0  # an error (undecided) is not a denial
    assert [line.split()[3] for line in text.splitlines()[1:]] == ["error"]
    code, _ = _run(["-A", "--reason", "PolicyInvalid"], FakeSource())
    assert code == 1


def test_all_namespaces_include_the_cluster_report() -> None:
    source = FakeSource()
    code, text = _run(["-A", "-o", "json"], source)
    rows = json.loads(text)
    assert code == 1
    cluster = [(r["kind"], r["name"], r["result"], r["reason"]) for r in rows if r["namespace"] == ""]
    assert sorted(cluster) == [
        ("ClusterImagePolicy", "broken", "fail", "PolicyInvalid"),
        ("TrustRoot", "corp", "pass", "Ready"),
    ]
    assert {r["namespace"] for r in rows} == {"", "team-a", "team-b"}
    assert ("wgpolicyk8s.io/v1alpha2", "clusterpolicyreports", None) in source.asked
    _, table = _run(["-A"], FakeSource())
    assert any(line.split()[:3] == ["-", "trustroot/corp", "-"] for line in table.splitlines())


def test_json_output_fields() -> None:
    code, text = _run(["-n", "team-b", "-o", "json"], FakeSource())
    assert code == 0
    rows = json.loads(text)
    assert [(r["kind"], r["name"], r["result"]) for r in rows] == [
        ("CronJob", "nightly", "pass"),
        ("CronJob", "nightly", "error"),
    ]
    assert rows[0]["signer"] == "" and rows[0]["policy"] == "ClusterImagePolicy p"
    assert rows[0]["api_version"] == "batch/v1" and rows[0]["uid"] == "u2"


def test_auto_falls_back_to_openreports_and_an_empty_namespace_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = FakeSource("openreports")
    code, text = _run(["-n", "team-a"], source)
    assert code == 1 and BAD in text
    assert [plural for _, plural, _ in source.asked] == ["policyreports", "reports"]
    code, text = _run(["-n", "nobody"], FakeSource())
    assert (code, text) == (0, "")
    assert "no results" in capsys.readouterr().err


def test_api_errors_and_bad_configuration_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = _run(["-A"], FakeSource(fail=True))
    assert code == 2
    assert capsys.readouterr().err.startswith("imprimatur report: InternalError:")
    missing = tmp_path / "no-kubeconfig"
    assert main(["report", "-A", "--kubeconfig", str(missing)], io.StringIO()) == 2
    assert "ConfigInvalid" in capsys.readouterr().err


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["report", "--verdict", "maybe"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["report", "-A", "-n", "x"])
    assert e.value.code == 2
