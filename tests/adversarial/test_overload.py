"""Past capacity the controller sheds new slow work at once, and says so; cached answers go on.

With ``max_concurrent_reviews=2`` and two reviews hanging on a tarpit, a third uncached review is
answered at once ``Overloaded`` (HTTP 429 in the status, transient), the files-mode readiness
endpoint turns 503 naming the overload, and a cached signed image is still allowed on time. Once the
hung reviews end, new work is accepted again and readiness recovers.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator

import pytest
import requests

from tests.admission.harness import Images, RunningController, cluster_policy, pod
from tests.adversarial.support import ON_TIME_SECONDS, Lab, admit
from tests.fixtures.hostile import HostileRegistry
from tests.fixtures.registry import TestPKI, free_port

DEADLINE_SECONDS = 3.0
A_DIGEST = "sha256:" + "2" * 64


@pytest.fixture(scope="module")
def tarpit(registry_pki: TestPKI) -> Iterator[HostileRegistry]:
    with HostileRegistry(tls=registry_pki) as hostile:
        hostile.set_mode("/v2/", "hang")
        yield hostile


@pytest.fixture(scope="module")
def health_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(
    lab: Lab, images: Images, tarpit: HostileRegistry, health_port: int
) -> Iterator[RunningController]:
    with lab.serve(
        "overload",
        lab.standard(images, cluster_policy("tarpit", [f"{tarpit.host}/**"])),
        hostile=[tarpit],
        warm=images.signed,
        decision_timeout_seconds=DEADLINE_SECONDS,
        max_concurrent_reviews=2,
        liveness_endpoint=f"http://127.0.0.1:{health_port}/healthz",
    ) as srv:
        yield srv


def _health(port: int) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


def test_past_capacity_new_slow_work_is_shed_at_once_and_readiness_says_so(
    server: RunningController,
    tarpit: HostileRegistry,
    images: Images,
    registry_pki: TestPKI,
    health_port: int,
) -> None:
    ca = registry_pki.ca_file
    assert _health(health_port).status_code == 200
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        hung = [
            pool.submit(admit, server, pod(f"h{i}", [f"{tarpit.host}/app{i}@{A_DIGEST}"], namespace="a"), ca)
            for i in range(2)
        ]
        waited = 0.0
        while tarpit.count("/v2/app") < 2 and waited < DEADLINE_SECONDS:
            time.sleep(0.05)
            waited += 0.05

        shed = admit(server, pod("third", [f"{tarpit.host}/other@{A_DIGEST}"], namespace="b"), ca)
        assert not shed.allowed
        assert shed.reason == "Overloaded", shed.message
        assert shed.response["status"]["code"] == 429
        assert shed.seconds < ON_TIME_SECONDS  # answered at once, not after a queue

        health = _health(health_port)
        assert health.status_code == 503
        assert "reviews already wait" in health.json()["overloaded"]

        cached = admit(server, pod("c", [images.signed], namespace="bystander"), ca)
        assert cached.allowed, cached.message
        assert cached.seconds < ON_TIME_SECONDS

        for future in hung:
            answer = future.result(timeout=DEADLINE_SECONDS + 5)
            assert answer.reason == "LimitExceeded", answer.message

    assert _health(health_port).status_code == 200
    after = admit(server, pod("after", [images.unsigned], namespace="b"), ca)
    assert after.reason == "SignatureNotFound", after.message  # decided again, not shed
