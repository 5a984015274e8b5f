"""Digest pinning: which images to pin, the JSON patch that pins them, and the verified-images record.

Pure: objects and verdicts in, a JSON patch out; no kopf, no I/O. The mutating webhook
(:mod:`controller.admission.mutation`) decides a Pod's images with the same engine as the validating
webhook, then rewrites each tag it verified to ``tag@digest``: ``app:1.4`` becomes
``app:1.4@sha256:<verified>``, so the kubelet pulls exactly what was verified.

**What is pinned.** Only images whose verdict is allowed and carries a digest; a denied image is left as
written (the validating webhook denies it, with its reason). An image that already names a digest is
never rewritten, so a second call on a pinned object is an empty patch (reinvocation, retries).

**Who decides whether to pin** (:func:`effective_mode`; ``off`` < ``pods`` < ``workloads``):

* the controller setting (``IMPRIMATUR_PINNING``, default ``pods``);
* a ClusterImagePolicy's ``spec.pinning`` replaces the setting for the images it governs (a cluster
  admin writes both); several such policies: the strictest;
* an ImagePolicy's ``spec.pinning`` can only raise it in its namespace, never lower it: a namespace
  cannot turn off the pinning the cluster asks for.

**The record** (:data:`ANNOTATION`): a JSON object, image as written (without the pinned digest) ->
``{"signer", "issuer", "digest"}`` (in that order: ``kubectl describe`` cuts long values); the signer
is the certificate subject, or the key id of a key-signed image. Images in sorted order, compact, at
most :data:`MAX_ANNOTATION_BYTES`. It is written only by this webhook, on a Pod in which it pins an
image (then every verified image of the Pod is recorded, those written by digest too), or that names
the record (now, or in its stored version). A Pod in which nothing is pinned and that names no record
(every image written by digest, or pinning off for its tags) gets none: its spec already says what
runs, so the chart's ``matchConditions`` do not even send it (the same answer: no patch). On CREATE
whatever record the Pod carried is replaced (a forged record never survives, and a reinvocation
computes the same record again); on UPDATE the stored record
(which this webhook wrote) is kept for the images still present at the digest they are pinned to, and
new images are added. ``kubectl annotate`` cannot forge it either. Not on ``pods/ephemeralcontainers``
updates: the API server keeps only the ephemeral containers of those, so there the images are pinned,
not recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from controller.model import ImageVerdict
from controller.workload import MAX_CONTAINERS, MAX_VOLUMES, images_of, pod_spec_path

PinMode = Literal["off", "pods", "workloads"]
PIN_MODES: Final[tuple[PinMode, ...]] = ("off", "pods", "workloads")
_RANK: Final[Mapping[PinMode, int]] = {"off": 0, "pods": 1, "workloads": 2}

ANNOTATION: Final = "imprimatur.dev/verified-images"
MAX_ANNOTATION_BYTES: Final = 16 * 1024
MAX_RECORD_FIELD_CHARS: Final = 512
_CONTAINER_LISTS: Final = ("initContainers", "containers", "ephemeralContainers")

JsonPatch = list[dict[str, object]]


@dataclass(frozen=True, slots=True)
class ImageSite:
    """Where one image is written in an object: its JSON pointer and the image there."""

    pointer: str
    image: str


@dataclass(frozen=True, slots=True)
class VerifiedImage:
    """One entry of the verified-images record."""

    digest: str
    signer: str
    issuer: str

    def as_json(self) -> dict[str, str]:
        # signer first: ``kubectl describe`` cuts long annotation values, and who signed is the point
        return {"signer": self.signer, "issuer": self.issuer, "digest": self.digest}


def effective_mode(
    setting: PinMode, cluster: Iterable[PinMode | None], namespaced: Iterable[PinMode | None]
) -> PinMode:
    """The pinning for one image: ClusterImagePolicies' own fields replace the setting (the strictest of
    them), and the namespace's ImagePolicies can only raise the result."""
    chosen = [mode for mode in cluster if mode is not None]
    base = max(chosen, key=_RANK.__getitem__) if chosen else setting
    raised = [mode for mode in namespaced if mode is not None]
    return max([base, *raised], key=_RANK.__getitem__)


def pins_at_least(mode: PinMode, wanted: PinMode) -> bool:
    """Whether ``mode`` pins at least as much as ``wanted``."""
    return _RANK[mode] >= _RANK[wanted]


def record_key(image: str) -> str:
    """The record's key for an image: as written, without a digest it was pinned to (``app:1.4@sha256:..``
    -> ``app:1.4``), so the record of a pinned Pod is the record of the Pod before pinning. A reference
    by digest alone keeps its digest (``app@sha256:..``)."""
    name, at, _ = image.partition("@")
    if not at:
        return image
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else image


def pinned(image: str, verdict: ImageVerdict) -> str | None:
    """``image@digest`` when the verdict allows the image at a digest and the image names none; else None."""
    if not verdict.allowed or verdict.digest is None or "@" in image:
        return None
    return f"{image}@{verdict.digest}"


def verified_entry(verdict: ImageVerdict) -> VerifiedImage | None:
    """The record entry for an allowed verdict with a digest and a signer; None otherwise."""
    if not verdict.allowed or verdict.digest is None or not verdict.signers:
        return None
    signer = verdict.signers[0]
    return VerifiedImage(
        str(verdict.digest),
        (signer.subject or signer.key_id)[:MAX_RECORD_FIELD_CHARS],
        signer.issuer[:MAX_RECORD_FIELD_CHARS],
    )


