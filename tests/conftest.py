"""Test-wide configuration: plugins for the real registry and the test Sigstore kit, and the e2e gate."""

from __future__ import annotations

import os

import pytest

# tests.fixtures.apiserver: one real kube-apiserver per session, shared by tests/apiserver and tests/image.
pytest_plugins = ["tests.fixtures.registry", "tests.kit.fixtures", "tests.fixtures.apiserver"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """E2E tests need a real cluster (kind-config.yaml): they run only with IMPRIMATUR_E2E=1."""
    if os.environ.get("IMPRIMATUR_E2E") == "1":
        return
    skip = pytest.mark.skip(reason="e2e: needs a kind cluster; set IMPRIMATUR_E2E=1")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)
