"""Fixtures for the adversarial tests (helpers are in :mod:`tests.adversarial.support`)."""

from __future__ import annotations

import pytest

from tests.admission.harness import Images, publish_images
from tests.adversarial.support import Lab
from tests.fixtures.registry import RegistryServer, TestPKI
from tests.kit.sigstore import SigstoreKit


@pytest.fixture(scope="session")
def images(registry: RegistryServer, sigstore_kit: SigstoreKit) -> Images:
    """The admission tests' images (signed by alice, unsigned, ...) in the session registry."""
    return publish_images(registry, sigstore_kit)


@pytest.fixture(scope="session")
def lab(
    tmp_path_factory: pytest.TempPathFactory,
    registry: RegistryServer,
    registry_pki: TestPKI,
    sigstore_kit: SigstoreKit,
) -> Lab:
    """Starts controllers against the session registry (see :meth:`Lab.serve`)."""
    return Lab(tmp_path_factory, registry, registry_pki, sigstore_kit)
