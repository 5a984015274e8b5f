"""The ``.sig`` image builder, Go-style JSON, and pushing to the real test registry."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import requests

from controller.model import Digest
from tests.fixtures.registry import RegistryServer
from tests.kit.gojson import go_json, sorted_map
from tests.kit.oci import (
    GO_ZERO_TIME,
    OCI_MANIFEST_MEDIA_TYPE,
    SIMPLESIGNING_MEDIA_TYPE,
    DistributionClient,
    RawLayer,
    build_sig_image,
    config_blob,
    push_signed_image,
    signature_tag,
)
from tests.kit.sigstore import SignedLayer, SigstoreKit

HTTP_TIMEOUT_SECONDS = 10.0


def test_go_json_escapes_like_go() -> None:
    assert go_json({"a": "<b>&\u2028\u2029é", "n": None, "t": True, "i": 3}) == (
        '{"a":"\\u003cb\\u003e\\u0026\\u2028\\u2029é","n":null,"t":true,"i":3}'.encode()
    )


def test_sorted_map_sorts_nested_maps_by_bytes() -> None:
    assert list(sorted_map({"b": 1, "B": 2, "a": {"z": 1, "y": 2}})) == ["B", "a", "b"]
    nested = sorted_map({"a": {"z": 1, "y": 2}})["a"]
    assert isinstance(nested, dict)
    assert list(nested) == ["y", "z"]


def test_signature_tag() -> None:
    assert signature_tag(Digest("sha256", "ab" * 32)) == "sha256-" + "ab" * 32 + ".sig"
    assert signature_tag("sha256:" + "cd" * 32) == "sha256-" + "cd" * 32 + ".sig"


@pytest.mark.parametrize("count", [1, 2, 5])
def test_config_blob_grows_one_diff_id_and_history_entry_per_layer(count: int) -> None:
    payloads = [f"payload {i}".encode() for i in range(count)]
    config = json.loads(config_blob(payloads))
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(p).hexdigest() for p in payloads]
    assert config["history"] == [{"created": GO_ZERO_TIME}] * count
    assert config["created"] == GO_ZERO_TIME
    assert list(config) == ["architecture", "created", "history", "os", "rootfs", "config"]


def test_manifest_is_compact_and_in_go_struct_order(sigstore_kit: SigstoreKit) -> None:
    layer = sigstore_kit.sign_image("sha256:" + "ab" * 32, "registry.example/app")
    image = build_sig_image([layer])
    manifest: dict[str, Any] = json.loads(image.manifest)
    assert go_json(manifest) == image.manifest
    assert list(manifest) == ["schemaVersion", "mediaType", "config", "layers"]
    [descriptor] = manifest["layers"]
    assert list(descriptor) == ["mediaType", "size", "digest", "annotations"]
    assert descriptor["mediaType"] == SIMPLESIGNING_MEDIA_TYPE
    assert descriptor["digest"] == str(layer.digest)
    assert descriptor["annotations"] == layer.annotations
    assert manifest["config"]["digest"] == "sha256:" + hashlib.sha256(image.config).hexdigest()


def test_layer_without_annotations_has_no_annotations_field() -> None:
    image = build_sig_image([RawLayer(b"{}", {})])
    assert "annotations" not in json.loads(image.manifest)["layers"][0]


# --- pushing to the real registry (the session `registry` fixture, docker-registry over TLS)


def _get(url: str, ca_file: str, accept: str | None = None) -> requests.Response:
    headers = {"Accept": accept} if accept else {}
    response = requests.get(url, verify=ca_file, headers=headers, timeout=HTTP_TIMEOUT_SECONDS)
    response.raise_for_status()
    return response


def test_push_signed_image_stores_the_sig_under_its_tag(
    sigstore_kit: SigstoreKit, registry: RegistryServer
) -> None:
    repo = "kit/pushed"
    made: list[SignedLayer] = []

    def sign(digest: Digest) -> list[SignedLayer]:
        made.append(sigstore_kit.sign_image(str(digest), f"{registry.host}/{repo}"))
        return made

    digest = push_signed_image(registry, repo, "v1", sign)
    ca_file = str(registry.ca_file)
    image = _get(f"{registry.url}/v2/{repo}/manifests/v1", ca_file, OCI_MANIFEST_MEDIA_TYPE)
    assert Digest.of(image.content) == digest
    sig = _get(
        f"{registry.url}/v2/{repo}/manifests/{signature_tag(digest)}", ca_file, OCI_MANIFEST_MEDIA_TYPE
    )
    assert sig.content == build_sig_image(made).manifest  # stored byte for byte
    [descriptor] = json.loads(sig.content)["layers"]
    blob = _get(f"{registry.url}/v2/{repo}/blobs/{descriptor['digest']}", ca_file)
    assert blob.content == made[0].payload
    assert json.loads(blob.content)["critical"]["image"]["docker-manifest-digest"] == str(digest)


def test_distribution_client_pushes_to_the_registry(registry: RegistryServer) -> None:
    client = DistributionClient(registry.url, registry.ca_file)
    repo = "kit/client"
    digest = client.push_random_image(repo, "latest")
    layers = [RawLayer(b'{"k":1}', {"a": "b"}), RawLayer(b'{"k":2}', {})]
    image = build_sig_image(layers)
    for blob in (image.config, *image.blobs):
        assert client.push_blob(repo, blob) == Digest.of(blob)
        assert client.push_blob(repo, blob) == Digest.of(blob)  # a second push is a no-op
    assert (
        client.push_manifest(repo, signature_tag(digest), image.manifest, OCI_MANIFEST_MEDIA_TYPE)
        == image.digest
    )
    ca_file = str(registry.ca_file)
    fetched = _get(
        f"{registry.url}/v2/{repo}/manifests/{signature_tag(digest)}", ca_file, OCI_MANIFEST_MEDIA_TYPE
    )
    assert fetched.content == image.manifest
    assert _get(f"{registry.url}/v2/{repo}/blobs/{Digest.of(image.config)}", ca_file).content == image.config
