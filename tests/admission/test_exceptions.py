"""ImagePolicyExceptions on the operator side: the review (created-by, expiry maximum), the status,
the labels a selector sees, the engine's grant from the index, and the decision log's record of use."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest

import controller.admission.exceptions as module
from controller.admission.exceptions import (
    EXCEPTION_INDEX,
    IGNORED_NOTE,
    REBUILD_COALESCE_SECONDS,
    Exceptions,
    compile_entry,
    desired_status,
    object_labels,
)
from controller.admission.metrics import AdmissionMetrics
from controller.admission.observe import ReviewObserver
from controller.admission.review import AdmissionRequest, GroupVersionResource
from controller.admission.state import PolicyState
from controller.admission.webhook import ReviewContext
from controller.config import Settings
from controller.engine import Engine, builtin_trust_roots
from controller.errors import Reason
from controller.model import Decision, ImageVerdict
from controller.policy import PolicySet
from controller.policy.exceptions import MAX_EXCEPTIONS_PER_NAMESPACE
from controller.registry import RegistryClient

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
IMAGE = "registry.example/team/app@sha256:" + "c" * 64


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def exceptions(clock: Clock) -> Exceptions:
    roots = builtin_trust_roots()
    engine = Engine(
        registry=RegistryClient(),
        policies=PolicySet([]),
        trust_roots=roots,
        settings=Settings(max_exception_seconds=86400),
        clock=clock,
    )
    return Exceptions(PolicyState(engine, roots, AdmissionMetrics()))


def _body(*, expires: datetime = NOW + timedelta(hours=2), **meta: object) -> dict[str, Any]:
    return {
        "apiVersion": "imprimatur.dev/v1alpha1",
        "kind": "ImagePolicyException",
        "metadata": {
            "name": "incident-42",
            "namespace": "team-a",
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "generation": 1,
            **meta,
        },
        "spec": {
            "images": [{"glob": "registry.example/team/**"}],
            "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "reason": "INC-42",
        },
    }


# --- the review


def test_a_valid_exception_is_admitted_and_its_creation_logged(
    exceptions: Exceptions, caplog: pytest.LogCaptureFixture
) -> None:
    warnings: list[str] = []
    with caplog.at_level(logging.INFO, "controller.admission.decision"):
        assert exceptions.review(_body(), "CREATE", None, "alice", warnings) == "Compiled"
    assert "created by user=alice" in caplog.text
    assert warnings == []


def test_created_by_must_be_the_requesting_user(exceptions: Exceptions) -> None:
    own = _body(annotations={"imprimatur.dev/created-by": "alice"})
    assert exceptions.review(own, "CREATE", None, "alice", []) == "Compiled"
    forged = _body(annotations={"imprimatur.dev/created-by": "security-team"})
    with pytest.raises(kopf.AdmissionError) as e:
        exceptions.review(forged, "CREATE", None, "alice", [])
    assert str(e.value).startswith(f"{Reason.POLICY_INVALID}: ImagePolicyException team-a/incident-42")
    with pytest.raises(kopf.AdmissionError):
        exceptions.review(forged, "CREATE", None, None, [])  # no authenticated user: no claim


def test_created_by_cannot_change_after_creation(exceptions: Exceptions) -> None:
    old = _body(annotations={"imprimatur.dev/created-by": "alice"})
    with pytest.raises(kopf.AdmissionError):
        exceptions.review(_body(annotations={"imprimatur.dev/created-by": "bob"}), "UPDATE", old, "bob", [])
    with pytest.raises(kopf.AdmissionError):
        exceptions.review(_body(), "UPDATE", old, "bob", [])  # removing it is a change too
    assert exceptions.review(old, "UPDATE", old, "bob", []) == "Compiled"


def test_an_expiry_past_the_clusters_maximum_is_refused(exceptions: Exceptions) -> None:
    with pytest.raises(kopf.AdmissionError) as e:
        exceptions.review(_body(expires=NOW + timedelta(days=1, seconds=1)), "CREATE", None, "alice", [])
    assert "spec.expires" in str(e.value)
    # an unchanged spec of a stored one (the maximum was lowered since) is not wedged
    long = _body(expires=NOW + timedelta(days=2))
    warnings: list[str] = []
    assert exceptions.review(long, "UPDATE", long, "alice", warnings) == str(Reason.POLICY_INVALID)
    assert warnings


def test_without_a_creation_time_the_clock_bounds_the_expiry(exceptions: Exceptions, clock: Clock) -> None:
    body = _body(expires=NOW + timedelta(hours=2))
    del body["metadata"]["creationTimestamp"]
    assert exceptions.review(body, "CREATE", None, "alice", []) == "Compiled"
    clock.now = NOW - timedelta(days=2)
    with pytest.raises(kopf.AdmissionError):
        exceptions.review(body, "CREATE", None, "alice", [])


# --- status


def test_status_is_active_then_expired_and_invalid_says_why() -> None:
    entry = compile_entry(_body(), timedelta(days=7))
    active = desired_status(entry, NOW)
    assert (active["state"], active["expires"], active["observedGeneration"]) == (
        "Active",
        "2026-12-01T12:00:00Z",
        1,
    )
    assert desired_status(entry, NOW + timedelta(hours=2))["state"] == "Expired"
    invalid = desired_status(compile_entry(_body(), timedelta(minutes=5)), NOW)
    assert invalid["state"] == "Invalid"
    assert str(invalid["message"]).startswith(
        "PolicyInvalid: ImagePolicyException team-a/incident-42: spec.expires"
    )


async def test_the_timer_patches_expired_status(exceptions: Exceptions, clock: Clock) -> None:
    body = _body()
    body["status"] = desired_status(compile_entry(body, timedelta(days=1)), NOW)
    patch: dict[str, Any] = {}
    await exceptions.on_timer(body=body, patch=patch)
    assert patch == {}  # nothing changed
    clock.now = NOW + timedelta(hours=3)
    await exceptions.on_timer(body=body, patch=patch)
    assert patch["status"]["state"] == "Expired"


# --- labels the selector sees


def test_labels_are_the_pods_or_the_pod_templates() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": []},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"labels": {"app": "not-this"}},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}},
    }
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "spec": {
            "jobTemplate": {
                "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}
            }
        },
    }
    for obj in (pod, deployment, cronjob):
        assert object_labels(obj) == {"app": "web"}
    assert object_labels({"kind": "Unknown"}) == {}
    assert object_labels(None) == {}


# --- the index feeds the engine; the grant is logged


async def test_the_index_feeds_the_engine_and_the_log_records_each_use(
    exceptions: Exceptions, caplog: pytest.LogCaptureFixture
) -> None:
    entry = await exceptions.index(body=_body(annotations={"imprimatur.dev/created-by": "alice"}))
    exceptions.rebuild({EXCEPTION_INDEX: {key: [value] for key, value in entry.items()}})
    engine = exceptions.state.engine
    denied = Decision(False, (ImageVerdict(IMAGE, False, Reason.NO_MATCHING_POLICY, "no policy matches"),))
    granted = engine.grant_exceptions(denied, "team-a", {})
    assert granted.allowed
    assert granted.verdicts[0].reason == Reason.EXCEPTION_GRANTED
    assert not engine.grant_exceptions(denied, "team-b", {}).allowed

    request = AdmissionRequest(
        "admission.k8s.io/v1",
        "uid-1",
        "Pod",
        GroupVersionResource("", "v1", "pods"),
        None,
        "CREATE",
        "team-a",
        "p",
        None,
        None,
        False,
        "alice",
    )
    ctx = ReviewContext(request, "validate-pods", 0.0, images=(IMAGE,), decision=granted)
    with caplog.at_level(logging.INFO, "controller.admission.decision"):
        ReviewObserver(AdmissionMetrics()).record(
            kind="Pod", allowed=True, reason=str(Reason.EXCEPTION_GRANTED), duration=0.001, ctx=ctx
        )
    assert '"name": "incident-42"' in caplog.text
    assert '"creator": "alice"' in caplog.text
    assert '"denied": "NoMatchingPolicy"' in caplog.text


# --- bounds: a namespace's flood is not considered past its bounds, and says so; the timer is cheap


def _many(count: int, namespace: str = "team-a") -> list[dict[str, Any]]:
    bodies = []
    for i in range(count):
        body = _body(expires=NOW + timedelta(hours=2, seconds=i))
        body["metadata"]["name"] = f"flood-{i}"
        body["metadata"]["namespace"] = namespace
        bodies.append(body)
    return bodies


async def test_past_the_namespace_bound_exceptions_are_ignored_and_their_status_says_so(
    exceptions: Exceptions,
) -> None:
    bodies = [*_many(MAX_EXCEPTIONS_PER_NAMESPACE + 5), *_many(1, "team-b")]
    store: dict[object, list[object]] = {}
    for body in bodies:
        for key, entry in (await exceptions.index(body=body)).items():
            store[key] = [entry]
    exceptions.rebuild({EXCEPTION_INDEX: store})
    engine = exceptions.state.engine
    assert len(engine.exceptions.in_namespace("team-a")) == MAX_EXCEPTIONS_PER_NAMESPACE
    assert len(engine.exceptions.in_namespace("team-b")) == 1  # another namespace keeps its own
    # the ones expiring last are kept: flood-0..4 (expiring first) are the ignored ones
    assert engine.exceptions.ignored == {("team-a", f"flood-{i}") for i in range(5)}

    patch: dict[str, Any] = {}
    await exceptions.on_timer(body=bodies[0], patch=patch)
    assert patch["status"]["state"] == "Active"
    assert patch["status"]["message"].endswith(IGNORED_NOTE)
    patch = {}
    await exceptions.on_timer(body=bodies[-2], patch=patch)
    assert not patch["status"]["message"].endswith(IGNORED_NOTE)


async def test_the_timer_does_not_compile_an_unchanged_exception(
    exceptions: Exceptions, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _body()
    body["status"] = desired_status(compile_entry(body, timedelta(days=1)), NOW)
    compiled: list[object] = []
    real = module.compile_entry
    monkeypatch.setattr(module, "compile_entry", lambda *a: compiled.append(a) or real(*a))
    patch: dict[str, Any] = {}
    await exceptions.on_timer(body=body, patch=patch)
    assert (patch, compiled) == ({}, [])  # read from its status: no compile, no patch
    clock.now = NOW + timedelta(hours=2)  # its expiry
    await exceptions.on_timer(body=body, patch=patch)
    assert patch["status"]["state"] == "Expired"
    assert len(compiled) == 1
    body["metadata"]["generation"] = 2  # a new spec: compiled again, whatever the status says
    body["status"] = patch["status"]
    patch = {}
    await exceptions.on_timer(body=body, patch=patch)
    assert len(compiled) == 2


async def test_a_burst_of_events_rebuilds_once(
    exceptions: Exceptions, monkeypatch: pytest.MonkeyPatch
) -> None:

    rebuilds: list[object] = []
    real = exceptions.rebuild
    monkeypatch.setattr(exceptions, "rebuild", lambda indices: rebuilds.append(1) or real(indices))
    store: dict[object, list[object]] = {}
    for body in _many(20):
        for key, entry in (await exceptions.index(body=body)).items():
            store[key] = [entry]
        await exceptions.on_event(type="ADDED", body=body, patch={}, **{EXCEPTION_INDEX: store})
    assert rebuilds == []
    await asyncio.sleep(REBUILD_COALESCE_SECONDS * 3)
    assert rebuilds == [1]
    assert len(exceptions.state.engine.exceptions) == 20
