"""cosign ``.sig`` images, built as cosign builds them, and pushed to a real registry.

cosign starts from go-containerregistry's ``empty.Image`` (OCI media types) and appends one layer per
signature with ``mutate.Append``; the manifest and config are ``json.Marshal`` output (compact, struct
field order, map keys sorted). For a current cosign, each appended layer adds its diff ID (the payload
digest: static layers are uncompressed) and an empty history entry, and ``created`` stays the zero time,
so the config is deterministic. (cosign 2.0.x stamped ``created`` with the wall clock; ``created`` can
reproduce that.)
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import requests

from controller.model import Digest
from tests.kit.gojson import JSONValue, go_json, sorted_map

OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as v1.Time marshals it

HTTP_TIMEOUT_SECONDS = 10.0  # each request to the test registry
RANDOM_LAYER_BYTES = 512  # size of the filler layer of push_random_image


class LayerLike(Protocol):
    """Anything with a payload blob and layer annotations (a ``SignedLayer``, a :class:`RawLayer`)."""

    @property
    def payload(self) -> bytes: ...

    @property
    def annotations(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class RawLayer:
    """A layer given as bytes and annotations, e.g. a key-based signature or garbage for a tamper test."""

    payload: bytes
    annotations: Mapping[str, str]
    media_type: str = SIMPLESIGNING_MEDIA_TYPE


class Registry(Protocol):
    """What :func:`push_signed_image` needs from a registry (the ``registry`` fixture provides it)."""

    def push_blob(self, repo: str, data: bytes) -> Digest: ...

    def push_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> Digest: ...

    def push_random_image(self, repo: str, tag: str) -> Digest: ...


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def signature_tag(image_digest: Digest | str) -> str:
    """The legacy tag cosign stores signatures under: ``sha256-<hex>.sig``."""
    text = str(image_digest)
    algorithm, _, hexpart = text.partition(":")
    return f"{algorithm}-{hexpart}.sig"


def config_blob(layer_payloads: Sequence[bytes], *, created: str = GO_ZERO_TIME) -> bytes:
    """The config blob of a cosign ``.sig`` image with these layer payloads, byte for byte.

    For one layer this is exactly ``{"architecture":"","created":"0001-01-01T00:00:00Z","history":
    [{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":["sha256:..."]},
    "config":{}}`` (v1.ConfigFile field order; history and diff_ids grow by one per layer).
    """
    document: dict[str, JSONValue] = {
        "architecture": "",
        "created": created,
        "history": [{"created": GO_ZERO_TIME} for _ in layer_payloads],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(p) for p in layer_payloads]},
        "config": {},
    }
    return go_json(document)


@dataclass(frozen=True)
class SigImage:
    """A built ``.sig`` image: manifest bytes, config bytes, and the layer blobs."""

    manifest: bytes
    config: bytes
    blobs: tuple[bytes, ...]

    @property
    def digest(self) -> Digest:
        """The manifest digest."""
        return Digest.of(self.manifest)


def build_sig_image(layers: Sequence[LayerLike], *, created: str = GO_ZERO_TIME) -> SigImage:
    """The ``.sig`` image cosign pushes for ``layers``: compact OCI manifest, one simple-signing
    descriptor per layer carrying its annotations (keys sorted, as Go marshals a map)."""
    payloads = [layer.payload for layer in layers]
    config = config_blob(payloads, created=created)
    descriptors: list[JSONValue] = []
    for layer in layers:
        descriptor: dict[str, JSONValue] = {
            "mediaType": getattr(layer, "media_type", SIMPLESIGNING_MEDIA_TYPE),
            "size": len(layer.payload),
            "digest": sha256_digest(layer.payload),
        }
        if layer.annotations:
            descriptor["annotations"] = sorted_map(dict(layer.annotations))
        descriptors.append(descriptor)
    manifest = go_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": OCI_CONFIG_MEDIA_TYPE,
                "size": len(config),
                "digest": sha256_digest(config),
            },
            "layers": descriptors,
        }
    )
    return SigImage(manifest, config, tuple(payloads))


def push_sig_image(
    registry: Registry, repo: str, image_digest: Digest, layers: Sequence[LayerLike]
) -> Digest:
    """Push a ``.sig`` image for ``image_digest`` under ``sha256-<hex>.sig``; returns its manifest digest."""
    image = build_sig_image(layers)
    registry.push_blob(repo, image.config)
    for blob in image.blobs:
        registry.push_blob(repo, blob)
    return registry.push_manifest(repo, signature_tag(image_digest), image.manifest, OCI_MANIFEST_MEDIA_TYPE)


def push_signed_image(
    registry: Registry,
    repo: str,
    tag: str,
    layers: Sequence[LayerLike] | Callable[[Digest], Sequence[LayerLike]],
) -> Digest:
    """Push a random image as ``repo:tag`` and its ``.sig``; returns the image digest.

    ``layers`` is usually a function from the new image's digest to its signature layers (e.g.
    ``lambda d: [kit.sign_image(str(d), f"{registry.host}/{repo}")]``); a plain sequence is pushed as
    is (for signatures that name some other digest).
    """
    digest = registry.push_random_image(repo, tag)
    chosen = layers(digest) if callable(layers) else layers
    push_sig_image(registry, repo, digest, chosen)
    return digest


class DistributionClient:
    """A minimal client of the Distribution (OCI) push API, for a registry without the fixture.

    Implements :class:`Registry`: monolithic blob upload (POST then PUT), manifest PUT.
    """

    def __init__(self, base_url: str, ca_file: str | os.PathLike[str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        # Passed on every request: a Session-level `verify` loses to REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE.
        self._verify: str | bool = os.fspath(ca_file) if ca_file is not None else True

    def push_blob(self, repo: str, data: bytes) -> Digest:
        """Upload ``data`` (skipped when the registry already has it); returns its digest."""
        digest = Digest.of(data)
        head = self._session.head(
            f"{self.base_url}/v2/{repo}/blobs/{digest}", verify=self._verify, timeout=HTTP_TIMEOUT_SECONDS
        )
        if head.status_code == requests.codes.ok:
            return digest
        start = self._session.post(
            f"{self.base_url}/v2/{repo}/blobs/uploads/", verify=self._verify, timeout=HTTP_TIMEOUT_SECONDS
        )
        start.raise_for_status()
        location = start.headers["Location"]
        if location.startswith("/"):
            location = self.base_url + location
        put = self._session.put(
            location,
            params={"digest": str(digest)},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
            verify=self._verify,
            timeout=HTTP_TIMEOUT_SECONDS,
        )
        put.raise_for_status()
        return digest

    def push_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> Digest:
        """PUT a manifest under ``reference`` (a tag or digest); returns the manifest digest."""
        response = self._session.put(
            f"{self.base_url}/v2/{repo}/manifests/{reference}",
            data=body,
            headers={"Content-Type": media_type},
            verify=self._verify,
            timeout=HTTP_TIMEOUT_SECONDS,
        )
        response.raise_for_status()
        return Digest.of(body)

    def push_random_image(self, repo: str, tag: str) -> Digest:
        """Push a one-layer image with random content as ``repo:tag``; returns its digest."""
        layer = secrets.token_bytes(RANDOM_LAYER_BYTES)
        config = go_json(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]},
                "config": {},
            }
        )
        self.push_blob(repo, layer)
        self.push_blob(repo, config)
        manifest = go_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST_MEDIA_TYPE,
                "config": {
                    "mediaType": OCI_CONFIG_MEDIA_TYPE,
                    "size": len(config),
                    "digest": sha256_digest(config),
                },
                "layers": [
                    {"mediaType": OCI_LAYER_MEDIA_TYPE, "size": len(layer), "digest": sha256_digest(layer)}
                ],
            }
        )
        return self.push_manifest(repo, tag, manifest, OCI_MANIFEST_MEDIA_TYPE)


# --- cosign ≤ 2 attestations: the ``.att`` image (layers from tests/kit/attest.py)


def attestation_tag(image_digest: Digest | str) -> str:
    """The legacy tag cosign stores attestations under: ``sha256-<hex>.att``."""
    algorithm, _, hexpart = str(image_digest).partition(":")
    return f"{algorithm}-{hexpart}.att"


def push_att_image(
    registry: Registry, repo: str, image_digest: Digest, layers: Sequence[LayerLike]
) -> Digest:
    """Push an ``.att`` image for ``image_digest`` (one DSSE layer per attestation, built like a ``.sig``
    image: cosign's ``WriteAttestations`` uses the same empty-image base); returns its manifest digest."""
    image = build_sig_image(layers)
    registry.push_blob(repo, image.config)
    for blob in image.blobs:
        registry.push_blob(repo, blob)
    return registry.push_manifest(
        repo, attestation_tag(image_digest), image.manifest, OCI_MANIFEST_MEDIA_TYPE
    )
