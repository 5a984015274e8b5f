"""The webhook over real HTTPS, as kube-apiserver calls it: every kind, every answer, every malformed input.

The controller runs with policies from a file (no cluster) in a background thread; images are signed by
the test Sigstore kit and served by the real ``docker-registry``. See test_operator.py for the same
handlers under kopf with a Kubernetes API.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from controller.admission.server import serve_files
from tests.admission.harness import (
    WORKLOAD_KINDS,
    Images,
    RunningController,
    new_controller,
    pod,
    response_of,
    review,
    running,
    webhook_for,
    workload,
)
from tests.fixtures.registry import RegistryServer, TestPKI, free_port

TIMEOUT = 30


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    registry: RegistryServer,
    registry_pki: TestPKI,
    policy_file: Path,
) -> Iterator[RunningController]:
    tmp = tmp_path_factory.mktemp("webhook")
    controller = new_controller(
        cert=registry_pki.server_cert,
        key=registry_pki.server_key,
        registries_yaml=registry.registries_yaml(),
        tmp=tmp,
        metrics_port=free_port(),
        liveness_endpoint=f"http://127.0.0.1:{free_port()}/healthz",
    )

    async def main(c: Any) -> None:
        await serve_files(c, [str(policy_file)])

    with running(controller, main) as srv:
        yield srv


def post(server: RunningController, path: str, body: object, ca: str, **kwargs: Any) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        f"{server.url}/{path}",
        data=data,
        headers={"Content-Type": "application/json"},
        verify=ca,
        timeout=TIMEOUT,
        **kwargs,
    )


def admit(server: RunningController, obj: dict[str, object], ca: str, **review_args: Any) -> dict[str, Any]:
    """Send ``obj``'s AdmissionReview; check the envelope and the uid echo; return ``response``."""
    request = review(obj, **review_args)
    answer = post(server, webhook_for(obj), request, ca)
    assert answer.status_code == 200, answer.text
    response = response_of(answer.json())
    assert response["uid"] == request["request"]["uid"]  # type: ignore[index]
    return response


def reasons(response: dict[str, Any]) -> list[str]:
    """The ``Reason: image`` of each line of a denial message."""
    return [": ".join(line.split(": ")[:2]) for line in response["status"]["message"].split("\n")]


ALL_KINDS = ["Pod", *WORKLOAD_KINDS]


def make(kind: str, name: str, images: list[str], **spec: Any) -> dict[str, object]:
    return pod(name, images, **spec) if kind == "Pod" else workload(kind, name, images, **spec)


# --- decisions for every kind


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_signed_images_are_admitted(
    server: RunningController, images: Images, registry_pki: TestPKI, kind: str
) -> None:
    response = admit(
        server, make(kind, "good", [images.signed], init_images=[images.signed]), registry_pki.ca_file
    )
    assert response["allowed"] is True
    assert "status" not in response
    assert "warnings" not in response


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_failing_image_is_listed(
    server: RunningController, images: Images, registry_pki: TestPKI, kind: str
) -> None:
    obj = make(kind, "bad", [images.signed, images.unsigned], init_images=[images.wrong_identity])
    response = admit(server, obj, registry_pki.ca_file)
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    # init containers come first, then containers; the signed image is not listed
    assert reasons(response) == [
        f"IdentityMismatch: {images.wrong_identity}",
        f"SignatureNotFound: {images.unsigned}",
    ]
    assert response["status"]["message"].startswith("IdentityMismatch: ")


