"""The chart's MutatingWebhookConfiguration (digest pinning) and its ``pinning.mode`` value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.admission.pinning import ANNOTATION, carries_record, image_sites
from controller.admission.webhook import WEBHOOK_PIN_PODS, WEBHOOK_PIN_WORKLOADS, WEBHOOK_PODS
from tests.deploy.helmrun import CHART, Helm, HelmError, Obj, find, kinds


def _env(objs: list[Obj]) -> dict[str, Any]:
    container = find(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def _mutating(objs: list[Obj]) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in find(objs, "MutatingWebhookConfiguration")["webhooks"]}


def test_pinning_webhooks_fail_closed_are_reinvoked_and_select_as_the_validating_one(
    default_render: list[Obj],
) -> None:
    webhooks = _mutating(default_render)
    assert set(webhooks) == {"pins.imprimatur.dev", "workload-pins.imprimatur.dev"}
    validating = {w["name"]: w for w in find(default_render, "ValidatingWebhookConfiguration")["webhooks"]}
    pods = validating["pods.imprimatur.dev"]
    for webhook in webhooks.values():
        assert webhook["failurePolicy"] == "Fail"
        assert webhook["sideEffects"] == "None"
        assert webhook["reinvocationPolicy"] == "IfNeeded"
        assert webhook["timeoutSeconds"] == pods["timeoutSeconds"]
        assert webhook["admissionReviewVersions"] == ["v1"]
        assert webhook["namespaceSelector"] == pods["namespaceSelector"]
        assert webhook["clientConfig"]["caBundle"] == pods["clientConfig"]["caBundle"]  # one CA per render
    assert webhooks["pins.imprimatur.dev"]["clientConfig"]["service"]["path"] == f"/{WEBHOOK_PIN_PODS}"
    assert webhooks["pins.imprimatur.dev"]["rules"] == pods["rules"]  # pods and pods/ephemeralcontainers
    workloads = webhooks["workload-pins.imprimatur.dev"]
    assert workloads["clientConfig"]["service"]["path"] == f"/{WEBHOOK_PIN_WORKLOADS}"
    assert workloads["rules"] == validating["workloads.imprimatur.dev"]["rules"]
    assert pods["clientConfig"]["service"]["path"] == f"/{WEBHOOK_PODS}"
    assert _env(default_render)["IMPRIMATUR_PINNING"] == "pods"


@pytest.mark.parametrize(
    ("values", "expected"), [("pinning.mode=workloads", "workloads"), ("pinning.mode=off", "off")]
)
def test_pinning_mode_reaches_the_controller(helm: Helm, values: str, expected: str) -> None:
    objs = helm.template(values)
    assert _env(objs)["IMPRIMATUR_PINNING"] == expected
    assert ("MutatingWebhookConfiguration" in kinds(objs)) == (expected != "off")


def test_a_bare_off_in_a_values_file_means_off(helm: Helm, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("pinning:\n  mode: off\n")  # YAML 1.1: the boolean false
    text = helm.run("template", "x", str(CHART), "-f", str(values), "--kube-version", "1.30.0")
    assert "MutatingWebhookConfiguration" not in text
    assert 'name: IMPRIMATUR_PINNING\n              value: "off"' in text


def test_an_unknown_mode_is_refused_by_the_schema(helm: Helm) -> None:
    with pytest.raises(HelmError):
        helm.template("pinning.mode=always")


# --- matchConditions: the API server sends a review only when the webhook has something to do


def _condition(webhook: dict[str, Any]) -> str:
    (only,) = webhook["matchConditions"]
    return str(only["expression"])


def _sends(expression: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> bool:
    """The expression evaluated as the API server would, for a CREATE (or an UPDATE from ``old``)."""
    operation = "CREATE" if old is None else "UPDATE"
    result = cel.evaluate(expression, {"object": obj, "oldObject": old, "request": {"operation": operation}})
    assert isinstance(result, bool), result
    return result


def _has_work(obj: dict[str, Any], old: dict[str, Any] | None = None) -> bool:
    """What the webhook itself would act on: an image it could pin, or a record to rewrite."""
    unpinned = any("@" not in site.image for site in image_sites(obj))
    return unpinned or carries_record(obj) or carries_record(old)


_IMAGES = st.sampled_from(
    [
        "reg.example/app:1.4",
        "reg.example/app",
        f"reg.example/app@sha256:{'a' * 64}",
        f"app:1@sha256:{'b' * 64}",
    ]
)
_CONTAINERS = st.lists(_IMAGES, max_size=3).map(
    lambda images: [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
)


@st.composite
def _pod_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": draw(_CONTAINERS.filter(bool))}
    for name in ("initContainers", "ephemeralContainers"):
        if draw(st.booleans()):
            spec[name] = draw(_CONTAINERS)
    if draw(st.booleans()):
        volumes = draw(st.lists(st.one_of(st.none(), _IMAGES), max_size=2))
        spec["volumes"] = [
            {"name": f"v{i}", **({"image": {"reference": ref}} if ref else {"emptyDir": {}})}
            for i, ref in enumerate(volumes)
        ]
    return spec


def _metadata(draw: st.DrawFn) -> dict[str, Any]:
    annotations = draw(st.sampled_from([None, {}, {"team": "a"}, {ANNOTATION: "{}"}, {ANNOTATION: "forged"}]))
    return {
        "name": "p",
        "namespace": "default",
        **({"annotations": annotations} if annotations is not None else {}),
    }


@st.composite
def _pods(draw: st.DrawFn) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _metadata(draw), "spec": draw(_pod_specs())}


@given(obj=_pods(), old=st.one_of(st.none(), _pods()))
@settings(max_examples=300, deadline=None)
def test_the_pods_condition_skips_exactly_the_pods_the_webhook_would_not_change(
    pods_condition: str, obj: dict[str, Any], old: dict[str, Any] | None
) -> None:
    assert _sends(pods_condition, obj, old) == _has_work(obj, old)


@given(spec=_pod_specs(), kind=st.sampled_from(["Deployment", "StatefulSet", "Job", "CronJob"]))
@settings(max_examples=200, deadline=None)
def test_the_workloads_condition_skips_templates_written_entirely_by_digest(
    workloads_condition: str, spec: dict[str, Any], kind: str
) -> None:
    template = {"metadata": {"labels": {"app": "a"}}, "spec": spec}
    if kind == "CronJob":
        body = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}
    else:
        body = {"template": template}
    group = "batch/v1" if kind in ("Job", "CronJob") else "apps/v1"
    obj = {"apiVersion": group, "kind": kind, "metadata": {"name": "w", "namespace": "default"}, "spec": body}
    unpinned = any("@" not in site.image for site in image_sites(obj))
    assert _sends(workloads_condition, obj) == unpinned


@pytest.mark.parametrize(
    "obj",
    [
        {"kind": "Pod", "metadata": {"name": "p"}},  # no spec at all: sent, the webhook decides
        {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}},  # no image
        {
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "c", "image": "a@sha256:1"}],
                "volumes": [{"name": "v", "image": {}}],
            },
        },
    ],
)
def test_an_odd_pod_is_sent_rather_than_skipped(pods_condition: str, obj: dict[str, Any]) -> None:
    assert _sends(pods_condition, obj) is True


def test_the_validating_webhooks_review_everything(default_render: list[Obj]) -> None:
    for webhook in find(default_render, "ValidatingWebhookConfiguration")["webhooks"]:
        assert "matchConditions" not in webhook, webhook["name"]


@pytest.fixture(scope="module")
def pods_condition(default_render: list[Obj]) -> str:
    return _condition(_mutating(default_render)["pins.imprimatur.dev"])


@pytest.fixture(scope="module")
def workloads_condition(default_render: list[Obj]) -> str:
    return _condition(_mutating(default_render)["workload-pins.imprimatur.dev"])
