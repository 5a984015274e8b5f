"""The chart's MutatingWebhookConfiguration (digest pinning) and its ``pinning.mode`` value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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
