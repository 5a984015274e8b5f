"""The controller's life as the API server sees it, each test in a lane of its own (tests/apiserver/lanes.py)
so that the shared controller is never stopped: denial with ``PoliciesNotLoaded`` while the policies
are not loaded, ``failurePolicy: Fail`` while the controller is down, and service again after a restart
on the same URL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.apiserver.conftest import Cluster
from tests.apiserver.harness import Outcome
from tests.apiserver.lanes import Lane, lane, starving_login
from tests.fixtures.registry import RegistryServer, TestPKI


@pytest.fixture
def own_lane(
    request: pytest.FixtureRequest,
    cluster: Cluster,
    registry: RegistryServer,
    registry_pki: TestPKI,
    tmp_path: Path,
) -> Iterator[Lane]:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.removeprefix("test_").lower())[:40].strip("-")
    with lane(cluster.api, registry, registry_pki, tmp_path, name) as current:
        yield current


def _unreachable(outcome: Outcome, port: int) -> bool:
    """kubectl's text when the API server cannot connect to a webhook whose failurePolicy is Fail."""
    address = re.escape(f"127.0.0.1:{port}")
    return (
        re.fullmatch(
            r"Error from server \(InternalError\): Internal error occurred: failed calling webhook "
            rf'"[a-z-]+\.imprimatur\.dev": failed to call webhook: Post "https://{address}/[a-z-]+\?timeout=10s": '
            rf"dial tcp {address}: connect: connection refused\n",
            outcome.stderr,
        )
        is not None
    )


def test_policies_not_loaded_at_start_up(cluster: Cluster, own_lane: Lane) -> None:
    images, namespace = cluster.images, own_lane.namespace
    running = own_lane.start(login=starving_login(cluster.api, namespace), wait_loaded=False)
    assert not running.controller.state.loaded  # kopf may not list our policies: they never load

    outcome = cluster.kubectl("run", "early", "-n", namespace, f"--image={images.signed}")
    assert outcome.returncode != 0, f"admitted: {outcome.stdout}"
    # 503 (retry), from the first of our webhooks the API server calls (the mutating one, once the chart
    # has it, names no image: it has not resolved any)
    image = f"({re.escape(images.signed)}|-)"
    assert re.fullmatch(
        r'Error from server \(ServiceUnavailable\): admission webhook "[a-z-]+\.imprimatur\.dev" denied the '
        rf"request: PoliciesNotLoaded: {image}: policies and trust roots are not loaded yet; retry shortly\n",
        outcome.stderr,
    ), outcome.stderr
    assert cluster.kubectl("get", "pod", "early", "-n", namespace).returncode != 0


def test_fail_closed_while_stopped_then_restarted(cluster: Cluster, own_lane: Lane) -> None:
    images, namespace = cluster.images, own_lane.namespace
    own_lane.start()
    first = cluster.kubectl("run", "before", "-n", namespace, f"--image={images.signed}")
    assert first.stdout == "pod/before created\n", first.stderr

    own_lane.stop()
    down = cluster.kubectl("run", "during", "-n", namespace, f"--image={images.signed}")
    assert down.returncode == 1
    assert down.stdout == ""
    assert _unreachable(down, own_lane.port), down.stderr
    assert cluster.kubectl("get", "pod", "during", "-n", namespace).returncode != 0  # nothing slipped in

    own_lane.start()  # the same port, so the same registered URL
    after = cluster.kubectl("run", "after", "-n", namespace, f"--image={images.signed}")
    assert after.stdout == "pod/after created\n", after.stderr
    denied = cluster.kubectl("run", "unsigned", "-n", namespace, f"--image={images.unsigned}")
    assert denied.denials("pods") == [("SignatureNotFound", images.unsigned)]
