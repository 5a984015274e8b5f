"""``mutate-pods`` and ``mutate-workloads`` over real HTTPS, with images in the real registry.

The same controller serves both doors; the tests check the JSON patch kube-apiserver would apply, the
verified-images record, idempotence, that the validating webhook then answers the pinned Pod from the
cache, that verification failures are left to the validating webhook, and that the mutating webhook
fails closed when it could not decide.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from controller.admission.options import ServerOptions
from controller.admission.pinning import ANNOTATION
from controller.admission.server import build_controller, serve_files
from controller.admission.tls import ReloadingTLS
from controller.config import Settings
from tests.admission.harness import (
    TRUSTED_SUBJECT,
    Images,
    RunningController,
    cluster_policy,
    options_for_test,
    pod,
    response_of,
    review,
    running,
    standard_policies,
    workload,
    write_policies,
)
from tests.admission.test_pinning import apply_patch
from tests.fixtures.registry import RegistryServer, TestPKI, free_port
from tests.kit.sigstore import GITHUB_OAUTH_ISSUER, SigstoreKit

TIMEOUT = 30
DEAD_HOST = f"127.0.0.1:{free_port()}"  # nothing listens: a governed image there cannot be decided


def _controller_with(
    settings: Settings, tmp: Path, registry: RegistryServer, pki: TestPKI, policy_file: Path
) -> Any:
    (tmp / "registries.yaml").write_text(registry.registries_yaml())
    options: ServerOptions = options_for_test(
        registry_config=tmp / "registries.yaml",
        metrics_port=free_port(),
        liveness_endpoint=f"http://127.0.0.1:{free_port()}/healthz",
        decision_timeout_seconds=4.0,
    )
    tls = ReloadingTLS(Path(pki.server_cert), Path(pki.server_key))
    tls.load()
    controller = build_controller(options, settings, reader=None, tls=tls)

    async def main(c: Any) -> None:
        await serve_files(c, [str(policy_file)])

    return running(controller, main)


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory, images: Images, sigstore_kit: SigstoreKit) -> Path:
    docs = [
        *standard_policies(images.host, sigstore_kit.trusted_root_json()),
        cluster_policy("down", [f"{DEAD_HOST}/**"]),
    ]
    return write_policies(tmp_path_factory.mktemp("pin") / "policies.yaml", docs)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, registry: RegistryServer, registry_pki: TestPKI, policies: Path
) -> Iterator[RunningController]:
    with _controller_with(
        Settings(), tmp_path_factory.mktemp("srv"), registry, registry_pki, policies
    ) as srv:
        yield srv


def call(server: RunningController, path: str, request: dict[str, Any], ca: str) -> dict[str, Any]:
    answer = requests.post(
        f"{server.url}/{path}",
        data=json.dumps(request).encode(),
        headers={"Content-Type": "application/json"},
        verify=ca,
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    response = response_of(answer.json())
    assert response["uid"] == request["request"]["uid"]
    return response


def mutate(
    server: RunningController, obj: dict[str, Any], ca: str, **review_args: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The answer of the mutating webhook for ``obj``, and its JSON patch (``[]`` when none)."""
    path = "mutate-pods" if obj["kind"] == "Pod" else "mutate-workloads"
    response = call(server, path, review(obj, **review_args), ca)
    if "patch" not in response:
        return response, []
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    assert patch, "an empty patch is sent as no patch"
    return response, patch


def _record(obj: dict[str, Any]) -> dict[str, Any]:
    return json.loads(obj["metadata"]["annotations"][ANNOTATION])


