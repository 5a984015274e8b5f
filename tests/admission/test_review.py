"""AdmissionReview parsing and responses: strict shape checks, bounded output."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.admission.review import (
    MAX_MESSAGE_CHARS,
    MAX_WARNING_CHARS,
    MAX_WARNINGS,
    GroupVersionResource,
    bound_message,
    bound_warnings,
    parse_review,
    review_response,
    review_uid,
)
from controller.errors import InputError, Reason
from tests.admission.harness import pod, review, workload

IMAGE = "ghcr.io/acme/app@sha256:" + "a" * 64


def test_parses_what_kube_apiserver_sends() -> None:
    request = review(workload("CronJob", "nightly", [IMAGE], namespace="batch"), dry_run=True, uid="u-1")
    parsed = parse_review(request)
    assert parsed.uid == "u-1"
    assert parsed.kind == "CronJob"
    assert parsed.resource == GroupVersionResource("batch", "v1", "cronjobs")
    assert parsed.operation == "CREATE"
    assert parsed.namespace == "batch"
    assert parsed.name == "nightly"
    assert parsed.dry_run is True
    assert parsed.sub_resource is None
    assert parsed.username == "kubernetes-admin"
    assert parsed.new_object is not None and parsed.new_object["kind"] == "CronJob"
    assert parsed.old_object is None


def test_parses_an_ephemeral_container_update() -> None:
    old = pod("p", [IMAGE])
    new = pod("p", [IMAGE], ephemeral_images=[IMAGE])
    parsed = parse_review(review(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers"))
    assert parsed.operation == "UPDATE"
    assert parsed.sub_resource == "ephemeralcontainers"
    assert parsed.old_object == old


def _broken(path: list[Any], value: Any) -> dict[str, Any]:
    request = review(pod("p", [IMAGE]))
    target: Any = request
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return request


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["apiVersion"], "v1"),
        (["apiVersion"], None),
        (["kind"], "AdmissionResponse"),
        (["request"], KeyError),
        (["request"], []),
        (["request", "uid"], KeyError),
        (["request", "uid"], ""),
        (["request", "uid"], "x" * 500),
        (["request", "uid"], 7),
        (["request", "kind"], "Pod"),
        (["request", "kind", "kind"], None),
        (["request", "resource"], KeyError),
        (["request", "resource", "group"], None),
        (["request", "operation"], "create"),
        (["request", "operation"], KeyError),
        (["request", "userInfo"], KeyError),
        (["request", "dryRun"], 1),
        (["request", "object"], "pod"),
        (["request", "object"], KeyError),
        (["request", "namespace"], ["default"]),
        (["request", "subResource"], {"x": 1}),
    ],
)
def test_rejects_what_kube_apiserver_never_sends(path: list[Any], value: Any) -> None:
    with pytest.raises(InputError) as caught:
        parse_review(_broken(path, value))
    assert caught.value.reason == Reason.REVIEW_INVALID


def test_update_needs_the_old_object() -> None:
    request = review(pod("p", [IMAGE]), operation="UPDATE", old=pod("p", [IMAGE]))
    request["request"]["oldObject"] = None  # type: ignore[index]
    with pytest.raises(InputError):
        parse_review(request)


def test_uid_is_read_even_from_a_malformed_review() -> None:
    request = _broken(["request", "object"], "garbage")
    assert review_uid(request) == request["request"]["uid"]
    assert review_uid([1]) is None
    assert review_uid({"request": {"uid": 3}}) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_is_parsed_or_rejected_with_a_reason(data: object) -> None:
    try:
        parse_review(data)
    except InputError as e:
        assert e.reason == Reason.REVIEW_INVALID


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["request", "uid", "kind", "resource", "object", "userInfo", "operation"]),
        min_size=1,
        max_size=3,
    ),
    json_values,
)
def test_any_corruption_of_a_valid_review_is_parsed_or_rejected(path: list[str], value: object) -> None:
    request = copy.deepcopy(review(pod("p", [IMAGE])))
    target: Any = request
    for key in path[:-1]:
        target = target.get(key) if isinstance(target, dict) else None
    if isinstance(target, dict):
        target[path[-1]] = value
    try:
        parse_review(json.loads(json.dumps(request)))
    except InputError as e:
        assert e.reason == Reason.REVIEW_INVALID


def test_response_of_a_denial() -> None:
    response = review_response(
        api_version="admission.k8s.io/v1",
        uid="u",
        allowed=False,
        message="SignatureNotFound: x: none",
        code=403,
        warnings=["w1", "w1", "w2"],
    )
    assert response == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": "u",
            "allowed": False,
            "status": {"code": 403, "message": "SignatureNotFound: x: none", "reason": "Forbidden"},
            "warnings": ["w1", "w2"],
        },
    }


def test_response_of_an_allow_has_no_status() -> None:
    response = review_response(api_version="admission.k8s.io/v1", uid="u", allowed=True)
    assert response["response"] == {"uid": "u", "allowed": True}


def test_warnings_are_bounded() -> None:
    warnings = bound_warnings([f"w{i} " + "x" * 1000 for i in range(100)])
    assert len(warnings) == MAX_WARNINGS + 1
    assert all(len(w) <= MAX_WARNING_CHARS for w in warnings)
    assert warnings[-1] == f"{100 - MAX_WARNINGS} more warnings not shown"
    assert bound_warnings(["a\nb\tc"]) == ["a b c"]


def test_message_is_bounded_and_says_so() -> None:
    lines = [f"SignatureNotFound: image-{i}: " + "d" * 3000 for i in range(100)]
    message = bound_message(lines)
    assert len(message) <= MAX_MESSAGE_CHARS + 100
    assert message.startswith("SignatureNotFound: image-0: ")
    assert message.splitlines()[-1].endswith("more failing images not shown)")
    assert bound_message(["a", "b"]) == "a\nb"
