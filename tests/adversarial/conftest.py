"""Fixtures for the adversarial tests (helpers are in :mod:`tests.adversarial.support`)."""

from __future__ import annotations

import pytest

from tests.admission.harness import Images, publish_images
from tests.fixtures.registry import RegistryServer
from tests.kit.sigstore import SigstoreKit


@pytest.fixture(scope="session")
def images(registry: RegistryServer, sigstore_kit: SigstoreKit) -> Images:
    """The admission tests' images (signed by alice, unsigned, ...) in the session registry."""
    return publish_images(registry, sigstore_kit)
