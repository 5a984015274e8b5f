"""A real production Sigstore attestation bundle (cosign, OCI 1.1 referrer), served by the local
registry, verified end to end with the embedded public-good root: it is an attestation, never a signature. (The bundle names its image 127.0.0.1:60943/repo; what
binds it is the digest, so it is served from our registry's own host. A mirror is not used: with no
.sig on the mirror the lookup would fall through to that unreachable upstream, and fail closed.)"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from controller.cli import EXIT_REJECTED, main
from controller.model import Digest
from tests.fixtures.registry import BUNDLE_V03, RegistryServer
from tests.integration.realdata import SHARED

BUNDLE = SHARED / "bundles" / "cosign__oci-attestation.sigstore.json"
REPO = "repo"
SUBJECT = Digest.parse("sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4")
SIGNER = "cody@soyland.com"
ISSUER = "https://github.com/login/oauth"


@pytest.fixture(scope="module")
def bundle_config(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = BUNDLE.read_bytes()
    good = registry.push_referrer_bundle(REPO, SUBJECT, bundle)
    # The same bundle attached to another image: the engine must not accept it for that image.
    other = Digest.of(b"another image")
    stray = registry.push_referrer_bundle(REPO, other, bundle)
    registry.push_referrers_index(REPO, SUBJECT, [(*good, BUNDLE_V03)])
    registry.push_referrers_index(REPO, other, [(*stray, BUNDLE_V03)])
    config = tmp_path_factory.mktemp("bundles") / "registries.yaml"
    config.write_text(registry.registries_yaml())
    return config


@pytest.fixture(scope="module")
def host(registry: RegistryServer) -> str:
    return registry.host


def _verify(config: Path, image: str, subject: str) -> tuple[int, dict[str, object]]:
    out = io.StringIO()
    code = main(
        [
            "verify",
            "--registry-config",
            str(config),
            "-o",
            "json",
            image,
            "--certificate-identity",
            subject,
            "--certificate-oidc-issuer",
            ISSUER,
        ],
        out=out,
    )
    return code, json.loads(out.getvalue())


def test_real_attestation_bundle_is_not_a_signature(bundle_config: Path, host: str) -> None:
    code, result = _verify(bundle_config, f"{host}/{REPO}@{SUBJECT}", SIGNER)
    assert code == EXIT_REJECTED, result
    (image,) = result["images"]  # type: ignore[misc]
    assert image["reason"] == "SignatureNotFound"
    assert "only attestations verified" in image["detail"]


def _policy(tmp_path: Path, subject: str) -> Path:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"""apiVersion: imprimatur.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {{name: attested}}
spec:
  images: [{{glob: "**"}}]
  identities: [{{issuer: "{ISSUER}", subject: "{subject}"}}]
  attestations:
    - name: cosign
      predicateType: https://cosign.sigstore.dev/attestation/v1
"""
    )
    return policy


def test_real_attestation_bundle_is_read_as_an_attestation(
    bundle_config: Path, host: str, tmp_path: Path
) -> None:
    out = io.StringIO()
    code = main(
        [
            "verify",
            "--registry-config",
            str(bundle_config),
            "-o",
            "json",
            "--policy",
            str(_policy(tmp_path, SIGNER)),
            f"{host}/{REPO}@{SUBJECT}",
        ],
        out=out,
    )
    # The policy also needs a signature, and this image has only the attestation.
    assert code == EXIT_REJECTED
    (image,) = json.loads(out.getvalue())["images"]
    assert image["reason"] == "SignatureNotFound"
    assert "only attestations verified (https://cosign.sigstore.dev/attestation/v1" in image["detail"]


def test_real_bundle_rejected_for_another_identity(bundle_config: Path, host: str) -> None:
    code, result = _verify(bundle_config, f"{host}/{REPO}@{SUBJECT}", "mallory@example.com")
    assert code == EXIT_REJECTED
    assert [i["reason"] for i in result["images"]] == ["SignatureNotFound"]  # type: ignore[union-attr]


def test_bundle_for_one_image_does_not_vouch_for_another(bundle_config: Path, host: str) -> None:
    other = Digest.of(b"another image")
    code, result = _verify(bundle_config, f"{host}/{REPO}@{other}", SIGNER)
    assert code == EXIT_REJECTED
    assert [i["reason"] for i in result["images"]] == ["PayloadDigestMismatch"]  # type: ignore[union-attr]
