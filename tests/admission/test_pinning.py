"""The patch builder and the verified-images record (controller/admission/pinning.py): pure, offline.

Properties over random pod shapes: the patch applies cleanly (RFC 6902, applied by the small applier
below, which refuses anything it does not understand), pins exactly the images given, leaves every
other field alone, and is idempotent (the second build on the patched object is empty).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.admission.pinning import (
    ANNOTATION,
    MAX_ANNOTATION_BYTES,
    VerifiedImage,
    build_patch,
    decode_record,
    effective_mode,
    encode_record,
    image_sites,
    merged_record,
    pinned,
    record_key,
    verified_entry,
)
from controller.errors import InputError, Reason
from controller.model import Digest, ImageVerdict, VerifiedSignature

D1 = Digest("sha256", "1" * 64)
D2 = Digest("sha256", "2" * 64)

# --- a tiny RFC 6902 applier (add / replace / remove), strict about paths


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def apply_patch(doc: Any, patch: list[dict[str, object]]) -> Any:
    out = copy.deepcopy(doc)
    for op in patch:
        tokens = [_unescape(t) for t in str(op["path"]).split("/")[1:]]
        parent = out
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        if op["op"] == "replace":
            if isinstance(parent, list):
                assert 0 <= int(last) < len(parent)
                parent[int(last)] = op["value"]
            else:
                assert last in parent, f"replace of a missing {op['path']}"
                parent[last] = op["value"]
        elif op["op"] == "add":
            assert isinstance(parent, dict)
            parent[last] = op["value"]
        elif op["op"] == "remove":
            assert isinstance(parent, dict) and last in parent
            del parent[last]
        else:
            raise AssertionError(f"unexpected op {op['op']}")
    return out


# --- strategies: pods of random shape

_names = st.sampled_from(["app", "ghcr.io/acme/app", "reg.example:5000/team/x", "nginx"])
_tags = st.sampled_from(["", ":1.4", ":latest", ":v2"])
_image = st.builds(lambda n, t: n + t, _names, _tags) | st.builds(lambda n: f"{n}@{D2}", _names)


def _containers(prefix: str, max_size: int) -> st.SearchStrategy[list[dict[str, object]]]:
    return st.lists(_image, max_size=max_size).map(
        lambda images: [
            {"name": f"{prefix}{i}", "image": img, "ports": [{"containerPort": 80}]}
            for i, img in enumerate(images)
        ]
    )


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": draw(_containers("c", 4).filter(bool))}
    if draw(st.booleans()):
        spec["initContainers"] = draw(_containers("i", 3))
    if draw(st.booleans()):
        spec["ephemeralContainers"] = draw(_containers("e", 2))
    if draw(st.booleans()):
        volumes: list[dict[str, Any]] = [{"name": "data", "emptyDir": {}}]
        volumes += [
            {"name": f"v{i}", "image": {"reference": r}}
            for i, r in enumerate(draw(st.lists(_image, max_size=2)))
        ]
        spec["volumes"] = volumes
    metadata: dict[str, Any] = {"name": "p", "namespace": "ns"}
    shape = draw(st.sampled_from(["none", "empty", "other", "forged"]))
    if shape == "empty":
        metadata["annotations"] = {}
    elif shape == "other":
        metadata["annotations"] = {"team": "a/b~c"}
    elif shape == "forged":
        metadata["annotations"] = {
            ANNOTATION: '{"app:1.4":{"digest":"sha256:bad","signer":"me","issuer":"x"}}'
        }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _images(obj: Mapping[str, Any]) -> list[str]:
    return [site.image for site in image_sites(obj)]


@settings(max_examples=200, deadline=None)
@given(pods(), st.data())
def test_patch_pins_exactly_the_given_images_and_is_idempotent(
    pod: dict[str, Any], data: st.DataObject
) -> None:
    tagged = sorted({i for i in _images(pod) if "@" not in i})
    chosen = data.draw(st.lists(st.sampled_from(tagged), unique=True) if tagged else st.just([]))
    pins = {image: f"{image}@{D1}" for image in chosen}
    record = data.draw(st.none() | st.just('{"x":{"digest":"d","issuer":"i","signer":"s"}}'))

    patch = build_patch(pod, pins, record=record, manage_record=True)
    patched = apply_patch(pod, patch)

    assert _images(patched) == [pins.get(i, i) for i in _images(pod)]
    assert patched["metadata"].get("annotations", {}).get(ANNOTATION) == record
    # nothing else moved: other annotations, names, ports
    others = {k: v for k, v in pod["metadata"].get("annotations", {}).items() if k != ANNOTATION}
    assert {k: v for k, v in patched["metadata"].get("annotations", {}).items() if k != ANNOTATION} == others
    assert json.dumps(patched["spec"]).count("containerPort") == json.dumps(pod["spec"]).count(
        "containerPort"
    )
    # idempotent: pinned images are never pinned again, the record is already there
    again = {p: p for p in pins.values()} | {i: i for i in _images(patched)}
    assert build_patch(patched, again, record=record, manage_record=True) == []
    assert build_patch(patched, pins, record=record, manage_record=True) == []


@settings(max_examples=100, deadline=None)
@given(pods())
def test_a_patch_without_the_record_never_touches_metadata(pod: dict[str, Any]) -> None:
    pins = {i: f"{i}@{D1}" for i in _images(pod) if "@" not in i}
    patch = build_patch(pod, pins)
    assert all(str(op["path"]).startswith("/spec/") for op in patch)
    assert apply_patch(pod, patch)["metadata"] == pod["metadata"]


def test_workload_templates_are_patched_at_their_template_path() -> None:
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "c", "namespace": "n"},
        "spec": {
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "app:1"}]}}}}
        },
    }
    patch = build_patch(cron, {"app:1": f"app:1@{D1}"})
    assert patch == [
        {
            "op": "replace",
            "path": "/spec/jobTemplate/spec/template/spec/containers/0/image",
            "value": f"app:1@{D1}",
        }
    ]


def test_an_unreadable_object_is_an_error_not_an_empty_patch() -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {},
        "spec": {"containers": [{"name": "a", "image": 3}]},
    }
    with pytest.raises(InputError) as e:
        build_patch(bad, {})
    assert e.value.reason == Reason.MANIFEST_DOCUMENT_INVALID


def test_a_forged_record_is_replaced_and_an_unverified_pod_loses_it() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"annotations": {ANNOTATION: '{"evil":1}'}},
        "spec": {"containers": [{"name": "a", "image": "app"}]},
    }
    assert build_patch(pod, {}, record=None, manage_record=True) == [
        {"op": "remove", "path": "/metadata/annotations/imprimatur.dev~1verified-images"}
    ]
    assert build_patch(pod, {}, record="{}", manage_record=True)[0]["op"] == "add"


# --- which images, which mode


def _verdict(image: str, *, allowed: bool = True, digest: Digest | None = D1, **kw: Any) -> ImageVerdict:
    signer = VerifiedSignature(
        subject="alice@example.com",
        issuer="https://issuer",
        claims={},
        digest=digest or D1,
        log_index=1,
        integrated_time=datetime(2025, 1, 1, tzinfo=UTC),
    )
    return ImageVerdict(image, allowed, Reason.VERIFIED, "ok", digest, signers=(signer,), **kw)


def test_only_allowed_tagged_images_with_a_digest_are_pinned() -> None:
    assert pinned("app:1.4", _verdict("app:1.4")) == f"app:1.4@{D1}"
    assert pinned("app:1.4", _verdict("app:1.4", allowed=False)) is None
    assert pinned("app:1.4", _verdict("app:1.4", digest=None)) is None
    assert pinned(f"app:1.4@{D2}", _verdict(f"app:1.4@{D2}")) is None  # never re-pinned


def test_record_keys_drop_only_a_pinned_digest() -> None:
    assert record_key(f"app:1.4@{D1}") == "app:1.4"
    assert record_key(f"reg:5000/app:1.4@{D1}") == "reg:5000/app:1.4"
    assert record_key(f"reg:5000/app@{D1}") == f"reg:5000/app@{D1}"
    assert record_key("app:1.4") == "app:1.4"


def test_key_signed_images_are_recorded_by_key_id() -> None:
    verdict = _verdict("app:1")
    keyed = VerifiedSignature(
        subject="", issuer="", claims={}, digest=D1, log_index=None, integrated_time=None, key_id="sha256:abc"
    )
    entry = verified_entry(ImageVerdict("app:1", True, Reason.VERIFIED, "", D1, signers=(keyed,)))
    assert entry == VerifiedImage(str(D1), "sha256:abc", "")
    assert verified_entry(_verdict("app:1", allowed=False)) is None
    assert (
        verified_entry(ImageVerdict("app:1", True, Reason.VERIFIED, "", D1)) is None
    )  # warn mode: no signer
    assert verified_entry(verdict) == VerifiedImage(str(D1), "alice@example.com", "https://issuer")


@pytest.mark.parametrize(
    ("setting", "cluster", "namespaced", "expected"),
    [
        ("pods", [], [], "pods"),
        ("off", [], [], "off"),
        ("pods", ["off"], [], "off"),  # a cluster admin's policy may turn it off for its images
        ("pods", ["off", "workloads"], [], "workloads"),  # the strictest cluster policy
        ("pods", [None], ["off"], "pods"),  # a namespace cannot turn it off ...
        ("off", [], ["pods"], "pods"),  # ... but may turn it on
        ("pods", ["off"], ["off"], "off"),
        ("pods", [], ["workloads", None], "workloads"),
    ],
)
def test_effective_mode_namespaces_can_only_raise(
    setting: Any, cluster: list[Any], namespaced: list[Any], expected: str
) -> None:
    assert effective_mode(setting, cluster, namespaced) == expected


# --- the record


def test_record_is_sorted_compact_and_bounded() -> None:
    entries = {f"img{i:04d}:1": VerifiedImage(str(D1), "s" * 200, "i") for i in range(200)}
    value, omitted = encode_record(entries)
    assert value is not None
    assert len(value.encode()) <= MAX_ANNOTATION_BYTES
    assert omitted > 0
    kept = decode_record(value)
    assert list(kept) == sorted(kept) and len(kept) + omitted == 200
    assert encode_record(entries) == (value, omitted)  # deterministic
    assert encode_record({}) == (None, 0)


@pytest.mark.parametrize(
    "stored",
    [
        "not json",
        "[]",
        '{"a":{"digest":"x","signer":"s"}}',
        '{"a":{"digest":1,"signer":"s","issuer":"i"}}',
        '{"a":{"digest":"x","signer":"s","issuer":"i","extra":"e"}}',
        "[" * 100000,
    ],
)
def test_a_malformed_stored_record_is_no_record(stored: str) -> None:
    assert decode_record(stored) == {}


def test_update_keeps_stored_entries_only_where_still_true() -> None:
    old_value, _ = encode_record(
        {"a:1": VerifiedImage(str(D1), "alice", "i"), "b:1": VerifiedImage(str(D1), "bob", "i")}
    )
    old = {"metadata": {"annotations": {ANNOTATION: old_value}}}
    fresh = {"c:1": VerifiedImage(str(D2), "carol", "i")}
    # a:1 still pinned at D1 (kept); b:1 now pinned at D2 (its stored entry is about another digest)
    merged = merged_record([f"a:1@{D1}", f"b:1@{D2}", f"c:1@{D2}"], fresh, old)
    assert merged == {
        "a:1": VerifiedImage(str(D1), "alice", "i"),
        "c:1": VerifiedImage(str(D2), "carol", "i"),
    }
    # the incoming object's own annotation is never an input: only ``old`` (the stored object) is
    assert merged_record([f"a:1@{D1}"], {}, None) == {}