def test_a_tagged_pod_is_pinned_and_recorded_and_then_validated_by_digest_from_the_cache(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    digest = images.signed.split("@", 1)[1]
    forged = {
        ANNOTATION: json.dumps({images.signed_tag: {"digest": "sha256:0", "signer": "me", "issuer": "x"}})
    }
    original = pod("tagged", [images.signed_tag], init_images=[images.signed])
    original["metadata"]["annotations"] = {**forged, "team": "a"}

    response, patch = mutate(server, original, registry_pki.ca_file)
    assert response["allowed"] is True
    pinned = apply_patch(original, patch)
    assert pinned["spec"]["containers"][0]["image"] == f"{images.signed_tag}@{digest}"
    assert pinned["spec"]["initContainers"][0]["image"] == images.signed  # already pinned: as it was
    assert pinned["metadata"]["annotations"]["team"] == "a"
    signer = {"digest": digest, "signer": TRUSTED_SUBJECT, "issuer": GITHUB_OAUTH_ISSUER}
    assert _record(pinned) == {images.signed_tag: signer, images.signed: signer}  # the forgery is gone

    # the validating webhook sees the pinned Pod: verified by that digest, answered from the cache
    engine = server.controller.state.engine
    assert engine.cached_decision([f"{images.signed_tag}@{digest}", images.signed], "default") is not None
    validated = call(server, "validate-pods", review(pinned), registry_pki.ca_file)
    assert validated["allowed"] is True

    # idempotent: a second call (reinvocation) on the pinned Pod changes nothing
    again, second = mutate(server, pinned, registry_pki.ca_file)
    assert again["allowed"] is True and second == []


def test_images_that_do_not_verify_are_left_for_the_validating_webhook_to_deny(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    host = images.host
    tags = [f"{host}/apps/wrong:v1", f"{host}/apps/unsigned:v1", f"{host}/elsewhere/app:v1"]
    original = pod("mixed", [images.signed_tag, *tags])
    response, patch = mutate(server, original, registry_pki.ca_file)
    assert response["allowed"] is True
    pinned = apply_patch(original, patch)
    after = [c["image"] for c in pinned["spec"]["containers"]]
    assert after[0].startswith(f"{images.signed_tag}@sha256:")
    assert after[1:] == tags
    assert list(_record(pinned)) == [images.signed_tag]
    denied = call(server, "validate-pods", review(pinned), registry_pki.ca_file)
    assert denied["allowed"] is False
    reasons = [line.split(":", 1)[0] for line in denied["status"]["message"].splitlines()]
    assert reasons == ["IdentityMismatch", "SignatureNotFound", "NoMatchingPolicy"]


def test_an_image_it_cannot_decide_is_a_denial_not_an_unpinned_pod(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    response, patch = mutate(server, pod("down", [f"{DEAD_HOST}/app:v1"]), registry_pki.ca_file)
    assert response["allowed"] is False and patch == []
    assert response["status"]["message"].startswith(f"RegistryUnavailable: {DEAD_HOST}/app:v1: ")


def test_update_restores_the_record_a_user_edited_and_pins_new_images(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    first = pod("upd", [images.signed_tag])
    _, patch = mutate(server, first, registry_pki.ca_file)
    stored = apply_patch(first, patch)
    record = stored["metadata"]["annotations"][ANNOTATION]

    edited = copy.deepcopy(stored)
    edited["metadata"]["annotations"][ANNOTATION] = '{"x":{"digest":"d","signer":"mallory","issuer":"i"}}'
    _, patch = mutate(server, edited, registry_pki.ca_file, operation="UPDATE", old=stored)
    assert apply_patch(edited, patch)["metadata"]["annotations"][ANNOTATION] == record

    # kubectl debug: an ephemeral container by tag is pinned; the subresource carries no metadata
    debug = copy.deepcopy(stored)
    debug["spec"]["ephemeralContainers"] = [
        {"name": "dbg", "image": images.signed_tag, "targetContainerName": "c0"}
    ]
    _, patch = mutate(
        server,
        debug,
        registry_pki.ca_file,
        operation="UPDATE",
        old=stored,
        sub_resource="ephemeralcontainers",
    )
    assert [op["path"] for op in patch] == ["/spec/ephemeralContainers/0/image"]


def test_workloads_keep_their_tags_unless_pinning_says_workloads(
    *,
    server: RunningController,
    images: Images,
    registry_pki: TestPKI,
    registry: RegistryServer,
    policies: Path,
    tmp_path: Path,
) -> None:
    deployment = workload("Deployment", "web", [images.signed_tag])
    response, patch = mutate(server, deployment, registry_pki.ca_file)
    assert response["allowed"] is True and patch == []

    with _controller_with(Settings(pinning="workloads"), tmp_path, registry, registry_pki, policies) as other:
        response, patch = mutate(other, deployment, registry_pki.ca_file)
        assert response["allowed"] is True
        pinned = apply_patch(deployment, patch)
        image = pinned["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"{images.signed_tag}@{images.signed.split('@', 1)[1]}"
        assert "annotations" not in pinned["metadata"]  # the record is the Pods'

    with _controller_with(Settings(pinning="off"), tmp_path, registry, registry_pki, policies) as off:
        response, patch = mutate(off, pod("off", [images.signed_tag]), registry_pki.ca_file)
        assert response["allowed"] is True and patch == []


def test_a_mutating_path_reviews_only_its_kinds(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    deployment = workload("Deployment", "web", [images.signed_tag])
    response = call(server, "mutate-pods", review(deployment), registry_pki.ca_file)
    assert response["allowed"] is False
    assert response["status"]["message"].startswith("ReviewInvalid: ")
    assert "patch" not in response


def test_a_pod_written_by_digest_gets_a_record_only_when_it_names_one(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    # what the chart's matchConditions skip: nothing to pin, no record named -> no patch
    plain = pod("digests", [images.signed], init_images=[images.other_signed])
    response, patch = mutate(server, plain, registry_pki.ca_file)
    assert response["allowed"] is True and patch == []

    # what they send: a record named on a Pod by digest is replaced by the true one, never kept
    forged = copy.deepcopy(plain)
    forged["metadata"]["annotations"] = {ANNOTATION: '{"x":{"digest":"d","signer":"mallory","issuer":"i"}}'}
    response, patch = mutate(server, forged, registry_pki.ca_file)
    assert response["allowed"] is True
    recorded = _record(apply_patch(forged, patch))
    assert set(recorded) == {images.signed, images.other_signed}
    assert recorded[images.signed]["signer"] == TRUSTED_SUBJECT
