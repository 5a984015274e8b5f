"""The controller's own namespace, and namespace labels handed to the engine."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from controller.admission.namespaces import (
    MAX_LABEL_VALUE,
    NAMESPACE_INDEX,
    NamespaceLabels,
    controller_namespace,
    namespace_labels_of,
)


def test_controller_namespace_order(tmp_path: Path) -> None:
    file = tmp_path / "namespace"
    assert controller_namespace({}, file) is None  # unknown: no TrustRoot reference is followed
    assert controller_namespace({"POD_NAMESPACE": "from-pod"}, file) == "from-pod"
    file.write_text("from-file\n")
    assert controller_namespace({"POD_NAMESPACE": "from-pod"}, file) == "from-file"
    assert controller_namespace({"IMPRIMATUR_NAMESPACE": "explicit"}, file) == "explicit"
    # a malformed explicit value is not silently replaced by a fallback: unknown, fail closed
    assert controller_namespace({"IMPRIMATUR_NAMESPACE": "../etc"}, file) is None
    file.write_text("Not_A_Name")
    assert controller_namespace({}, file) is None


class _Engine:
    def __init__(self) -> None:
        self.maps: list[dict[str, dict[str, str]]] = []

    def set_namespace_labels(self, labels: Mapping[str, Mapping[str, str]]) -> None:
        self.maps.append({n: dict(v) for n, v in labels.items()})


class _Index(dict[str, list[object]]):
    """kopf's index shape: key -> a store (list) of values."""


async def test_labels_are_pushed_only_when_they_change() -> None:
    engine = _Engine()
    tracker = NamespaceLabels(engine)
    index = _Index()
    for name in ("a", "b"):
        for key, value in (await tracker.index(name=name, labels={"team": name})).items():
            index[key] = [value]
    assert tracker.push({NAMESPACE_INDEX: index})
    assert not tracker.push({NAMESPACE_INDEX: index})  # unchanged: the engine is not disturbed
    assert engine.maps == [{"a": {"team": "a"}, "b": {"team": "b"}}]
    del index["b"]  # kopf drops a deleted namespace from the index
    await tracker.on_event(**{NAMESPACE_INDEX: index})
    assert engine.maps[-1] == {"a": {"team": "a"}}
    assert tracker.pushes == 2


async def test_labels_are_bounded_and_typed() -> None:
    tracker = NamespaceLabels(_Engine())
    assert await tracker.index(name="Bad_Name", labels={"x": "y"}) == {}
    assert namespace_labels_of({"ok": "v", "long": "x" * (MAX_LABEL_VALUE + 1), "n": 3}) == {"ok": "v"}
    assert namespace_labels_of(None) == {}
    assert len(namespace_labels_of({f"k{i}": "v" for i in range(1000)})) == 256
