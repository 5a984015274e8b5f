"""Tests for controller/workload.py: pod templates and images of Kubernetes workloads."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import InputError, Reason
from controller.workload import (
    MAX_CONTAINERS,
    ContainerImage,
    image_pull_secret_names,
    images_of,
    pod_spec_of,
    service_account_name,
)

POD_SPEC: dict[str, Any] = {
    "serviceAccountName": "app",
    "imagePullSecrets": [{"name": "ghcr-pull"}, {"name": "mirror-pull"}],
    "initContainers": [{"name": "migrate", "image": "ghcr.io/acme/migrate:v1.2.3"}],
    "containers": [
        {
            "name": "app",
            "image": "ghcr.io/acme/app@sha256:" + "31dc72a1" * 8,
            "ports": [{"containerPort": 8080}],
            "resources": {"limits": {"cpu": "500m"}},
        },
        {"name": "proxy", "image": "envoyproxy/envoy:v1.31.0"},
    ],
    "ephemeralContainers": [{"name": "debugger", "image": "busybox:1.36", "targetContainerName": "app"}],
}
EXPECTED = [
    ContainerImage("migrate", "initContainer", "ghcr.io/acme/migrate:v1.2.3"),
    ContainerImage("app", "container", "ghcr.io/acme/app@sha256:" + "31dc72a1" * 8),
    ContainerImage("proxy", "container", "envoyproxy/envoy:v1.31.0"),
    ContainerImage("debugger", "ephemeralContainer", "busybox:1.36"),
]


def _template() -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "acme"}}, "spec": copy.deepcopy(POD_SPEC)}


def _workload(api_version: str, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "acme", "namespace": "team-a"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "acme"}}, "template": _template()},
    }


def _pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "acme-7d9f"},
        "spec": copy.deepcopy(POD_SPEC),
    }


def _pod_template() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "acme"}, "template": _template()}


def _job(api_version: str = "batch/v1") -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "Job",
        "metadata": {"name": "acme-migrate"},
        "spec": {"backoffLimit": 2, "template": _template()},
    }


def _cron_job(api_version: str = "batch/v1") -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "CronJob",
        "metadata": {"name": "acme-nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": _template()}}},
    }


KINDS: dict[str, dict[str, Any]] = {
    "Pod": _pod(),
    "PodTemplate": _pod_template(),
    "Deployment": _workload("apps/v1", "Deployment"),
    "Deployment apps/v1beta1": _workload("apps/v1beta1", "Deployment"),
    "Deployment extensions/v1beta1": _workload("extensions/v1beta1", "Deployment"),
    "ReplicaSet": _workload("apps/v1", "ReplicaSet"),
    "StatefulSet": _workload("apps/v1", "StatefulSet"),
    "StatefulSet apps/v1beta2": _workload("apps/v1beta2", "StatefulSet"),
    "DaemonSet": _workload("apps/v1", "DaemonSet"),
    "DaemonSet extensions/v1beta1": _workload("extensions/v1beta1", "DaemonSet"),
    "ReplicationController": _workload("v1", "ReplicationController"),
    "Job": _job(),
    "CronJob": _cron_job(),
    "CronJob batch/v1beta1": _cron_job("batch/v1beta1"),
}


@pytest.mark.parametrize("obj", KINDS.values(), ids=KINDS.keys())
def test_images_of_every_kind(obj: dict[str, Any]) -> None:
    assert images_of(obj) == EXPECTED
    assert image_pull_secret_names(obj) == ["ghcr-pull", "mirror-pull"]
    assert service_account_name(obj) == "app"
    assert pod_spec_of(obj)["containers"] == POD_SPEC["containers"]


def test_plain_pod_with_defaults() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nginx"},
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}], "initContainers": None},
    }
    assert images_of(pod) == [ContainerImage("nginx", "container", "nginx:1.27")]
    assert image_pull_secret_names(pod) == []
    assert service_account_name(pod) == "default"


def test_deprecated_service_account_field() -> None:
    pod = _pod()
    del pod["spec"]["serviceAccountName"]
    pod["spec"]["serviceAccount"] = "legacy"
    assert service_account_name(pod) == "legacy"


def test_pull_secret_entries_without_a_name_are_skipped() -> None:
    pod = _pod()
    pod["spec"]["imagePullSecrets"] = [{}, {"name": ""}, {"name": "ghcr-pull"}]
    assert image_pull_secret_names(pod) == ["ghcr-pull"]


def _mutated(
    path: tuple[str | int, ...], value: object, base: dict[str, Any] | None = None
) -> dict[str, Any]:
    obj = copy.deepcopy(base if base is not None else _pod())
    node: Any = obj
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return obj


_DELETE = object()

MALFORMED: dict[str, dict[str, Any]] = {
    "unknown kind": _mutated(("kind",), "Service"),
    "custom resource named like a workload": _mutated(
        ("apiVersion",), "example.com/v1", _workload("apps/v1", "Deployment")
    ),
    "unknown version": _mutated(("apiVersion",), "apps/v2", _workload("apps/v1", "Deployment")),
    "Pod in the apps group": _mutated(("apiVersion",), "apps/v1"),
    "StatefulSet in extensions": _mutated(
        ("apiVersion",), "extensions/v1beta1", _workload("apps/v1", "StatefulSet")
    ),
    "no kind": _mutated(("kind",), _DELETE),
    "no apiVersion": _mutated(("apiVersion",), _DELETE),
    "no spec": _mutated(("spec",), _DELETE),
    "spec a list": _mutated(("spec",), []),
    "no template": _mutated(("spec", "template"), _DELETE, _workload("apps/v1", "Deployment")),
    "template spec null": _mutated(("spec", "template", "spec"), None, _workload("apps/v1", "Deployment")),
    "cronjob without jobTemplate": _mutated(("spec", "jobTemplate"), _DELETE, _cron_job()),
    "no containers": _mutated(("spec", "containers"), _DELETE),
    "empty containers": _mutated(("spec", "containers"), []),
    "containers a mapping": _mutated(("spec", "containers"), {"name": "app", "image": "nginx"}),
    "containers a string": _mutated(("spec", "containers"), "nginx"),
    "init containers a mapping": _mutated(("spec", "initContainers"), {"name": "x", "image": "y"}),
    "ephemeral containers a string": _mutated(("spec", "ephemeralContainers"), "busybox"),
    "container a string": _mutated(("spec", "containers", 0), "nginx"),
    "image missing": _mutated(("spec", "containers", 0, "image"), _DELETE),
    "image missing in a Deployment": _mutated(
        ("spec", "template", "spec", "containers", 0, "image"), _DELETE, _workload("apps/v1", "Deployment")
    ),
    "image a list": _mutated(("spec", "containers", 0, "image"), ["nginx"]),
    "image empty": _mutated(("spec", "containers", 0, "image"), ""),
    "image blank": _mutated(("spec", "containers", 0, "image"), "  "),
    "image null": _mutated(("spec", "containers", 0, "image"), None),
    "init image an int": _mutated(("spec", "initContainers", 0, "image"), 7),
    "ephemeral image missing": _mutated(("spec", "ephemeralContainers", 0, "image"), _DELETE),
    "container name missing": _mutated(("spec", "containers", 0, "name"), _DELETE),
    "too many containers": _mutated(
        ("spec", "containers"), [{"name": f"c{i}", "image": "nginx"} for i in range(MAX_CONTAINERS + 1)]
    ),
}


@pytest.mark.parametrize("obj", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_workload_is_manifest_document_invalid(obj: dict[str, Any]) -> None:
    with pytest.raises(InputError) as info:
        images_of(obj)
    assert info.value.reason == Reason.MANIFEST_DOCUMENT_INVALID


@pytest.mark.parametrize(
    "spec_patch",
    [
        {"imagePullSecrets": "ghcr-pull"},
        {"imagePullSecrets": ["ghcr-pull"]},
        {"imagePullSecrets": [{"name": 7}]},
    ],
)
def test_malformed_pull_secrets(spec_patch: dict[str, object]) -> None:
    pod = _pod()
    pod["spec"].update(spec_patch)
    with pytest.raises(InputError) as info:
        image_pull_secret_names(pod)
    assert info.value.reason == Reason.MANIFEST_DOCUMENT_INVALID


def test_malformed_service_account() -> None:
    pod = _pod()
    pod["spec"]["serviceAccountName"] = ["app"]
    with pytest.raises(InputError) as info:
        service_account_name(pod)
    assert info.value.reason == Reason.MANIFEST_DOCUMENT_INVALID


@pytest.mark.parametrize("obj", [None, [], "Pod", 3])
def test_non_mapping_is_manifest_document_invalid(obj: object) -> None:
    with pytest.raises(InputError) as info:
        images_of(obj)  # type: ignore[arg-type]
    assert info.value.reason == Reason.MANIFEST_DOCUMENT_INVALID


# --- property: arbitrary JSON-ish input raises only InputError, and whatever is returned is well typed

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        "apiVersion",
        "kind",
        "spec",
        "template",
        "jobTemplate",
        "containers",
        "initContainers",
        "ephemeralContainers",
        "name",
        "image",
    ]
)
_container = st.fixed_dictionaries(
    {}, optional={"name": st.text(max_size=5) | _json, "image": st.text(max_size=5) | _json}
)
_pod_spec = st.fixed_dictionaries(
    {},
    optional={
        "containers": st.lists(_container | _json, max_size=3) | _json,
        "initContainers": st.lists(_container | _json, max_size=2) | _json,
        "ephemeralContainers": st.lists(_container, max_size=2) | _json,
        "imagePullSecrets": st.lists(st.fixed_dictionaries({}, optional={"name": _json}), max_size=2) | _json,
        "serviceAccountName": st.text(max_size=5) | _json,
    },
)
_objects = st.one_of(
    _json,
    st.dictionaries(_keys, _json, max_size=4),
    st.builds(
        lambda api, kind, spec: {"apiVersion": api, "kind": kind, "spec": spec, "template": {"spec": spec}},
        st.sampled_from(["v1", "apps/v1", "batch/v1", "extensions/v1beta1", "apps/v9", "x/v1", ""]) | _json,
        st.sampled_from(["Pod", "PodTemplate", "Deployment", "Job", "CronJob", "DaemonSet", "Service"])
        | _json,
        _pod_spec
        | st.builds(
            lambda s: {"template": {"spec": s}, "jobTemplate": {"spec": {"template": {"spec": s}}}}, _pod_spec
        ),
    ),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node inside a JSON-ish object."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            out.extend(_paths(child, (*prefix, key)))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            out.extend(_paths(child, (*prefix, i)))
    return out


def _perturb(base: dict[str, Any], choice: int, value: Any, mutate: bool) -> dict[str, Any]:
    """A real manifest with, perhaps, one node anywhere in it replaced by arbitrary JSON."""
    if not mutate:
        return copy.deepcopy(base)
    paths = _paths(base)
    return _mutated(paths[choice % len(paths)], value, base)


_near_valid = st.builds(
    _perturb, st.sampled_from(list(KINDS.values())), st.integers(0, 10_000), _json, st.booleans()
)


@settings(max_examples=300)
@given(_objects | _near_valid)
def test_arbitrary_objects_raise_only_input_error(obj: Any) -> None:
    try:
        images = images_of(obj)
    except InputError as e:
        assert e.reason == Reason.MANIFEST_DOCUMENT_INVALID
    else:
        assert images
        assert all(c.image.strip() and c.container for c in images)
    try:
        secrets = image_pull_secret_names(obj)
    except InputError as e:
        assert e.reason == Reason.MANIFEST_DOCUMENT_INVALID
    else:
        assert all(secrets)
    try:
        account = service_account_name(obj)
    except InputError as e:
        assert e.reason == Reason.MANIFEST_DOCUMENT_INVALID
    else:
        assert isinstance(account, str)
        assert account


def test_image_volumes_are_images_the_pod_runs() -> None:
    """ImageVolume (beta since 1.33): a mounted image can hold binaries, so it is verified too."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "app", "image": "ghcr.io/acme/app:1"}],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "x"}},
                {"name": "tools", "image": {"reference": "ghcr.io/evil/tools:1", "pullPolicy": "Always"}},
            ],
        },
    }
    assert [(c.kind, c.container, c.image) for c in images_of(pod)] == [
        ("container", "app", "ghcr.io/acme/app:1"),
        ("imageVolume", "tools", "ghcr.io/evil/tools:1"),
    ]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"template": {"spec": pod["spec"]}},
    }
    assert [c.image for c in images_of(deployment)][-1] == "ghcr.io/evil/tools:1"


@pytest.mark.parametrize(
    "volume",
    [
        {"name": "tools", "image": {}},
        {"name": "tools", "image": {"reference": ""}},
        {"name": "tools", "image": {"reference": 7}},
        {"name": "tools", "image": "ghcr.io/evil/tools:1"},
        {"image": {"reference": "ghcr.io/evil/tools:1"}},
    ],
)
def test_an_unreadable_image_volume_is_never_skipped(volume: dict[str, object]) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "app", "image": "a:1"}], "volumes": [volume]},
    }
    with pytest.raises(InputError) as caught:
        images_of(pod)
    assert caught.value.reason is Reason.MANIFEST_DOCUMENT_INVALID
