"""The real production cosign signatures (ground truth, read-only) and the embedded trust roots.

Found by :func:`tests.sigstore_real.real_data_dir` (``../shared`` beside the repository).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from controller.model import Digest, Signature
from tests.sigstore_real import real_data_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_PUBLIC_GOOD = REPO_ROOT / "controller" / "data" / "trusted_root.public-good.json"
EMBEDDED_STAGING = REPO_ROOT / "controller" / "data" / "trusted_root.staging.json"

CONNAISSEUR = "connaisseur_phbelitz_email_github_2024"
RATIFY = "ratify_wabbitnetworks_email_github_2023"
SALRASHID = "salrashid123_cosign_bazel_cloud_build_google_sa_2023-05"
SIGSTORE_RS = "sigstore-rs_flavio_email_2021-10_rekord"


@dataclass(frozen=True)
class Expected:
    """What a real legacy case must verify to (taken from the README and Rekor)."""

    subject: str
    issuer: str
    log_index: int
    integrated_time: datetime
    annotations: dict[str, str]


EXPECTED = {
    CONNAISSEUR: Expected(
        "philipp.belitz@securesystems.de",
        "https://github.com/login/oauth",
        98235800,
        datetime(2024, 5, 30, 15, 18, 17, tzinfo=UTC),
        {},
    ),
    RATIFY: Expected(
        "sozercan@gmail.com",
        "https://github.com/login/oauth",
        13452680,
        datetime(2023, 2, 16, 5, 23, 5, tzinfo=UTC),
        {},
    ),
    SALRASHID: Expected(
        "cosign-svc-account@mineral-minutia-820.iam.gserviceaccount.com",
        "https://accounts.google.com",
        19941761,
        datetime(2023, 5, 7, 13, 15, 14, tzinfo=UTC),
        {"key1": "value1"},
    ),
}
# The 2021 case has no issuer extension: its issuer is "" when that is waived.
EXPECTED_2021 = Expected("flavio@castelli.me", "", 783607, datetime(2021, 10, 20, 7, 25, 17, tzinfo=UTC), {})


def legacy_signature(case: str, annotations_file: str = "annotations.json") -> tuple[Signature, Digest]:
    """A real legacy layer as the registry layer would hand it over, and the digest it signs."""
    folder = real_data_dir() / "legacy" / case
    payload = (folder / "payload.json").read_bytes()
    annotations = json.loads((folder / annotations_file).read_text())
    digest = Digest.parse(json.loads(payload)["critical"]["image"]["docker-manifest-digest"])
    signature = Signature(
        kind="simplesigning",
        payload=payload,
        annotations=annotations,
        layer_digest=Digest.of(payload),
        source=f"{case} layer",
    )
    return signature, digest


def keybased_signatures() -> list[tuple[Signature, Digest]]:
    """The ``negative/`` key-based layers (manifest annotations + blob): not keyless evidence."""
    folder = real_data_dir() / "negative" / "connaisseur_keybased_testimage"
    out = []
    for manifest_path in sorted(folder.glob("*.sig.manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        for index, layer in enumerate(manifest["layers"]):
            blob_digest = layer["digest"]
            payload = (folder / f"blob_{blob_digest.replace(':', '_')}.json").read_bytes()
            digest = Digest.parse(json.loads(payload)["critical"]["image"]["docker-manifest-digest"])
            signature = Signature(
                kind="simplesigning",
                payload=payload,
                annotations=layer.get("annotations", {}),
                layer_digest=Digest.parse(blob_digest),
                source=f"{manifest_path.name} layer {index}",
            )
            out.append((signature, digest))
    return out


def bundle_bytes(name: str) -> bytes:
    """A file of the ``bundles/`` folder."""
    return (real_data_dir() / "bundles" / name).read_bytes()
