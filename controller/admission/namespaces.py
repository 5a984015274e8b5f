"""Namespaces: the controller's own, and the labels of every namespace in the cluster.

**The controller's namespace** is where TrustRoot ``configMapRef``/``secretRef`` may point, and nowhere
else (a TrustRoot is cluster-scoped; letting it name any namespace would let whoever may write one read
any ConfigMap or Secret through the controller). It is ``IMPRIMATUR_NAMESPACE`` (the chart sets it from
the downward API), else the service account's namespace file, else ``POD_NAMESPACE``. When none is known
it is ``None`` and every reference is refused: fail closed.

**Namespace labels** come only from the Namespace objects, through a kopf index, never from a review.
Whenever the map changes it is handed whole to the engine (``Engine.set_namespace_labels``), where
ClusterImagePolicies with a ``namespaceSelector`` are matched against it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Protocol

log = logging.getLogger(__name__)

NAMESPACE_INDEX: Final = "imprimatur_namespaces"
SERVICE_ACCOUNT_NAMESPACE_FILE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

MAX_LABELS: Final = 256  # per namespace; the API server bounds the total size of labels to 256 KiB
MAX_LABEL_KEY: Final = 317  # prefix (253) + "/" + name (63)
MAX_LABEL_VALUE: Final = 63
_NAME_RE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

NamespaceLabelMap = Mapping[str, Mapping[str, str]]


def valid_namespace_name(name: object) -> bool:
    """Whether ``name`` is an RFC 1123 label, as every namespace name is."""
    return isinstance(name, str) and _NAME_RE.match(name) is not None


def controller_namespace(
    environ: Mapping[str, str], namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE_FILE
) -> str | None:
    """The controller's own namespace, or None when it cannot be known (see the module docstring)."""
    explicit = environ.get("IMPRIMATUR_NAMESPACE")
    if explicit:
        return explicit if valid_namespace_name(explicit) else None
    try:
        with namespace_file.open("rb") as f:
            text = f.read(64).decode("ascii", errors="replace").strip()
    except OSError:
        text = ""
    if valid_namespace_name(text):
        return text
    pod_namespace = environ.get("POD_NAMESPACE", "")
    return pod_namespace if valid_namespace_name(pod_namespace) else None


def namespace_labels_of(labels: object) -> dict[str, str]:
    """The string labels of a Namespace, bounded (anything else in ``metadata.labels`` is dropped)."""
    if not isinstance(labels, Mapping):
        return {}
    kept: dict[str, str] = {}
    for key, value in labels.items():
        if len(kept) >= MAX_LABELS:
            log.warning("a namespace has more than %d labels: the rest are ignored", MAX_LABELS)
            break
        if (
            isinstance(key, str)
            and isinstance(value, str)
            and 0 < len(key) <= MAX_LABEL_KEY
            and len(value) <= MAX_LABEL_VALUE
        ):
            kept[key] = value
    return kept


class LabelSink(Protocol):
    """What receives the namespace labels: the engine."""

    def set_namespace_labels(self, labels: NamespaceLabelMap) -> None: ...


class NamespaceLabels:
    """kopf handlers that keep the engine's map of namespace labels equal to the cluster's."""

    def __init__(self, sink: LabelSink) -> None:
        self._sink = sink
        self._last: dict[str, dict[str, str]] | None = None
        self.pushes = 0  # how many times the engine was handed a new map

    @property
    def current(self) -> NamespaceLabelMap:
        """The map last handed to the engine (empty before the first)."""
        return MappingProxyType(self._last or {})

    async def index(
        self, *, name: str | None, labels: Mapping[str, str] | None, **_: Any
    ) -> dict[str, dict[str, str]]:
        """kopf index handler: one namespace name -> its labels."""
        if not valid_namespace_name(name):
            return {}
        assert isinstance(name, str)  # noqa: S101 - narrowed by valid_namespace_name
        return {name: namespace_labels_of(labels)}

    def push(self, indices: Mapping[str, Any]) -> bool:
        """Hand the engine the labels in the index when they differ from the last map. True if pushed."""
        index = indices.get(NAMESPACE_INDEX)
        if index is None:
            return False
        labels: dict[str, dict[str, str]] = {}
        for name, store in index.items():
            for value in store:
                if isinstance(value, Mapping):
                    labels[str(name)] = {str(k): str(v) for k, v in value.items()}
        if labels == self._last:
            return False
        self._last = labels
        self._sink.set_namespace_labels(
            MappingProxyType({n: MappingProxyType(dict(v)) for n, v in labels.items()})
        )
        self.pushes += 1
        log.debug("namespace labels: %d namespaces", len(labels))
        return True

    async def on_event(self, **kwargs: Any) -> None:
        """kopf event handler for Namespaces (DELETED included: kopf has dropped it from the index)."""
        self.push(kwargs)
