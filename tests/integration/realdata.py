"""The real production cosign signatures of ../shared/testdata/sigstore-real, as registry content.

Each case is served from the local registry under its original repository name; a registries.yaml
mirror maps its original registry host to the local one, so the image reference is exactly the one
that was signed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from controller.model import Digest
from tests.fixtures.registry import RegistryServer
from tests.kit.oci import OCI_MANIFEST_MEDIA_TYPE, RawLayer, build_sig_image, push_sig_image
from tests.sigstore_real import DEFAULT

SHARED = DEFAULT
LEGACY = SHARED / "legacy"
NEGATIVE = SHARED / "negative" / "connaisseur_keybased_testimage"
GITHUB_OAUTH = "https://github.com/login/oauth"


@dataclass(frozen=True)
class RealCase:
    """One real signed image: where it lives, who signed it, and how its .sig is rebuilt."""

    name: str
    registry: str
    repository: str
    subject: str
    issuer: str
    log_index: int

    @property
    def directory(self) -> Path:
        return LEGACY / self.name

    @property
    def payload(self) -> bytes:
        return (self.directory / "payload.json").read_bytes()

    @property
    def digest(self) -> str:
        doc = json.loads(self.payload)
        return str(doc["critical"]["image"]["docker-manifest-digest"])

    @property
    def image(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"


CASES = (
    RealCase(
        "connaisseur_phbelitz_email_github_2024",
        "index.docker.io",
        "phbelitz/rekor-test",
        "philipp.belitz@securesystems.de",
        GITHUB_OAUTH,
        98235800,
    ),
    RealCase(
        "ratify_wabbitnetworks_email_github_2023",
        "wabbitnetworks.azurecr.io",
        "test/cosign-image",
        "sozercan@gmail.com",
        GITHUB_OAUTH,
        13452680,
    ),
    RealCase(
        "salrashid123_cosign_bazel_cloud_build_google_sa_2023-05",
        "us-central1-docker.pkg.dev",
        "mineral-minutia-820/repo1/securebuild-bazel",
        "cosign-svc-account@mineral-minutia-820.iam.gserviceaccount.com",
        "https://accounts.google.com",
        19941761,
    ),
)
FLAVIO = RealCase(
    "sigstore-rs_flavio_email_2021-10_rekord",
    "registry-testing.svc.lan",
    "kubewarden/disallow-service-nodeport",
    "flavio@castelli.me",
    "",
    783607,
)


def _layers(case: RealCase) -> list[RawLayer]:
    annotations = json.loads((case.directory / "annotations.json").read_text())
    layers = []
    kms = case.directory / "annotations_layer0_kms_key_signature.json"
    if kms.exists():  # salrashid123: layer 0 is a KMS key signature over the same payload
        layers.append(RawLayer(case.payload, json.loads(kms.read_text())))
    layers.append(RawLayer(case.payload, annotations))
    return layers


def push_real_case(registry: RegistryServer, case: RealCase) -> None:
    """Push the case's .sig: the verbatim published manifest where one exists, else cosign's layout."""
    digest = Digest.parse(case.digest)
    published = case.directory / "sig_manifest.json"
    if published.exists():
        manifest = published.read_bytes()
        image = build_sig_image(_layers(case))  # the config blob cosign wrote (233 bytes, deterministic)
        registry.push_blob(case.repository, image.config)
        registry.push_blob(case.repository, case.payload)
        registry.push_manifest(case.repository, f"sha256-{digest.hex}.sig", manifest, OCI_MANIFEST_MEDIA_TYPE)
        return
    push_sig_image(registry, case.repository, digest, _layers(case))


def push_negative_cases(registry: RegistryServer) -> list[str]:
    """Push the two key-based connaisseur .sig manifests verbatim; returns the image references."""
    repo = "securesystemsengineering/testimage"
    blobs = {p.stem.removeprefix("blob_sha256_"): p.read_bytes() for p in NEGATIVE.glob("blob_sha256_*.json")}
    images = []
    for path in sorted(NEGATIVE.glob("sha256-*.sig.manifest.json")):
        manifest = json.loads(path.read_bytes())
        layers = [
            RawLayer(blobs[layer["digest"].removeprefix("sha256:")], layer.get("annotations", {}))
            for layer in manifest["layers"]
        ]
        rebuilt = build_sig_image(layers)  # cosign's deterministic config reproduces the published digest
        assert Digest.of(rebuilt.config) == Digest.parse(manifest["config"]["digest"]), path.name
        registry.push_blob(repo, rebuilt.config)
        for blob in rebuilt.blobs:
            registry.push_blob(repo, blob)
        tag = path.name.removesuffix(".manifest.json")
        registry.push_manifest(repo, tag, path.read_bytes(), OCI_MANIFEST_MEDIA_TYPE)
        images.append(f"index.docker.io/{repo}@sha256:{tag.removeprefix('sha256-').removesuffix('.sig')}")
    return images


def mirrors_yaml(registry: RegistryServer) -> str:
    """registries.yaml mapping every real case's registry to the local one."""
    hosts = {
        "docker.io" if case.registry == "index.docker.io" else case.registry for case in (*CASES, FLAVIO)
    }
    return registry.registries_yaml({host: [registry.url] for host in sorted(hosts)})
