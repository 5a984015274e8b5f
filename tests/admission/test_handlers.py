"""Which images a review verifies, and the deadline on a decision."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from controller.admission.handlers import images_to_verify
from controller.admission.review import parse_review
from controller.admission.server import serve_files
from controller.errors import InputError, Reason
from tests.admission.harness import (
    cluster_policy,
    new_controller,
    pod,
    response_of,
    review,
    running,
    trust_root,
    workload,
    write_policies,
)
from tests.fixtures.registry import TestPKI
from tests.kit.sigstore import SigstoreKit

A, B, C = "ghcr.io/acme/a:1", "ghcr.io/acme/b:1", "ghcr.io/acme/c:1"


def test_create_verifies_every_image_once() -> None:
    obj = pod("p", [A, B, A], init_images=[C])
    assert images_to_verify(parse_review(review(obj))) == [C, A, B]


def test_update_verifies_only_images_the_old_object_lacked() -> None:
    old = workload("StatefulSet", "s", [A, B])
    new = workload("StatefulSet", "s", [B, C], init_images=[A])
    assert images_to_verify(parse_review(review(new, operation="UPDATE", old=old))) == [C]
    assert images_to_verify(parse_review(review(old, operation="UPDATE", old=old))) == []


def test_update_with_an_unreadable_old_object_verifies_everything() -> None:
    old = pod("p", [A])
    old["spec"] = {"containers": "garbage"}
    new = pod("p", [A], ephemeral_images=[B])
    request = review(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers")
    assert images_to_verify(parse_review(request)) == [A, B]


def test_an_unreadable_new_object_is_invalid() -> None:
    obj = pod("p", [A])
    obj["spec"]["initContainers"] = [{"name": "x"}]  # type: ignore[index]
    with pytest.raises(InputError) as caught:
        images_to_verify(parse_review(review(obj)))
    assert caught.value.reason == Reason.REVIEW_INVALID


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A TCP server on loopback that accepts connections and never answers: a hung registry."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


def test_a_hung_registry_is_denied_at_the_deadline(
    blackhole: str, registry_pki: TestPKI, sigstore_kit: SigstoreKit, tmp_path: Path
) -> None:
    policies = write_policies(
        tmp_path / "p.yaml",
        [
            trust_root(sigstore_kit.trusted_root_json()),
            cluster_policy("hung", [f"{blackhole}/**"]),
        ],
    )
    controller = new_controller(
        cert=registry_pki.server_cert,
        key=registry_pki.server_key,
        registries_yaml=None,
        tmp=tmp_path,
        decision_timeout_seconds=0.5,
    )

    async def main(c: Any) -> None:
        await serve_files(c, [str(policies)])

    with running(controller, main) as server:
        image = f"{blackhole}/app@sha256:" + "1" * 64
        answer = requests.post(
            f"{server.url}/validate-pods",
            json=review(pod("p", [image])),
            verify=registry_pki.ca_file,
            timeout=10,
        )
        response = response_of(answer.json())
        assert response["allowed"] is False
        message = response["status"]["message"]
        # The decision's deadline, or the fetch cut at that same deadline: either way the reason,
        # the image, and the time actually taken.
        assert message.startswith(f"LimitExceeded: {image}: "), message
        assert re.search(r"after 0\.[4-6]s", message), message
        assert answer.elapsed.total_seconds() < 3
