"""manifests/ is the chart, rendered: byte for byte what hack/render-manifests.py writes, and equal to the
chart's default render except for the documented differences (manifests/README.md):

* the Namespace object (createNamespace=true), and
* the webhook certificate: no TLS Secret and no caBundle (tls.source=external), which
  hack/gen-webhook-certs.sh provides after kubectl apply.
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy import crdcheck
from tests.deploy.helmrun import HACK, KUBE_VERSION, MANIFESTS, NAMESPACE, RELEASE, Helm, Obj, find


def _load(name: str) -> list[Obj]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text(encoding="utf-8")) if d]


def _strip_cert_material(objs: list[Obj]) -> list[Obj]:
    """Drop what differs by design between the chart's default render and the plain manifests."""
    kept = []
    for obj in copy.deepcopy(objs):
        if obj["kind"] == "Secret" and obj["metadata"]["name"] == f"{RELEASE}-tls":
            continue
        if obj["kind"] == "Namespace":
            continue
        if obj["kind"] in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            for webhook in obj["webhooks"]:
                webhook["clientConfig"].pop("caBundle", None)
        kept.append(obj)
    return kept


def test_manifests_are_the_rendered_chart_byte_for_byte(helm: Helm) -> None:
    result = subprocess.run(
        [sys.executable, str(HACK / "render-manifests.py"), "--check", "--helm", helm.binary],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_render_check_detects_a_hand_edit(
    helm: Helm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("render_manifests", HACK / "render-manifests.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("crds.yaml", "imprimatur.yaml"):
        shutil.copy(MANIFESTS / name, tmp_path / name)
    monkeypatch.setattr(module, "OUT", tmp_path)
    assert module.main(["--check", "--helm", helm.binary]) == 0
    edited = tmp_path / "imprimatur.yaml"
    edited.write_text(
        edited.read_text(encoding="utf-8").replace("failurePolicy: Fail", "failurePolicy: Ignore")
    )
    assert module.main(["--check", "--helm", helm.binary]) == 1
    assert "stale" in capsys.readouterr().err
    assert module.main(["--helm", helm.binary]) == 0  # regenerates
    assert module.main(["--check", "--helm", helm.binary]) == 0


def test_manifests_equal_the_default_chart_but_for_the_documented_differences(
    default_render: list[Obj],
) -> None:
    manifests = _load("imprimatur.yaml")
    assert _strip_cert_material(manifests) == _strip_cert_material(default_render)
    # ... and the differences are exactly those.
    chart_only = [(o["kind"], o["metadata"]["name"]) for o in default_render if o not in manifests]
    manifests_only = [(o["kind"], o["metadata"]["name"]) for o in manifests if o not in default_render]
    webhooks = [("MutatingWebhookConfiguration", RELEASE), ("ValidatingWebhookConfiguration", RELEASE)]
    assert sorted(chart_only) == sorted([("Secret", f"{RELEASE}-tls"), *webhooks])
    assert sorted(manifests_only) == sorted([("Namespace", NAMESPACE), *webhooks])


def test_manifests_carry_no_certificate_material() -> None:
    manifests = _load("imprimatur.yaml")
    assert all(o["kind"] != "Secret" for o in manifests)
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for webhook in find(manifests, kind)["webhooks"]:
            assert "caBundle" not in webhook["clientConfig"]
    text = (MANIFESTS / "imprimatur.yaml").read_text(encoding="utf-8")
    assert "BEGIN" not in text


def test_manifest_namespace_enforces_restricted_pod_security() -> None:
    namespace = find(_load("imprimatur.yaml"), "Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_manifest_crds_are_the_chart_crds() -> None:
    crds = {d["spec"]["names"]["kind"]: d for d in _load("crds.yaml")}
    assert crds == crdcheck.load_crds()
    assert all(d["kind"] == "CustomResourceDefinition" for d in _load("crds.yaml"))


@pytest.mark.parametrize("name", ["crds.yaml", "imprimatur.yaml"])
def test_manifests_validate_against_kubernetes_schemas(name: str) -> None:
    for obj in _load(name):
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_manifests_readme_documents_the_differences_and_the_install() -> None:
    readme = (MANIFESTS / "README.md").read_text(encoding="utf-8")
    for needle in ("hack/render-manifests.py", "hack/gen-webhook-certs.sh", "caBundle", "createNamespace"):
        assert needle in readme
