"""Fixtures of the verify tests: the test Sigstore and the embedded trust roots."""

from __future__ import annotations

import pytest

from controller.verify import TrustRoot
from tests.verify.builders import Sigstore
from tests.verify.realdata import EMBEDDED_PUBLIC_GOOD, EMBEDDED_STAGING


@pytest.fixture(scope="session")
def sigstore() -> Sigstore:
    """A miniature Sigstore around the injected NOW (keys generated once per session)."""
    return Sigstore()


@pytest.fixture(scope="session")
def trust_root(sigstore: Sigstore) -> TrustRoot:
    """The test Sigstore's trust root."""
    return sigstore.trust_root()


@pytest.fixture(scope="session")
def public_good() -> TrustRoot:
    """The embedded production trust root, as the lead's engine loads it."""
    return TrustRoot.from_json(EMBEDDED_PUBLIC_GOOD.read_bytes(), "public-good")


@pytest.fixture(scope="session")
def staging() -> TrustRoot:
    """The embedded staging trust root."""
    return TrustRoot.from_json(EMBEDDED_STAGING.read_bytes(), "staging")