def test_image_no_policy_matches_is_denied(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    response = admit(server, pod("loose", [images.ungoverned]), registry_pki.ca_file)
    assert response["allowed"] is False
    assert reasons(response) == [f"NoMatchingPolicy: {images.ungoverned}"]


def test_tag_only_image_is_verified_with_a_warning(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    response = admit(server, pod("tagged", [images.signed_tag]), registry_pki.ca_file)
    assert response["allowed"] is True
    assert any(images.signed_tag in w and "tag can move" in w for w in response["warnings"])


def test_warn_mode_policy_admits_with_a_warning(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    response = admit(server, pod("warned", [images.warn_unsigned]), registry_pki.ca_file)
    assert response["allowed"] is True
    assert any("warn mode" in w and "SignatureNotFound" in w for w in response["warnings"])


def test_signature_without_tlog_admits_with_a_warning(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    response = admit(server, pod("lax", [images.no_tlog]), registry_pki.ca_file)
    assert response["allowed"] is True, response
    assert response["warnings"], "a signature without a transparency-log entry must be reported"
    assert all(w.startswith(f"{images.no_tlog}: ") for w in response["warnings"])


def test_dry_run_is_answered_the_same_way(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    denied = admit(server, pod("dry", [images.unsigned]), registry_pki.ca_file, dry_run=True)
    allowed = admit(server, pod("dry", [images.signed]), registry_pki.ca_file, dry_run=True)
    assert denied["allowed"] is False
    assert reasons(denied) == [f"SignatureNotFound: {images.unsigned}"]
    assert allowed["allowed"] is True


# --- updates


def test_ephemeral_container_is_verified(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    old = pod("debugged", [images.signed])
    unsigned_debugger = pod("debugged", [images.signed], ephemeral_images=[images.unsigned])
    signed_debugger = pod("debugged", [images.signed], ephemeral_images=[images.signed_tag])
    ca = registry_pki.ca_file

    denied = admit(
        server, unsigned_debugger, ca, operation="UPDATE", old=old, sub_resource="ephemeralcontainers"
    )
    assert denied["allowed"] is False
    assert reasons(denied) == [f"SignatureNotFound: {images.unsigned}"]

    allowed = admit(
        server, signed_debugger, ca, operation="UPDATE", old=old, sub_resource="ephemeralcontainers"
    )
    assert allowed["allowed"] is True


def test_update_verifies_only_new_images(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    ca = registry_pki.ca_file
    old = workload("Deployment", "web", [images.unsigned])  # admitted before this policy existed
    scaled = workload("Deployment", "web", [images.unsigned])
    scaled["spec"]["replicas"] = 5  # type: ignore[index]
    assert admit(server, scaled, ca, operation="UPDATE", old=old)["allowed"] is True

    changed = workload("Deployment", "web", [images.wrong_identity])
    response = admit(server, changed, ca, operation="UPDATE", old=old)
    assert response["allowed"] is False
    assert reasons(response) == [f"IdentityMismatch: {images.wrong_identity}"]


# --- malformed input: a clear error, never an allow, and the server stays up


def test_garbage_is_a_bad_request(server: RunningController, registry_pki: TestPKI) -> None:
    for body in (b"\x00\xffnot json", b"", b"{", b"[1, 2, 3]", b'"AdmissionReview"', b"null"):
        answer = post(server, "validate-pods", body, registry_pki.ca_file)
        assert answer.status_code == 400, body
        assert answer.json()["message"].startswith("ReviewInvalid: ")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.pop("request"),
        lambda r: r["request"].pop("uid"),
        lambda r: r["request"].__setitem__("uid", 42),
        lambda r: r.__setitem__("request", "a string"),
    ],
    ids=["no-request", "no-uid", "uid-not-string", "request-not-object"],
)
def test_review_without_a_uid_is_a_bad_request(
    server: RunningController, images: Images, registry_pki: TestPKI, mutate: Any
) -> None:
    request = review(pod("p", [images.signed]))
    mutate(request)
    answer = post(server, "validate-pods", request, registry_pki.ca_file)
    assert answer.status_code == 400
    assert answer.json()["reason"] == "ReviewInvalid"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.__setitem__("apiVersion", "admission.k8s.io/v2"),
        lambda r: r.__setitem__("kind", "TokenReview"),
        lambda r: r["request"].pop("userInfo"),
        lambda r: r["request"].__setitem__("operation", "EXPLODE"),
        lambda r: r["request"].__setitem__("dryRun", "yes"),
        lambda r: r["request"].__setitem__("object", ["not", "an", "object"]),
        lambda r: r["request"].__setitem__("object", None),
        lambda r: r["request"]["resource"].__setitem__("resource", 7),
        lambda r: r["request"]["object"]["spec"].__setitem__("containers", "nginx"),
        lambda r: r["request"]["object"]["spec"]["containers"][0].__setitem__("image", ["x"]),
        lambda r: r["request"]["object"]["spec"].pop("containers"),
        lambda r: r["request"]["object"].__setitem__("kind", "Secret"),
    ],
    ids=[
        "api-version",
        "kind",
        "no-userinfo",
        "operation",
        "dry-run-type",
        "object-list",
        "object-null",
        "resource-type",
        "containers-string",
        "image-list",
        "no-containers",
        "object-kind",
    ],
)
def test_malformed_review_is_denied_as_invalid(
    server: RunningController, images: Images, registry_pki: TestPKI, mutate: Any
) -> None:
    request = review(pod("p", [images.signed]))
    mutate(request)
    answer = post(server, "validate-pods", request, registry_pki.ca_file)
    assert answer.status_code == 200, answer.text
    response = response_of(answer.json())
    assert response["uid"] == request["request"]["uid"]  # type: ignore[index]
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert response["status"]["message"].startswith("ReviewInvalid: ")


def test_wrong_resource_for_the_webhook_is_denied(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    deployment = review(workload("Deployment", "d", [images.signed]))
    answer = post(server, "validate-pods", deployment, registry_pki.ca_file)
    assert response_of(answer.json())["allowed"] is False
    assert response_of(answer.json())["status"]["message"].startswith("ReviewInvalid: ")

    status_update = review(
        pod("p", [images.signed]), operation="UPDATE", old=pod("p", [images.signed]), sub_resource="status"
    )
    answer = post(server, "validate-pods", status_update, registry_pki.ca_file)
    assert response_of(answer.json())["allowed"] is False


def test_unknown_paths_and_methods_are_refused(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    request = review(pod("p", [images.unsigned]))
    for path in ("", "validate-podz", "validate-pods/extra", "mutate"):
        answer = post(server, path, request, registry_pki.ca_file)
        assert answer.status_code == 404, path
    answer = requests.get(f"{server.url}/validate-pods", verify=registry_pki.ca_file, timeout=TIMEOUT)
    assert answer.status_code == 405


def test_huge_and_deep_bodies_are_refused(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    answer = post(server, "validate-pods", b"{" + b" " * (5 * 1024 * 1024) + b"}", registry_pki.ca_file)
    assert answer.status_code == 413
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = post(server, "validate-pods", deep, registry_pki.ca_file)
    assert answer.status_code == 400
    # still serving
    response = admit(server, pod("after", [images.signed]), registry_pki.ca_file)
    assert response["allowed"] is True


def test_concurrent_reviews_are_all_answered(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    objects = [pod(f"p{i}", [images.signed if i % 2 else images.unsigned]) for i in range(24)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda o: admit(server, o, registry_pki.ca_file), objects))
    assert [r["allowed"] for r in responses] == [bool(i % 2) for i in range(24)]


# --- what operators see: one log line per decision, metrics, health


def test_one_structured_log_line_per_decision(
    server: RunningController, images: Images, registry_pki: TestPKI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="controller.admission.decision")
    request = review(pod("logged", [images.signed, images.unsigned], namespace="team-a"), dry_run=True)
    post(server, "validate-pods", request, registry_pki.ca_file)
    uid = request["request"]["uid"]  # type: ignore[index]
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "controller.admission.decision" and uid in r.getMessage()
    ]
    assert len(lines) == 1
    line = lines[0]
    digest = images.signed.split("@")[1]
    for expected in (
        f"uid={uid}",
        "kind=Pod",
        "object=team-a/logged",
        "operation=CREATE",
        "dry_run=true",
        "allowed=false",
        "reason=SignatureNotFound",
        digest,
        "alice@example.com",
        "https://github.com/login/oauth",
        "ClusterImagePolicy apps",
        "duration_ms=",
    ):
        assert expected in line, (expected, line)


def test_metrics_are_served(server: RunningController, images: Images, registry_pki: TestPKI) -> None:
    admit(server, pod("m1", [images.unsigned]), registry_pki.ca_file)
    admit(server, pod("m2", [images.signed]), registry_pki.ca_file)
    port = server.controller.options.metrics_port
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=TIMEOUT).text
    assert (
        'imprimatur_admission_decisions_total{kind="Pod",allowed="false",reason="SignatureNotFound"}' in text
    )
    assert 'imprimatur_admission_decisions_total{kind="Pod",allowed="true",reason="Verified"}' in text
    assert "# TYPE imprimatur_admission_duration_seconds histogram" in text
    assert 'imprimatur_admission_duration_seconds_bucket{le="+Inf"}' in text
    assert "imprimatur_policies_loaded 1" in text
    assert 'imprimatur_policies{state="ready"} 3' in text
    assert 'imprimatur_policies{state="invalid"} 0' in text


def test_health_is_ready_once_loaded(server: RunningController) -> None:
    host, port, path = server.controller.options.health
    answer = requests.get(f"http://{host}:{port}{path}", timeout=TIMEOUT)
    assert answer.status_code == 200
    assert answer.json()["loaded"] is True
    assert answer.json()["policies"] == {"ready": 3, "invalid": 0}
