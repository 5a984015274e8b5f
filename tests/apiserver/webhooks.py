"""The chart's webhook configurations, as ``helm template`` renders them, registered by URL.

Every ValidatingWebhookConfiguration and MutatingWebhookConfiguration of ``charts/imprimatur`` is taken
as rendered (rules, selectors, failurePolicy, timeouts, reinvocation, the lot); the one change is each
webhook's ``clientConfig``: the chart's ``service`` (name, namespace, path, port) becomes
``url: https://127.0.0.1:PORT/<path>`` with the ``caBundle`` of our test serving certificate. A
webhook configuration the chart gains later is registered without a change here.

**Lanes.** A test that stops or restarts a controller runs its own controller, on its own port, behind
copies of the chart's namespaced webhooks (renamed ``<name>-lane-<lane>``) that select only namespaces
labelled ``imprimatur.test/lane=<lane>``. Those namespaces also carry the chart's opt-out label, so the
shared registration never sends them to the shared controller, and the shared one is never touched.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Final

from tests.deploy.helmrun import HACK, HELM_TIMEOUT_SECONDS, Helm
from tests.fixtures.apiserver import ApiServer, ControlPlaneError, ca_bundle

WEBHOOK_KINDS: Final = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
EXCLUDE_LABEL: Final = "imprimatur.dev/exclude"  # the chart's opt-out label (imprimatur.namespaceSelector)
LANE_LABEL: Final = "imprimatur.test/lane"
ADMISSION_API: Final = "/apis/admissionregistration.k8s.io/v1"
PLURALS: Final = {
    "ValidatingWebhookConfiguration": "validatingwebhookconfigurations",
    "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
}

Document = dict[str, Any]


def helm_binary() -> str:
    """The helm that ``hack/get-helm.py`` provides (installed by ``./scripts/setup``)."""
    result = subprocess.run(
        [sys.executable, str(HACK / "get-helm.py")],
        capture_output=True,
        text=True,
        timeout=HELM_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise ControlPlaneError(f"helm unavailable (run ./scripts/setup): {result.stderr.strip()}")
    return result.stdout.strip()


@cache
def chart_webhook_configurations() -> tuple[Document, ...]:
    """Every webhook configuration the chart renders with its default values (rendered once)."""
    rendered = Helm(helm_binary()).template()
    found = tuple(doc for doc in rendered if doc.get("kind") in WEBHOOK_KINDS)
    if not any(doc["kind"] == "ValidatingWebhookConfiguration" for doc in found):
        raise ControlPlaneError("helm template rendered no ValidatingWebhookConfiguration")
    return found


def by_url(configurations: Sequence[Mapping[str, Any]], base_url: str, ca_file: str) -> list[Document]:
    """``configurations`` with each webhook's ``clientConfig`` pointed at ``base_url`` + its path."""
    ca = ca_bundle(ca_file)
    out = []
    for configuration in configurations:
        document = copy.deepcopy(dict(configuration))
        for webhook in document["webhooks"]:
            service = webhook["clientConfig"].get("service")
            if not service or not str(service.get("path", "")).startswith("/"):
                raise ControlPlaneError(
                    f"webhook {webhook['name']}: no service path in {webhook['clientConfig']}"
                )
            webhook["clientConfig"] = {"url": f"{base_url}{service['path']}", "caBundle": ca}
        out.append(document)
    return out


def for_lane(configurations: Sequence[Mapping[str, Any]], lane: str) -> list[Document]:
    """Copies of the namespaced webhooks (those with a ``namespaceSelector``), renamed and selecting only
    the lane's namespaces; configurations left without a webhook are dropped."""
    out = []
    for configuration in configurations:
        document = copy.deepcopy(dict(configuration))
        webhooks = [w for w in document["webhooks"] if "namespaceSelector" in w]
        if not webhooks:
            continue
        for webhook in webhooks:
            webhook["namespaceSelector"] = {"matchLabels": {LANE_LABEL: lane}}
        document["webhooks"] = webhooks
        document["metadata"] = {"name": f"{document['metadata']['name']}-lane-{lane}"}
        out.append(document)
    return out


def lane_labels(lane: str) -> dict[str, str]:
    """The labels of a lane's namespace: selected by the lane's webhooks, skipped by the shared ones."""
    return {LANE_LABEL: lane, EXCLUDE_LABEL: "true"}


def register(api: ApiServer, configurations: Sequence[Mapping[str, Any]]) -> None:
    """Create or replace each configuration (through the admin client, so no kubectl warnings)."""
    for configuration in configurations:
        path = f"{ADMISSION_API}/{PLURALS[configuration['kind']]}"
        name = configuration["metadata"]["name"]
        current = api.request("GET", f"{path}/{name}")
        if current.status_code == 200:
            body = {**configuration, "metadata": {**configuration["metadata"], **_version(current.json())}}
            response = api.request("PUT", f"{path}/{name}", body)
        else:
            response = api.request("POST", path, configuration)
        if response.status_code not in (200, 201):
            raise ControlPlaneError(f"register {name}: HTTP {response.status_code}: {response.text[:500]}")


def unregister(api: ApiServer, configurations: Sequence[Mapping[str, Any]]) -> None:
    for configuration in configurations:
        path = f"{ADMISSION_API}/{PLURALS[configuration['kind']]}/{configuration['metadata']['name']}"
        response = api.request("DELETE", path)
        if response.status_code not in (200, 404):
            raise ControlPlaneError(f"DELETE {path}: HTTP {response.status_code}: {response.text[:500]}")


def _version(document: Mapping[str, Any]) -> dict[str, str]:
    return {"resourceVersion": str(document["metadata"]["resourceVersion"])}
