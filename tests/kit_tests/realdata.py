"""Access to the real production cosign signatures the kit must match (ground truth, read-only).

Found by :func:`tests.sigstore_real.real_data_dir` (``../shared`` beside the repository).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.sigstore_real import real_data_dir

_REPO_ROOT = Path(__file__).resolve().parents[2]

CONNAISSEUR = "connaisseur_phbelitz_email_github_2024"
RATIFY = "ratify_wabbitnetworks_email_github_2023"
SALRASHID = "salrashid123_cosign_bazel_cloud_build_google_sa_2023-05"
SIGSTORE_RS = "sigstore-rs_flavio_email_2021-10_rekord"
LEGACY_CASES = (CONNAISSEUR, RATIFY, SALRASHID, SIGSTORE_RS)


@dataclass(frozen=True)
class RealLayer:
    """One real legacy ``.sig`` layer: exact payload bytes and its annotations."""

    case: str
    payload: bytes
    annotations: dict[str, str]


def real_layer(case: str) -> RealLayer:
    """Load a legacy case."""
    folder = real_data_dir() / "legacy" / case
    annotations = json.loads((folder / "annotations.json").read_text())
    return RealLayer(case, (folder / "payload.json").read_bytes(), annotations)


def real_json(*parts: str) -> Any:
    """Parse a JSON file of the real data (its shape is what the tests compare against)."""
    return json.loads(real_data_dir().joinpath(*parts).read_text())


def shape(value: Any) -> Any:
    """The shape of a JSON value: key order and value types, recursively; list elements deduplicated."""
    if isinstance(value, dict):
        return tuple((key, shape(item)) for key, item in value.items())
    if isinstance(value, list):
        shapes: list[Any] = []
        for item in value:
            if shape(item) not in shapes:
                shapes.append(shape(item))
        return ("list", tuple(shapes))
    return type(value).__name__
