"""OCI / Docker manifests and indexes: media types, and strict parsers into typed values.

Parsers refuse what they cannot trust: invalid or duplicate-key JSON, a wrong ``schemaVersion``, a
descriptor without a valid digest or size, annotations that are not ``str -> str``. Those are
:class:`EvidenceError` (ManifestInvalid). Unknown fields are ignored, as the OCI image spec requires.
Counts are bounded before anything is built (:class:`LimitError`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.errors import EvidenceError, InputError, LimitError, Reason
from controller.model import Digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = IMAGE_MANIFEST_TYPES | INDEX_TYPES

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
"""The layer media type of a cosign signature on a ``sha256-<hex>.sig`` manifest."""

SIGSTORE_BUNDLE_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
    }
)
"""Sigstore bundle media types (protobuf-specs ``MediaType``), as artifactType or layer type."""

SCHEMA_VERSION = 2


def _invalid(detail: str) -> EvidenceError:
    return EvidenceError(Reason.MANIFEST_INVALID, detail)


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest as fetched: its media type, its exact bytes, and their digest (checked)."""

    media_type: str
    body: bytes
    digest: Digest


@dataclass(frozen=True, slots=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """An OCI image manifest or a Docker schema-2 manifest."""

    media_type: str | None
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    subject: Descriptor | None = None


@dataclass(frozen=True, slots=True)
class ImageIndex:
    """An OCI image index or a Docker manifest list (also the answer of the referrers API)."""

    media_type: str | None
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


def reject_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A ``json.loads`` object hook: a repeated key is an error, never a silent last-one-wins."""
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> object:
    raise ValueError(f"non-standard JSON constant {name}")


def load_json_object(body: bytes, what: str) -> dict[str, object]:
    """Strict JSON: UTF-8, an object at the top, no duplicate keys, no NaN/Infinity."""
    try:
        document = json.loads(
            body.decode("utf-8"), object_pairs_hook=reject_duplicate_keys, parse_constant=_no_constants
        )
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise _invalid(f"{what} is not valid JSON: {e}") from e
    if not isinstance(document, dict):
        raise _invalid(f"{what} is not a JSON object")
    return document


def _optional_string(document: Mapping[str, object], key: str, what: str) -> str | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"{what}: {key!r} must be a string")
    return value


def parse_annotations(value: object, what: str) -> dict[str, str]:
    """Annotations: a map of strings to strings (or absent)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"{what}: annotations must be an object")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise _invalid(f"{what}: annotation {str(key)[:80]!r} is not a string")
        out[key] = item
    return out


def parse_descriptor(value: object, what: str) -> Descriptor:
    """One descriptor: ``mediaType``, ``digest`` (sha256/sha512), ``size`` >= 0, optional extras."""
    if not isinstance(value, dict):
        raise _invalid(f"{what} is not an object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{what}: mediaType missing")
    digest_text = value.get("digest")
    if not isinstance(digest_text, str):
        raise _invalid(f"{what}: digest missing")
    try:
        digest = Digest.parse(digest_text)
    except InputError as e:
        raise _invalid(f"{what}: digest {digest_text[:80]!r} is not sha256/sha512") from e
    size = value.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise _invalid(f"{what}: size must be a non-negative integer")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        annotations=parse_annotations(value.get("annotations"), what),
        artifact_type=_optional_string(value, "artifactType", what),
    )


def _check_schema(document: Mapping[str, object], allowed: frozenset[str], what: str) -> str | None:
    version = document.get("schemaVersion")
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise _invalid(f"{what}: schemaVersion must be 2")
    media_type = _optional_string(document, "mediaType", what)
    if media_type is not None and media_type not in allowed:
        raise _invalid(f"{what}: mediaType {media_type[:100]!r} is not one of {sorted(allowed)}")
    return media_type


def parse_image_manifest(body: bytes, *, max_layers: int, what: str = "manifest") -> ImageManifest:
    """Parse an image manifest; more than ``max_layers`` layers is a :class:`LimitError`."""
    document = load_json_object(body, what)
    media_type = _check_schema(document, IMAGE_MANIFEST_TYPES, what)
    if "manifests" in document:
        raise _invalid(f"{what} is an index, not an image manifest")
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise _invalid(f"{what}: layers must be a list")
    if len(layers) > max_layers:
        raise LimitError(f"{what} has {len(layers)} layers; the limit is {max_layers}")
    subject = document.get("subject")
    return ImageManifest(
        media_type=media_type,
        config=parse_descriptor(document.get("config"), f"{what} config"),
        layers=tuple(parse_descriptor(layer, f"{what} layer {i}") for i, layer in enumerate(layers)),
        annotations=parse_annotations(document.get("annotations"), what),
        artifact_type=_optional_string(document, "artifactType", what),
        subject=None if subject is None else parse_descriptor(subject, f"{what} subject"),
    )


def parse_index(body: bytes, *, max_children: int, what: str = "index") -> ImageIndex:
    """Parse an image index; more than ``max_children`` entries is a :class:`LimitError`."""
    document = load_json_object(body, what)
    media_type = _check_schema(document, INDEX_TYPES, what)
    manifests = document.get("manifests")
    if not isinstance(manifests, list):
        raise _invalid(f"{what}: manifests must be a list")
    if len(manifests) > max_children:
        raise LimitError(f"{what} lists {len(manifests)} manifests; the limit is {max_children}")
    return ImageIndex(
        media_type=media_type,
        manifests=tuple(parse_descriptor(m, f"{what} entry {i}") for i, m in enumerate(manifests)),
        annotations=parse_annotations(document.get("annotations"), what),
    )
