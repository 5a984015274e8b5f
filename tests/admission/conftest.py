"""Fixtures for the admission tests: signed images in the real registry, and policies for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.admission.harness import Images, publish_images, standard_policies, write_policies
from tests.fixtures.registry import RegistryServer
from tests.kit.sigstore import SigstoreKit


@pytest.fixture(scope="session")
def images(registry: RegistryServer, sigstore_kit: SigstoreKit) -> Images:
    """Test images in the session registry: signed by alice, by mallory, unsigned, without tlog ..."""
    return publish_images(registry, sigstore_kit)


@pytest.fixture(scope="session")
def policy_file(tmp_path_factory: pytest.TempPathFactory, images: Images, sigstore_kit: SigstoreKit) -> Path:
    """The standard policies (and the kit's trust root) as a YAML file."""
    path = tmp_path_factory.mktemp("policies") / "policies.yaml"
    return write_policies(path, standard_policies(images.host, sigstore_kit.trusted_root_json()))
