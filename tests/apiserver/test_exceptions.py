"""Issue 8 through the real API server: an ImagePolicyException admits an unsigned image until its
expiry and then stops; ``enforceAfter`` switches a policy from warning to denial at the stated time.
Time is driven through the engine's injectable clock (:meth:`Engine.use_clock`), never by sleeping
until a deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from controller.engine import Engine, utc_now
from controller.policy.deadline import format_timestamp
from tests.admission.harness import API_GROUP, cluster_policy
from tests.apiserver.conftest import Cluster
from tests.apiserver.harness import wait_observed
from tests.fixtures.registry import free_port

STATUS_TIMEOUT_SECONDS = 20.0


class ManualClock:
    """The controller's decision clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(cluster: Cluster) -> Iterator[ManualClock]:
    engine: Engine = cluster.controller.controller.state.engine
    manual = ManualClock(datetime.now(UTC))
    engine.use_clock(manual)
    try:
        yield manual
    finally:
        engine.use_clock(utc_now)


def _exception(name: str, namespace: str, glob: str, expires: datetime, **meta: object) -> dict[str, object]:
    return {
        "apiVersion": API_GROUP,
        "kind": "ImagePolicyException",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": {
            "images": [{"glob": glob}],
            "expires": format_timestamp(expires),
            "reason": "INC-42: signer down",
        },
    }


def _state(cluster: Cluster, name: str, namespace: str, wanted: str) -> str:
    """Wait until the exception's status.state is ``wanted`` (or time out); return the last state."""
    deadline = time.monotonic() + STATUS_TIMEOUT_SECONDS
    path = f"/apis/{API_GROUP}/namespaces/{namespace}/imagepolicyexceptions/{name}"
    state = ""
    while time.monotonic() < deadline:
        response = cluster.api.request("GET", path)
        assert response.status_code == 200, response.text
        state = str((response.json().get("status") or {}).get("state", ""))
        if state == wanted:
            return state
        time.sleep(0.1)
    return state


def _run(cluster: Cluster, namespace: str, image: str, name: str = "p"):
    return cluster.kubectl("run", name, "-n", namespace, f"--image={image}", "--dry-run=server")


def test_an_exception_admits_an_unsigned_image_until_its_expiry(cluster: Cluster, clock: ManualClock) -> None:
    api, unsigned = cluster.api, cluster.images.unsigned
    team, other = api.create_namespace("exc-team"), api.create_namespace("exc-other")
    assert _run(cluster, team, unsigned).denials("pods") == [("SignatureNotFound", unsigned)]

    expires = (clock.now + timedelta(hours=1)).replace(microsecond=0)
    glob = unsigned.split("@", 1)[0]
    api.apply([_exception("incident-42", team, glob, expires)])
    assert _state(cluster, "incident-42", team, "Active") == "Active"
    rows = cluster.kubectl("get", "imagepolicyexceptions", "-n", team)
    assert "Active" in rows.stdout
    assert format_timestamp(expires) in rows.stdout

    admitted = _run(cluster, team, unsigned)
    assert admitted.returncode == 0, admitted.stderr
    assert (
        f"ImagePolicyException {team}/incident-42 admits {unsigned} until {format_timestamp(expires)}: "
        "INC-42: signer down"
    ) in admitted.stderr  # kubectl prints the webhook's warning

    # tenancy: the same image in another namespace is still denied
    assert _run(cluster, other, unsigned).denials("pods") == [("SignatureNotFound", unsigned)]

    clock.now = expires - timedelta(seconds=1)
    assert _run(cluster, team, unsigned).returncode == 0
    clock.now = expires
    assert _run(cluster, team, unsigned).denials("pods") == [("SignatureNotFound", unsigned)]
    assert _state(cluster, "incident-42", team, "Expired") == "Expired"


def test_exceptions_forbidden_wins_over_an_exception(cluster: Cluster, clock: ManualClock) -> None:
    api, unsigned = cluster.api, cluster.images.unsigned
    team = api.create_namespace("exc-forbidden")
    glob = unsigned.split("@", 1)[0]
    api.apply([_exception("open", team, glob, clock.now + timedelta(hours=1))])
    assert _state(cluster, "open", team, "Active") == "Active"
    assert _run(cluster, team, unsigned).returncode == 0

    api.apply([cluster_policy("no-exceptions", [glob], exceptions="forbidden")])
    try:
        assert wait_observed(api, "clusterimagepolicies", "no-exceptions") == "True"
        assert _run(cluster, team, unsigned).denials("pods") == [("SignatureNotFound", unsigned)]
    finally:
        cluster.kubectl("delete", "clusterimagepolicy", "no-exceptions", "--wait=true")


def test_the_webhook_refuses_a_long_or_forged_exception(cluster: Cluster) -> None:
    api, unsigned = cluster.api, cluster.images.unsigned
    team = api.create_namespace("exc-refused")
    glob = unsigned.split("@", 1)[0]
    now = datetime.now(UTC)

    too_long = _exception("too-long", team, glob, now + timedelta(days=8))
    outcome = cluster.kubectl("create", "-f", "-", stdin=yaml.safe_dump(too_long))
    assert outcome.returncode != 0, outcome.stdout
    assert outcome.refusal("policies").startswith(
        f"PolicyInvalid: ImagePolicyException {team}/too-long: spec.expires"
    )

    forged = _exception(
        "forged",
        team,
        glob,
        now + timedelta(hours=1),
        annotations={"imprimatur.dev/created-by": "someone-else"},
    )
    outcome = cluster.kubectl("create", "-f", "-", stdin=yaml.safe_dump(forged))
    assert outcome.returncode != 0, outcome.stdout
    assert "imprimatur.dev/created-by" in outcome.refusal("policies")