def _pointer_token(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def image_sites(obj: Mapping[str, object]) -> list[ImageSite]:
    """Every image of a Pod or workload template with its JSON pointer, in :func:`images_of` order.

    Raises :class:`~controller.errors.InputError` (``ManifestDocumentInvalid``) as :func:`images_of` does:
    the shape is checked there first, so the walk below reads only what it proved.
    """
    images_of(obj)  # checks every list, entry and string, and the bounds
    path = pod_spec_path(obj)
    spec: Mapping[str, object] = obj
    for key in path:
        node = spec[key]
        assert isinstance(node, Mapping)  # noqa: S101 - checked by images_of
        spec = node
    base = "/" + "/".join(_pointer_token(k) for k in path)
    sites: list[ImageSite] = []
    for field_name in _CONTAINER_LISTS:
        entries = spec.get(field_name)
        if not isinstance(entries, list | tuple):
            continue
        for i, entry in enumerate(entries[:MAX_CONTAINERS]):
            if isinstance(entry, Mapping) and isinstance(entry.get("image"), str):
                sites.append(ImageSite(f"{base}/{field_name}/{i}/image", str(entry["image"])))
    volumes = spec.get("volumes")
    if isinstance(volumes, list | tuple):
        for i, volume in enumerate(volumes[:MAX_VOLUMES]):
            source = volume.get("image") if isinstance(volume, Mapping) else None
            if isinstance(source, Mapping) and isinstance(source.get("reference"), str):
                sites.append(ImageSite(f"{base}/volumes/{i}/image/reference", str(source["reference"])))
    return sites


def encode_record(entries: Mapping[str, VerifiedImage]) -> tuple[str | None, int]:
    """The annotation value (keys sorted, compact JSON) and how many entries did not fit in
    :data:`MAX_ANNOTATION_BYTES` (the last ones in key order are left out); None when empty."""
    out: dict[str, dict[str, str]] = {}
    size = 2
    omitted = 0
    for key in sorted(entries):
        item = {key: entries[key].as_json()}
        cost = len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()) - 1
        if size + cost > MAX_ANNOTATION_BYTES:
            omitted += 1
            continue
        out.update(item)
        size += cost
    if not out:
        return None, omitted
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False), omitted  # images in key order


def decode_record(value: object) -> dict[str, VerifiedImage]:
    """A stored record, strictly: anything but a JSON object of string fields is no record at all."""
    if not isinstance(value, str) or len(value) > MAX_ANNOTATION_BYTES:
        return {}
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, VerifiedImage] = {}
    for key, entry in data.items():
        if not isinstance(entry, dict) or set(entry) != {"digest", "signer", "issuer"}:
            return {}
        fields = [entry["digest"], entry["signer"], entry["issuer"]]
        if not all(isinstance(f, str) and len(f) <= MAX_RECORD_FIELD_CHARS for f in fields):
            return {}
        out[str(key)] = VerifiedImage(*(str(f) for f in fields))
    return out


def annotations_of(obj: Mapping[str, object] | None) -> Mapping[str, object] | None:
    meta = obj.get("metadata") if obj is not None else None
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    return annotations if isinstance(annotations, Mapping) else None


def carries_record(obj: Mapping[str, object] | None) -> bool:
    """Whether the object's annotations name the record (whatever its value)."""
    annotations = annotations_of(obj)
    return annotations is not None and ANNOTATION in annotations


def merged_record(
    images: Sequence[str],
    fresh: Mapping[str, VerifiedImage],
    old: Mapping[str, object] | None,
) -> dict[str, VerifiedImage]:
    """The record for an object whose images are ``images`` (after pinning): ``fresh`` entries (verified
    now, by record key) over the entries of ``old`` (the stored object, on UPDATE) that are still true,
    that is, for an image still present and pinned to the entry's digest. The incoming object's own
    annotation is never read."""
    present: dict[str, str] = {}
    for image in images:
        _, at, digest = image.partition("@")
        if at:
            present[record_key(image)] = digest
    stored = annotations_of(old)
    recorded = decode_record(stored.get(ANNOTATION)) if stored is not None else {}
    kept = {key: entry for key, entry in recorded.items() if present.get(key) == entry.digest}
    wanted = {record_key(image) for image in images}
    kept.update({key: entry for key, entry in fresh.items() if key in wanted})
    return kept


def build_patch(
    obj: Mapping[str, object],
    pins: Mapping[str, str],
    *,
    record: str | None = None,
    manage_record: bool = False,
    sites: Sequence[ImageSite] | None = None,
) -> JsonPatch:
    """The JSON patch (RFC 6902) that rewrites every image in ``pins`` to its pinned form and, when
    ``manage_record``, sets the record annotation to ``record`` (removes it when None). Empty when
    there is nothing to change. ``sites``: :func:`image_sites` of ``obj``, when the caller has them."""
    patch: JsonPatch = [
        {"op": "replace", "path": site.pointer, "value": pins[site.image]}
        for site in (image_sites(obj) if sites is None else sites)
        if site.image in pins and pins[site.image] != site.image
    ]
    if manage_record:
        patch.extend(_record_ops(obj, record))
    return patch


def _record_ops(obj: Mapping[str, object], record: str | None) -> JsonPatch:
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    current = annotations.get(ANNOTATION) if isinstance(annotations, Mapping) else None
    if current == record:
        return []
    pointer = f"/metadata/annotations/{_pointer_token(ANNOTATION)}"
    if record is None:
        return [{"op": "remove", "path": pointer}]
    if not isinstance(meta, Mapping):
        return [{"op": "add", "path": "/metadata", "value": {"annotations": {ANNOTATION: record}}}]
    if not isinstance(annotations, Mapping):
        return [{"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION: record}}]
    return [{"op": "add", "path": pointer, "value": record}]
