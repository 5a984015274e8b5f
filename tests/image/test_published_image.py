"""The built image pushed to the test docker-registry over TLS, and the chart pinned to its digest: the
rendered manifests pass the real API server's validation (``kubectl apply --dry-run=server``), and the
Deployment runs exactly that digest."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass

import pytest
import requests
import yaml

from tests.apiserver.harness import kubectl
from tests.apiserver.webhooks import helm_binary
from tests.deploy.helmrun import NAMESPACE, Helm, find
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.registry import OCI_MANIFEST, RegistryServer
from tests.image.conftest import FIGURES, render_text
from tests.image.podman import BuiltImage, ImageError, podman

REPOSITORY = "imprimatur/controller"
TAG = "0.1.0-test"
PUSH_TIMEOUT_SECONDS = 300.0
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class Published:
    repository: str  # host/path, as the chart's image.repository
    digest: str  # sha256:<hex> of the manifest the registry stores


@pytest.fixture(scope="module")
def published(
    built_image: BuiltImage, registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory
) -> Published:
    """``podman push`` to the test registry, trusting its CA (``--cert-dir``); the digest it reports."""
    tmp_path = tmp_path_factory.mktemp("published")
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(registry.ca_file, certs / "ca.crt")
    digest_file = tmp_path / "digest"
    repository = f"{registry.host}/{REPOSITORY}"
    started = time.monotonic()
    try:
        podman(
            "push", "--quiet", f"--cert-dir={certs}", f"--digestfile={digest_file}",
            built_image.name, f"{repository}:{TAG}",
            timeout=PUSH_TIMEOUT_SECONDS,
        )  # fmt: skip
    except ImageError as e:
        pytest.fail(str(e))
    FIGURES.append(f"push: {time.monotonic() - started:.1f} s to {repository}:{TAG}")
    return Published(repository, digest_file.read_text().strip())


def test_the_registry_serves_the_pushed_image_by_its_digest(
    published: Published, registry: RegistryServer, built_image: BuiltImage
) -> None:
    response = requests.get(
        f"{registry.url}/v2/{REPOSITORY}/manifests/{published.digest}",
        headers={"Accept": f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"},
        verify=registry.ca_file,
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == published.digest
    manifest = json.loads(response.content)
    assert manifest["config"]["digest"] == f"sha256:{built_image.id}"  # the very image that ran
    size = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    FIGURES.append(
        f"pushed: {published.digest} ({size / 1e6:.0f} MB compressed, {len(manifest['layers'])} layers)"
    )


PUBLISHED_NAME = "imprimatur-published"


def test_the_chart_pinned_to_the_digest_passes_the_api_server(
    published: Published, apiserver: ApiServer
) -> None:
    # Its own name: the e2e suite shares this API server and registered the chart's webhook
    # configurations as ``imprimatur`` by URL, which an apply of the service form would collide with.
    rendered_args = (
        "--set",
        f"image.repository={published.repository},image.tag={TAG},image.digest={published.digest}",
        "--set",
        f"fullnameOverride={PUBLISHED_NAME}",
    )
    text = render_text(Helm(helm_binary()), *rendered_args)
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    deployment = find(objects, "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers] == [f"{published.repository}:{TAG}@{published.digest}"]

    apiserver.create_namespace(NAMESPACE)
    outcome = kubectl(apiserver, "apply", "--dry-run=server", "-f", "-", stdin=text)
    assert outcome.returncode == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert len(lines) == len(objects)
    assert all(line.endswith("(server dry run)") for line in lines), outcome.stdout
    assert f"deployment.apps/{PUBLISHED_NAME} created (server dry run)" in lines
