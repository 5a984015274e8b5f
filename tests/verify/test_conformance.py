"""The 70 Sigstore conformance cases through ``imprimatur verify-blob``, by path and by digest.

140 runs, each must give the expected verdict (exit 0 for a passing case, non-zero for a ``_fail``
case). sigstore-python 4.5.1 scores 132/140 on the same runs (see tests/verify/test_oracle.py).
The score is printed (``pytest -s``) and asserted per run, so a regression names its case.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import pytest

from controller.cli import main
from tests.verify.conformance import cases

RUNS = 140


@pytest.fixture(scope="module")
def verdicts() -> Iterator[dict[tuple[str, str], tuple[int, str]]]:
    """Every run's exit code and output, run once: {(case, "path"|"digest"): (code, output)}."""
    results: dict[tuple[str, str], tuple[int, str]] = {}
    for case in cases():
        for how, artifact in (("path", str(case.artifact)), ("digest", case.digest)):
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stderr(err):
                code = main(case.argv(artifact), out)
            results[case.name, how] = (code, out.getvalue() + err.getvalue())
    score = sum(1 for (name, _), (code, _) in results.items() if (code == 0) == (not name.endswith("_fail")))
    print(f"\nsigstore-conformance bundle-verify: {score}/{len(results)} (sigstore-python 4.5.1: 132/140)")
    yield results


def _case_names() -> list[str]:
    try:
        return [case.name for case in cases()]
    except pytest.fail.Exception:  # the data is missing: test_all_runs_counted fails loudly instead
        return []


def test_all_runs_counted(verdicts: dict[tuple[str, str], tuple[int, str]]) -> None:
    assert len(verdicts) == RUNS
    assert sum(1 for case in cases() if case.should_pass) == 21


@pytest.mark.parametrize("how", ["path", "digest"])
@pytest.mark.parametrize("name", _case_names())
def test_case(verdicts: dict[tuple[str, str], tuple[int, str]], name: str, how: str) -> None:
    code, output = verdicts[name, how]
    case = next(c for c in cases() if c.name == name)
    if case.should_pass:
        assert code == 0, output
        assert output.startswith("Verified OK"), output
    else:
        assert code != 0, output


def test_attestation_cases_report_their_kind(verdicts: dict[tuple[str, str], tuple[int, str]]) -> None:
    code, output = verdicts["happy-path-intoto-in-dsse-v3", "digest"]
    assert code == 0
    assert "attestation https://slsa.dev/provenance/v1" in output


def test_key_cases_report_the_key(verdicts: dict[tuple[str, str], tuple[int, str]]) -> None:
    code, output = verdicts["managed-key-happy-path", "path"]
    assert code == 0
    assert "by key sha256:" in output


def test_wrong_identity_is_rejected() -> None:
    case = next(c for c in cases() if c.name == "happy-path-v0.3")
    argv = case.argv(case.digest)
    argv[argv.index("--certificate-identity") + 1] = (
        "https://github.com/evil/repo/.github/workflows/x.yml@refs/heads/main"
    )
    out = io.StringIO()
    assert main(argv, out) == 1
    assert out.getvalue().startswith("IdentityMismatch:")


def test_key_case_without_key_is_key_mismatch() -> None:
    case = next(c for c in cases() if c.name == "managed-key-no-key_fail")
    out = io.StringIO()
    assert main(case.argv(case.digest), out) == 1
    assert out.getvalue().startswith("KeyMismatch:")


def test_unknown_artifact_is_usage_error() -> None:
    case = next(c for c in cases() if c.name == "happy-path-v0.3")
    out = io.StringIO()
    assert main(case.argv("/nonexistent/file"), out) == 2
