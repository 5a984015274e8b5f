"""Fixtures for the end-to-end tests: one real kube-apiserver and one controller for the session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.admission.harness import RunningController
from tests.apiserver.harness import (
    ClusterImages,
    Outcome,
    baseline_policies,
    kubectl,
    publish,
    start_controller,
)
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.registry import RegistryServer, TestPKI
from tests.kit.sigstore import SigstoreKit

__all__ = ["Cluster", "cluster"]


@dataclass(frozen=True)
class Cluster:
    """The API server with our webhook registered, the controller behind it, and the test images."""

    api: ApiServer
    images: ClusterImages
    controller: RunningController

    def kubectl(self, *args: str, stdin: str | None = None) -> Outcome:
        return kubectl(self.api, *args, stdin=stdin)


@pytest.fixture(scope="session")
def cluster(
    apiserver: ApiServer,
    registry: RegistryServer,
    registry_pki: TestPKI,
    sigstore_kit: SigstoreKit,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    """The baseline policies applied, the controller loaded them, its webhook called by the API server."""
    images = publish(registry, sigstore_kit)
    apiserver.apply(baseline_policies(images, sigstore_kit))
    running = start_controller(apiserver, registry, registry_pki, tmp_path_factory.mktemp("controller"))
    try:
        yield Cluster(apiserver, images, running)
    finally:
        running.stop()
