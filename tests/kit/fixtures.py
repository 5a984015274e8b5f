"""pytest plugin: the session's :class:`~tests.kit.sigstore.SigstoreKit` and its trusted root on disk.

Registered from ``tests/conftest.py`` (``pytest_plugins``). The kit is generated once per session at the
real current UTC time, injected; nothing is written to the repository.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.kit.sigstore import SigstoreKit


@pytest.fixture(scope="session")
def sigstore_kit() -> SigstoreKit:
    """A private Sigstore (Fulcio CA, CT log, Rekor) valid around the real current time."""
    return SigstoreKit(now=datetime.now(UTC))


@pytest.fixture(scope="session")
def sigstore_trusted_root_file(sigstore_kit: SigstoreKit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kit's ``trusted_root.json``, written to a session temp file."""
    path = tmp_path_factory.mktemp("sigstore-kit") / "trusted_root.json"
    path.write_bytes(sigstore_kit.trusted_root_json())
    return path
