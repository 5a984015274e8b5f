"""The mutating webhook under an ImagePolicyException, over real HTTPS (issue 8).

The break-glass incident is an image whose registry is down: its verdict is a transient failure,
which ``mutate-pods`` turns into a denial (it never lets an undecided tag through unpinned). An
active exception that covers the image must admit it through both doors: the mutating webhook grants
it as ``Admission.conclude`` does, leaves it as written (never pinned, never recorded as verified),
and still pins and records the verified images beside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.admission.pinning import ANNOTATION
from controller.config import Settings
from controller.engine import Engine
from controller.policy.deadline import format_timestamp
from controller.policy.exceptions import EMPTY_EXCEPTIONS, ExceptionSet, compile_exception
from tests.admission.harness import (
    API_GROUP,
    Images,
    RunningController,
    cluster_policy,
    pod,
    review,
    standard_policies,
    write_policies,
)
from tests.admission.test_pinning import apply_patch
from tests.admission.test_pinning_webhook import DEAD_HOST, _controller_with, call, mutate
from tests.fixtures.registry import RegistryServer, TestPKI
from tests.kit.sigstore import SigstoreKit


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    registry: RegistryServer,
    registry_pki: TestPKI,
    images: Images,
    sigstore_kit: SigstoreKit,
) -> Iterator[RunningController]:
    docs = [
        *standard_policies(images.host, sigstore_kit.trusted_root_json()),
        cluster_policy("down", [f"{DEAD_HOST}/**"]),
    ]
    tmp = tmp_path_factory.mktemp("pin-exc")
    policy_file: Path = write_policies(tmp / "policies.yaml", docs)
    with _controller_with(Settings(), tmp, registry, registry_pki, policy_file) as srv:
        yield srv


@pytest.fixture
def engine(server: RunningController) -> Iterator[Engine]:
    engine: Engine = server.controller.state.engine
    yield engine
    engine.set_exceptions(EMPTY_EXCEPTIONS)


def _grant(engine: Engine, namespace: str, *globs: str, selector: dict[str, object] | None = None) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    spec: dict[str, object] = {
        "images": [{"glob": g} for g in globs],
        "expires": format_timestamp(now + timedelta(hours=1)),
        "reason": "INC-7: registry down",
    }
    if selector is not None:
        spec["selector"] = selector
    body = {
        "apiVersion": API_GROUP,
        "kind": "ImagePolicyException",
        "metadata": {"name": "incident", "namespace": namespace, "creationTimestamp": format_timestamp(now)},
        "spec": spec,
    }
    engine.set_exceptions(ExceptionSet([compile_exception(body)]))


def test_an_exception_admits_an_unreachable_image_through_both_webhooks_unpinned(
    server: RunningController, engine: Engine, images: Images, registry_pki: TestPKI
) -> None:
    ca = registry_pki.ca_file
    down = f"{DEAD_HOST}/app:v1"
    original = pod("incident", [down, images.signed_tag], namespace="team-a")
    refused, _ = mutate(server, original, ca)
    assert refused["allowed"] is False
    assert refused["status"]["message"].startswith(f"RegistryUnavailable: {down}: ")

    _grant(engine, "team-a", f"{DEAD_HOST}/**")
    response, patch = mutate(server, original, ca)
    assert response["allowed"] is True, response.get("status")
    mutated = apply_patch(original, patch)
    assert mutated["spec"]["containers"][0]["image"] == down  # granted: left as written
    digest = images.signed.split("@", 1)[1]
    assert mutated["spec"]["containers"][1]["image"] == f"{images.signed_tag}@{digest}"  # verified: pinned
    record = json.loads(mutated["metadata"]["annotations"][ANNOTATION])
    assert list(record) == [images.signed_tag]  # the granted image is not "verified"
    assert record[images.signed_tag]["digest"] == digest

    # then the validating webhook admits the mutated Pod, with the exception's warning
    validated = call(server, "validate-pods", review(mutated), ca)
    assert validated["allowed"] is True
    assert any("ImagePolicyException team-a/incident" in w for w in validated.get("warnings", []))

    # the same Pod in another namespace: still refused by the mutating webhook
    elsewhere, _ = mutate(server, pod("incident", [down], namespace="team-b"), ca)
    assert elsewhere["allowed"] is False
    assert elsewhere["status"]["message"].startswith(f"RegistryUnavailable: {down}: ")


def test_a_granted_unsigned_tag_is_not_pinned_nor_recorded(
    server: RunningController, engine: Engine, images: Images, registry_pki: TestPKI
) -> None:
    ca = registry_pki.ca_file
    unsigned_tag = images.unsigned.split("@", 1)[0] + ":v1"
    _grant(engine, "team-a", f"{images.host}/apps/unsigned")
    original = pod("unsigned", [unsigned_tag], namespace="team-a")
    response, patch = mutate(server, original, ca)
    assert response["allowed"] is True
    assert apply_patch(original, patch)["spec"]["containers"][0]["image"] == unsigned_tag
    assert ANNOTATION not in (apply_patch(original, patch)["metadata"].get("annotations") or {})


def test_a_selector_the_pod_does_not_match_grants_nothing_at_the_mutating_webhook(
    server: RunningController, engine: Engine, registry_pki: TestPKI
) -> None:
    _grant(engine, "team-a", f"{DEAD_HOST}/**", selector={"matchLabels": {"app": "payments"}})
    labelled = pod("sel", [f"{DEAD_HOST}/app:v2"], namespace="team-a")
    labelled["metadata"]["labels"] = {"app": "web"}
    response, _ = mutate(server, labelled, registry_pki.ca_file)
    assert response["allowed"] is False
    labelled["metadata"]["labels"] = {"app": "payments"}
    response, _ = mutate(server, labelled, registry_pki.ca_file)
    assert response["allowed"] is True
