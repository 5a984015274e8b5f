"""Where the real production Sigstore data lives: ``../shared/testdata/sigstore-real`` beside the
repository (on every developer machine and in CI), or wherever ``IMPRIMATUR_SIGSTORE_REAL`` points.

It is ground truth, so a test that needs it FAILS when it is missing: a skip would hide that the
verifier was never checked against production signatures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT = REPO_ROOT.parent / "shared" / "testdata" / "sigstore-real"


def real_data_dir() -> Path:
    """The real-data directory; fails the calling test when it cannot be found."""
    override = os.environ.get("IMPRIMATUR_SIGSTORE_REAL")
    folder = Path(override) if override else DEFAULT
    if not (folder / "trusted_root.production.json").is_file():
        pytest.fail(
            f"real Sigstore test data not found at {folder} (../shared beside the repo, or IMPRIMATUR_SIGSTORE_REAL)"
        )
    return folder
