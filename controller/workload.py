"""Finding the pod template, and so the images, in a Kubernetes workload object.

Pure: dictionaries in, typed values out. Knows Pod, PodTemplate, Deployment, ReplicaSet, StatefulSet,
DaemonSet, ReplicationController, Job and CronJob, including the older ``apps/v1beta1``,
``apps/v1beta2``, ``extensions/v1beta1`` and ``batch/v1beta1`` API versions. Any other kind, or a
shape Kubernetes would not accept (containers not a list, an image that is not a string ...), is an
:class:`InputError` with reason ``ManifestDocumentInvalid``: an object we cannot read is never
admitted by default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from controller.errors import InputError, Reason

ContainerKind = Literal["container", "initContainer", "ephemeralContainer", "imageVolume"]

MAX_CONTAINERS: Final = 256  # per list; Kubernetes sets no limit, a pod with more is not serious
MAX_VOLUMES: Final = 1024
MAX_IMAGE_LENGTH: Final = 4096
MAX_PULL_SECRETS: Final = 256
DEFAULT_SERVICE_ACCOUNT: Final = "default"

# (group, kind) -> the path from the object to its pod spec
_POD_SPEC_PATHS: Final[Mapping[tuple[str, str], tuple[str, ...]]] = {
    ("", "Pod"): ("spec",),
    ("", "PodTemplate"): ("template", "spec"),
    ("", "ReplicationController"): ("spec", "template", "spec"),
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("extensions", "Deployment"): ("spec", "template", "spec"),
    ("extensions", "ReplicaSet"): ("spec", "template", "spec"),
    ("extensions", "DaemonSet"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}
_VERSIONS: Final[Mapping[str, frozenset[str]]] = {
    "": frozenset({"v1"}),
    "apps": frozenset({"v1", "v1beta1", "v1beta2"}),
    "extensions": frozenset({"v1beta1"}),
    "batch": frozenset({"v1", "v1beta1", "v2alpha1"}),
}
_CONTAINER_LISTS: Final[tuple[tuple[str, ContainerKind], ...]] = (
    ("initContainers", "initContainer"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeralContainer"),
)


@dataclass(frozen=True, slots=True)
class ContainerImage:
    """One container of a pod template and the image it runs, exactly as written."""

    container: str
    kind: ContainerKind
    image: str


def _invalid(detail: str) -> InputError:
    return InputError(Reason.MANIFEST_DOCUMENT_INVALID, detail)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _mapping(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise _invalid(f"{path} must be a mapping, not {_type_name(value)}")
    return value


def _list(value: object, path: str, maximum: int) -> Sequence[object]:
    if not isinstance(value, list | tuple):
        raise _invalid(f"{path} must be a list, not {_type_name(value)}")
    if len(value) > maximum:
        raise _invalid(f"{path} has {len(value)} entries; at most {maximum} are allowed")
    return value


def _string(value: object, path: str, maximum: int) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{path} must be a string, not {_type_name(value)}")
    if not value.strip():
        raise _invalid(f"{path} must not be empty")
    if len(value) > maximum:
        raise _invalid(f"{path} is longer than {maximum} characters")
    return value


def _describe(obj: Mapping[str, object]) -> str:
    kind = obj.get("kind")
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return f"{kind if isinstance(kind, str) else '?'} {name if isinstance(name, str) else '?'}"[:200]


def _spec_path(obj: Mapping[str, object]) -> tuple[str, ...]:
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise _invalid("the object has no apiVersion or kind")
    group, _, version = api_version.rpartition("/")
    path = _POD_SPEC_PATHS.get((group, kind))
    if path is None or version not in _VERSIONS[group]:
        raise _invalid(f"{api_version:.80} {kind:.80} is not a kind of workload this controller knows")
    return path


def pod_spec_of(obj: Mapping[str, object]) -> Mapping[str, object]:
    """The pod spec of a Pod or of a workload's pod template.

    Raises :class:`InputError` (``ManifestDocumentInvalid``) for an unknown kind or a missing spec.
    """
    if not isinstance(obj, Mapping):
        raise _invalid(f"a workload must be a mapping, not {_type_name(obj)}")
    path = _spec_path(obj)
    node: Mapping[str, object] = obj
    walked = ""
    for key in path:
        walked = f"{walked}.{key}" if walked else key
        node = _mapping(node.get(key), f"{_describe(obj)}: {walked}")
    return node


def pod_spec_path(obj: Mapping[str, object]) -> tuple[str, ...]:
    """The keys from the object to its pod spec (``("spec",)`` for a Pod), for building JSON patches.

    Raises :class:`InputError` (``ManifestDocumentInvalid``) like :func:`pod_spec_of`.
    """
    pod_spec_of(obj)
    return _spec_path(obj)


def images_of(obj: Mapping[str, object]) -> list[ContainerImage]:
    """Every image the pod runs or mounts: init containers first, then containers, then ephemeral
    ones, then image volumes (``spec.volumes[].image.reference``, Kubernetes ImageVolume: a pod can
    mount an image and run a binary from it, so it is verified like a container's).

    Raises :class:`InputError` (``ManifestDocumentInvalid``) for an unknown kind, a missing or empty
    ``containers`` list, a container that is not a mapping, or a missing, empty or non-string
    ``name`` or ``image``; and for an image volume without a string ``reference``.
    """
    spec = pod_spec_of(obj)
    images: list[ContainerImage] = []
    for field_name, kind in _CONTAINER_LISTS:
        raw = spec.get(field_name)
        if raw is None:
            if field_name == "containers":
                raise _invalid(f"{_describe(obj)}: the pod spec has no containers")
            continue
        if isinstance(raw, list | tuple) and len(raw) <= MAX_CONTAINERS:
            containers: Sequence[object] = raw
        else:
            containers = _list(raw, f"{_describe(obj)}: {field_name}", MAX_CONTAINERS)  # raises, saying why
        if field_name == "containers" and not containers:
            raise _invalid(f"{_describe(obj)}: the pod spec has no containers")
        for i, entry in enumerate(containers):
            # The common case costs no message formatting; anything unusual takes the checked path.
            if isinstance(entry, Mapping):
                name, image = entry.get("name"), entry.get("image")
                if (
                    isinstance(name, str)
                    and isinstance(image, str)
                    and 0 < len(name) <= 253
                    and 0 < len(image) <= MAX_IMAGE_LENGTH
                    and name.strip()
                    and image.strip()
                ):
                    images.append(ContainerImage(container=name, kind=kind, image=image))
                    continue
            images.append(_checked_container(entry, f"{_describe(obj)}: {field_name}[{i}]", kind))
    if spec.get("volumes") is not None:
        images.extend(_image_volumes(spec, _describe(obj)))
    return images


def _checked_container(entry: object, path: str, kind: ContainerKind) -> ContainerImage:
    container = _mapping(entry, path)
    name = _string(container.get("name"), f"{path}.name", 253)
    image = _string(container.get("image"), f"{path}.image", MAX_IMAGE_LENGTH)
    return ContainerImage(container=name, kind=kind, image=image)


def _image_volumes(spec: Mapping[str, object], where: str) -> list[ContainerImage]:
    raw = spec.get("volumes")
    if raw is None:
        return []
    found: list[ContainerImage] = []
    for i, entry in enumerate(_list(raw, f"{where}: volumes", MAX_VOLUMES)):
        path = f"{where}: volumes[{i}]"
        volume = _mapping(entry, path)
        source = volume.get("image")
        if source is None:
            continue
        image = _mapping(source, f"{path}.image")
        name = _string(volume.get("name"), f"{path}.name", 253)
        reference = _string(image.get("reference"), f"{path}.image.reference", MAX_IMAGE_LENGTH)
        found.append(ContainerImage(container=name, kind="imageVolume", image=reference))
    return found


def image_pull_secret_names(obj: Mapping[str, object]) -> list[str]:
    """The names in the pod spec's ``imagePullSecrets``, in order (entries without a name skipped)."""
    spec = pod_spec_of(obj)
    raw = spec.get("imagePullSecrets")
    if raw is None:
        return []
    where = f"{_describe(obj)}: imagePullSecrets"
    names: list[str] = []
    for i, entry in enumerate(_list(raw, where, MAX_PULL_SECRETS)):
        reference = _mapping(entry, f"{where}[{i}]")
        name = reference.get("name")
        if name is None or name == "":
            continue
        names.append(_string(name, f"{where}[{i}].name", 253))
    return names


def service_account_name(obj: Mapping[str, object]) -> str:
    """The pod's service account: ``serviceAccountName``, else the deprecated ``serviceAccount``, else
    ``default``."""
    spec = pod_spec_of(obj)
    where = _describe(obj)
    for key in ("serviceAccountName", "serviceAccount"):
        value = spec.get(key)
        if value is not None and value != "":
            return _string(value, f"{where}: {key}", 253)
    return DEFAULT_SERVICE_ACCOUNT