def test_enforce_after_switches_warning_to_denial_at_the_stated_time(
    cluster: Cluster, clock: ManualClock
) -> None:
    api, image = cluster.api, cluster.images.warn_unsigned
    team = api.create_namespace("deadline")
    deadline = (clock.now + timedelta(days=30)).replace(microsecond=0)
    glob = image.split("@", 1)[0]
    api.apply([cluster_policy("rollout", [glob], mode="warn", enforceAfter=format_timestamp(deadline))])
    try:
        assert wait_observed(api, "clusterimagepolicies", "rollout") == "True"
        row = cluster.kubectl("get", "clusterimagepolicy", "rollout")
        assert format_timestamp(deadline) in row.stdout  # the ENFORCE-AFTER column

        warned = _run(cluster, team, image)
        assert warned.returncode == 0, warned.stderr
        assert f"(enforced from {format_timestamp(deadline)})" in warned.stderr

        clock.now = deadline - timedelta(seconds=1)
        assert _run(cluster, team, image).returncode == 0  # answered from the cache, still a warning
        clock.now = deadline
        denied = _run(cluster, team, image)
        assert denied.denials("pods") == [("SignatureNotFound", image)]
    finally:
        cluster.kubectl("delete", "clusterimagepolicy", "rollout", "--wait=true")


def test_an_exception_admits_an_image_whose_registry_is_down_through_both_webhooks(
    cluster: Cluster, clock: ManualClock
) -> None:
    """The break-glass incident: the registry is down, so the image cannot be decided (a transient
    verdict). The mutating webhook used to refuse it before the validating one could apply the grant."""
    api = cluster.api
    team, other = api.create_namespace("exc-down"), api.create_namespace("exc-down-other")
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    image = f"{dead}/payments/api:v3"
    api.apply([cluster_policy("down", [f"{dead}/**"])])
    try:
        assert wait_observed(api, "clusterimagepolicies", "down") == "True"
        refused = _run(cluster, team, image)
        assert refused.returncode != 0
        assert refused.denials("pins")[:1] == [("RegistryUnavailable", image)], refused.stderr

        api.apply([_exception("registry-down", team, f"{dead}/**", clock.now + timedelta(hours=1))])
        assert _state(cluster, "registry-down", team, "Active") == "Active"
        admitted = cluster.kubectl(
            "run",
            "p",
            "-n",
            team,
            f"--image={image}",
            "--dry-run=server",
            "-o",
            "jsonpath={.spec.containers[0].image}",
        )
        assert admitted.returncode == 0, admitted.stderr
        assert admitted.stdout == image  # left as written: nothing was verified to pin it to
        assert f"ImagePolicyException {team}/registry-down admits {image}" in admitted.stderr

        elsewhere = _run(cluster, other, image)
        assert elsewhere.denials("pins")[:1] == [("RegistryUnavailable", image)], elsewhere.stderr
    finally:
        cluster.kubectl("delete", "clusterimagepolicy", "down", "--wait=true")


def _phase(cluster: Cluster, name: str, wanted: str) -> str:
    """Wait until the policy's Enforcing condition message starts with ``wanted``; the last message."""
    deadline = time.monotonic() + STATUS_TIMEOUT_SECONDS
    message = ""
    while time.monotonic() < deadline:
        response = cluster.api.request("GET", f"/apis/{API_GROUP}/clusterimagepolicies/{name}")
        assert response.status_code == 200, response.text
        conditions = (response.json().get("status") or {}).get("conditions") or []
        message = next((str(c.get("message")) for c in conditions if c.get("type") == "Enforcing"), "")
        if message.startswith(wanted):
            return message
        time.sleep(0.2)
    return message


def test_the_status_shows_warning_until_then_enforcing_since(cluster: Cluster, clock: ManualClock) -> None:
    api = cluster.api
    deadline = (clock.now + timedelta(days=10)).replace(microsecond=0)
    glob = cluster.images.warn_unsigned.split("@", 1)[0]
    api.apply([cluster_policy("phased", [glob], mode="warn", enforceAfter=format_timestamp(deadline))])
    try:
        until = f"Warning until {format_timestamp(deadline)}"
        assert _phase(cluster, "phased", "Warning") == until
        row = cluster.kubectl("get", "clusterimagepolicy", "phased")
        assert until in row.stdout  # the Phase column

        clock.now = deadline  # no edit, no event: the timer flips it on the engine's clock
        since = f"Enforcing since {format_timestamp(deadline)}"
        assert _phase(cluster, "phased", "Enforcing") == since
        assert since in cluster.kubectl("get", "clusterimagepolicy", "phased").stdout
    finally:
        cluster.kubectl("delete", "clusterimagepolicy", "phased", "--wait=true")
