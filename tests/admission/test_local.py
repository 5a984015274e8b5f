"""Files mode (``imprimatur serve --policy FILE``): ImagePolicyExceptions loaded from the files.

In a cluster, kopf's index feeds the engine its exceptions; from files, :func:`load_exceptions` does,
with the same compiler and the cluster's maximum lifetime. Unit tests of the loader (what it skips,
what stops the server), then the real webhook over HTTPS granting an unsigned image in the exception's
namespace only, with the warning, and a file with a bad exception refused at start.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from controller.admission.local import MAX_DOCUMENTS, MAX_FILE_BYTES, load_exceptions
from controller.admission.server import serve_files
from controller.errors import PolicyError, Reason
from controller.policy.deadline import format_timestamp
from tests.admission.harness import (
    API_GROUP,
    Images,
    RunningController,
    cluster_policy,
    new_controller,
    pod,
    response_of,
    review,
    running,
    standard_policies,
    write_policies,
)
from tests.fixtures.registry import RegistryServer, TestPKI
from tests.kit.sigstore import SigstoreKit

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def exception(
    name: str = "incident-42",
    namespace: str = "incident",
    globs: tuple[str, ...] = ("registry.example/apps/**",),
    *,
    expires: datetime = NOW + timedelta(hours=4),
    created: datetime | None = None,
    **spec: object,
) -> dict[str, object]:
    metadata: dict[str, object] = {"name": name, "namespace": namespace}
    if created is not None:
        metadata["creationTimestamp"] = format_timestamp(created)
    return {
        "apiVersion": API_GROUP,
        "kind": "ImagePolicyException",
        "metadata": metadata,
        "spec": {
            "images": [{"glob": g} for g in globs],
            "expires": format_timestamp(expires),
            "reason": "INC-42: the signing service is down",
            **spec,
        },
    }


def _load(path: Path, now: datetime = NOW) -> Any:
    return load_exceptions([str(path)], max_lifetime=WEEK, now=now)


def test_exceptions_are_compiled_and_other_documents_skipped(tmp_path: Path) -> None:
    path = write_policies(
        tmp_path / "p.yaml",
        [cluster_policy("apps", ["registry.example/**"]), exception(), exception("other", "team-b")],
    )
    loaded = _load(path)
    assert len(loaded) == 2
    granted = loaded.grant("registry.example/apps/web:1", "incident", {}, NOW)
    assert granted is not None and granted.label == "ImagePolicyException incident/incident-42"
    assert loaded.grant("registry.example/apps/web:1", "default", {}, NOW) is None  # its namespace only
    assert loaded.grant("registry.example/apps/web:1", "incident", {}, NOW + timedelta(hours=4)) is None
    assert len(_load(write_policies(tmp_path / "none.yaml", [cluster_policy("a", ["x/**"])]))) == 0


def test_the_load_time_is_the_creation_unless_the_document_says_otherwise(tmp_path: Path) -> None:
    eight_days = exception(expires=NOW + timedelta(days=8))
    with pytest.raises(PolicyError) as caught:
        _load(write_policies(tmp_path / "long.yaml", [eight_days]))
    assert caught.value.reason == Reason.POLICY_INVALID
    assert "ImagePolicyException incident/incident-42: spec.expires" in caught.value.detail
    stamped = exception(expires=NOW + timedelta(days=2), created=NOW - timedelta(days=3))
    assert len(_load(write_policies(tmp_path / "stamped.yaml", [stamped]))) == 1
    too_old = exception(expires=NOW + timedelta(days=2), created=NOW - timedelta(days=6))
    with pytest.raises(PolicyError) as caught:
        _load(write_policies(tmp_path / "old.yaml", [too_old]))
    assert caught.value.reason == Reason.POLICY_INVALID


def test_an_expired_exception_stops_the_start_even_with_a_creation_stamp(tmp_path: Path) -> None:
    expired = exception(expires=NOW - timedelta(hours=1), created=NOW - timedelta(days=1))
    with pytest.raises(PolicyError) as caught:
        _load(write_policies(tmp_path / "p.yaml", [expired]))
    assert caught.value.reason == Reason.POLICY_INVALID
    assert "[0]: ImagePolicyException incident/incident-42: spec.expires: expired at" in caught.value.detail


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"images": []}, "spec.images"),
        ({"images": [{"glob": "a/[b"}]}, "spec.images[0].glob"),
        ({"reason": ""}, "spec.reason"),
        ({"reason": "two\nlines"}, "spec.reason"),
        ({"expires": "tomorrow"}, "spec.expires"),
        ({"selector": {"matchLabels": {"a": ["b"]}}}, "spec.selector"),
        ({"wildcard": True}, "spec"),
    ],
)
def test_every_invalid_exception_is_named_and_nothing_loads(
    tmp_path: Path, change: dict[str, object], path: str
) -> None:
    bad = exception("bad")
    bad["spec"] = {**bad["spec"], **change}  # type: ignore[dict-item]
    with pytest.raises(PolicyError) as caught:
        _load(write_policies(tmp_path / "p.yaml", [exception(), bad]))
    assert caught.value.reason == Reason.POLICY_INVALID
    assert f"[1]: ImagePolicyException incident/bad: {path}" in caught.value.detail
    assert "yaml[0]" not in caught.value.detail  # the valid one is not named


def test_unreadable_files_are_refused_within_bounds(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_exceptions([str(tmp_path / "missing.yaml")], max_lifetime=WEEK, now=NOW)
    assert caught.value.reason == Reason.CONFIG_INVALID
    (tmp_path / "big.yaml").write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(PolicyError) as caught:
        load_exceptions([str(tmp_path / "big.yaml")], max_lifetime=WEEK, now=NOW)
    assert caught.value.reason == Reason.CONFIG_INVALID
    (tmp_path / "many.yaml").write_text("---\na: 1\n" * (MAX_DOCUMENTS + 1))
    with pytest.raises(PolicyError) as caught:
        load_exceptions([str(tmp_path / "many.yaml")], max_lifetime=WEEK, now=NOW)
    assert caught.value.reason == Reason.POLICY_INVALID
    (tmp_path / "broken.yaml").write_text("a: [")
    with pytest.raises(PolicyError) as caught:
        load_exceptions([str(tmp_path / "broken.yaml")], max_lifetime=WEEK, now=NOW)
    assert caught.value.reason == Reason.POLICY_INVALID


# --- the webhook from files, over HTTPS


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    registry: RegistryServer,
    registry_pki: TestPKI,
    images: Images,
    sigstore_kit: SigstoreKit,
) -> Iterator[RunningController]:
    tmp = tmp_path_factory.mktemp("local")
    glob = images.unsigned.split("@", 1)[0]
    docs = [
        *standard_policies(images.host, sigstore_kit.trusted_root_json()),
        exception(globs=(glob,), expires=datetime.now(UTC) + timedelta(hours=1)),
    ]
    policy_file = write_policies(tmp / "policies.yaml", docs)
    controller = new_controller(
        cert=registry_pki.server_cert,
        key=registry_pki.server_key,
        registries_yaml=registry.registries_yaml(),
        tmp=tmp,
    )

    async def main(c: Any) -> None:
        await serve_files(c, [str(policy_file)])

    with running(controller, main) as srv:
        yield srv


def _ask(server: RunningController, ca: str, obj: dict[str, object]) -> dict[str, Any]:
    answer = requests.post(f"{server.url}/validate-pods", json=review(obj), verify=ca, timeout=20)
    assert answer.status_code == 200, answer.text
    return response_of(answer.json())


def test_a_file_exception_admits_an_unsigned_image_in_its_namespace_only(
    server: RunningController, images: Images, registry_pki: TestPKI
) -> None:
    granted = _ask(server, registry_pki.ca_file, pod("p", [images.unsigned], namespace="incident"))
    assert granted["allowed"] is True
    [warning] = granted["warnings"]
    assert warning.startswith(f"ImagePolicyException incident/incident-42 admits {images.unsigned} until ")
    assert warning.endswith(": INC-42: the signing service is down")
    elsewhere = _ask(server, registry_pki.ca_file, pod("p", [images.unsigned], namespace="default"))
    assert elsewhere["allowed"] is False
    assert elsewhere["status"]["message"].startswith(f"{Reason.SIGNATURE_NOT_FOUND}: {images.unsigned}: ")
    other = _ask(server, registry_pki.ca_file, pod("p", [images.wrong_identity], namespace="incident"))
    assert other["allowed"] is False  # an image it does not name stays denied
    assert other["status"]["message"].startswith(f"{Reason.IDENTITY_MISMATCH}: ")


async def test_a_bad_exception_in_the_files_stops_the_server(
    tmp_path: Path, registry_pki: TestPKI, images: Images, sigstore_kit: SigstoreKit
) -> None:
    docs = [
        *standard_policies(images.host, sigstore_kit.trusted_root_json()),
        exception(expires=datetime.now(UTC) - timedelta(hours=1)),
    ]
    policy_file = write_policies(tmp_path / "p.yaml", docs)
    controller = new_controller(
        cert=registry_pki.server_cert, key=registry_pki.server_key, registries_yaml=None, tmp=tmp_path
    )
    try:
        with pytest.raises(PolicyError) as caught:
            await serve_files(controller, [str(policy_file)])
    finally:
        controller.close()
    assert caught.value.reason == Reason.POLICY_INVALID
    assert not controller.state.loaded
