"""Issue 10, attack 3 and the input findings: every image-bearing field is verified; kinds nobody
reviews are allowed; an object without ``apiVersion``/``kind`` is typed from ``request.kind``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.admission.harness import Images, RunningController, pod, review, workload
from tests.adversarial.support import Lab, admit, send
from tests.fixtures.registry import TestPKI


@pytest.fixture(scope="module")
def server(lab: Lab, images: Images) -> Iterator[RunningController]:
    with lab.serve("inputs", lab.standard(images)) as srv:
        yield srv


def with_image_volume(obj: dict[str, object], reference: str) -> dict[str, object]:
    spec = obj["spec"]
    assert isinstance(spec, dict)
    spec["volumes"] = [{"name": "tools", "image": {"reference": reference, "pullPolicy": "IfNotPresent"}}]
    return obj


def test_unsigned_image_volume_in_a_signed_pod_is_denied(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    obj = with_image_volume(pod("volume", [images.signed], init_images=[images.signed]), images.unsigned)
    answer = admit(server, obj, registry_pki.ca_file)
    assert not answer.allowed
    assert answer.reason == "SignatureNotFound", answer.message
    assert answer.message.startswith(f"SignatureNotFound: {images.unsigned}: ")


def test_signed_image_volume_is_admitted(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    obj = with_image_volume(pod("volume", [images.signed]), images.other_signed)
    answer = admit(server, obj, registry_pki.ca_file)
    assert answer.allowed, answer.message


def test_image_volume_in_a_workload_template_is_verified(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    obj = workload("Deployment", "web", [images.signed])
    template = obj["spec"]["template"]  # type: ignore[index]
    template["spec"]["volumes"] = [{"name": "tools", "image": {"reference": images.unsigned}}]
    answer = admit(server, obj, registry_pki.ca_file)
    assert not answer.allowed
    assert answer.reason == "SignatureNotFound", answer.message


def role_review() -> dict[str, object]:
    gvk = {"group": "rbac.authorization.k8s.io", "version": "v1", "kind": "Role"}
    gvr = {"group": "rbac.authorization.k8s.io", "version": "v1", "resource": "roles"}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "reader", "namespace": "team-a"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    request = {
        "uid": str(uuid.uuid4()),
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": "reader",
        "namespace": "team-a",
        "operation": "CREATE",
        "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
        "object": role,
        "oldObject": None,
        "dryRun": False,
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def test_a_kind_nobody_reviews_is_allowed(server: RunningController, registry_pki: TestPKI) -> None:
    answer = send(server, role_review(), registry_pki.ca_file, "validate-workloads")
    assert answer.allowed, answer.message


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_object_without_api_version_and_kind_is_typed_from_the_request(
    server: RunningController, images: Images, registry_pki: TestPKI, signed: bool
) -> None:
    image = images.signed if signed else images.unsigned
    request = review(pod("old-style", [image]))
    obj = request["request"]["object"]  # type: ignore[index]
    del obj["apiVersion"], obj["kind"]
    answer = send(server, request, registry_pki.ca_file, "validate-pods")
    if signed:
        assert answer.allowed, answer.message
    else:
        assert not answer.allowed
        assert answer.reason == "SignatureNotFound", answer.message
