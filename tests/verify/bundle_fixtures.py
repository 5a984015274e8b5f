"""The module-scoped fixtures the bundle tamper modules share (a kit, its trust root, a signing key and
every variant made once), loaded there with ``pytest_plugins`` so that pytest rewrites this module."""

from __future__ import annotations

import pytest

from controller.verify import TrustRoot
from tests.kit import bundles
from tests.kit.sigstore import KeyType, SigningKey, SigstoreKit, generate_key
from tests.verify.bundle_variants import NOW, Doc, make_all


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit(now=NOW)


@pytest.fixture(scope="module")
def root(kit: SigstoreKit) -> TrustRoot:
    return TrustRoot.from_json(bundles.trusted_root_json(kit), "kit")


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return generate_key(KeyType.ECDSA_P256)


@pytest.fixture(scope="module")
def made(kit: SigstoreKit, signing_key: SigningKey) -> dict[str, Doc]:
    return make_all(kit, signing_key)
