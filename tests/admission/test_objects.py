"""Compiling the controller's objects into entries, and the status they carry."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from controller.admission.kube import KubernetesReader
from controller.admission.objects import (
    ObjectKey,
    PolicyEntry,
    TrustRootRef,
    compile_policy_entry,
    compile_trust_root_entry,
    refresh_trust_root_entry,
)
from controller.admission.status import desired_status, status_differs
from controller.errors import Reason
from tests.admission.harness import cluster_policy, trust_root
from tests.admission.kube import Cluster, declare_resources
from tests.kit.sigstore import SigstoreKit

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
async def cluster(kmock: Any) -> AsyncIterator[Cluster]:
    declare_resources(kmock)
    async with aiohttp.ClientSession() as session:
        yield Cluster(kmock, session)


def test_policy_entry_keeps_the_compile_error() -> None:
    good = compile_policy_entry(
        {**cluster_policy("good", ["ghcr.io/**"]), "metadata": {"name": "good", "generation": 4}}
    )
    assert good.ready and good.generation == 4 and good.key == ObjectKey("ClusterImagePolicy", None, "good")
    bad = cluster_policy("bad", ["ghcr.io/**"])
    bad["spec"]["mode"] = "sometimes"  # type: ignore[index]
    entry = compile_policy_entry(bad)
    assert not entry.ready
    assert entry.reason == Reason.POLICY_INVALID
    assert "spec.mode" in entry.detail


async def test_inline_trust_root(sigstore_kit: SigstoreKit) -> None:
    entry = await compile_trust_root_entry(trust_root(sigstore_kit.trusted_root_json(), "kit"), None)
    assert entry.ready
    assert entry.source == "inline"
    assert entry.root is not None and entry.root.name == "kit"


@pytest.mark.parametrize(
    "spec",
    [
        {"inline": "{not json"},
        {"inline": 42},
        {},
        {"inline": "{}", "configMapRef": {"namespace": "a", "name": "b", "key": "c"}},
        {"inline": "{}", "extra": True},
        {"configMapRef": {"namespace": "a", "name": "b"}},
        {"configMapRef": {"namespace": "a", "name": "b", "key": "c"}},  # no API to read it from
    ],
)
async def test_invalid_trust_roots_keep_their_error(spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": "imprimatur.dev/v1alpha1",
        "kind": "TrustRoot",
        "metadata": {"name": "custom"},
        "spec": spec,
    }
    entry = await compile_trust_root_entry(body, None)
    assert not entry.ready
    assert entry.reason == Reason.TRUST_ROOT_INVALID


@pytest.mark.parametrize("name", ["public-good", "staging"])
async def test_builtin_names_are_reserved(name: str, sigstore_kit: SigstoreKit) -> None:
    entry = await compile_trust_root_entry(trust_root(sigstore_kit.trusted_root_json(), name), None)
    assert not entry.ready
    assert "reserved" in entry.detail


async def test_trust_root_from_configmap_and_secret(cluster: Cluster, sigstore_kit: SigstoreKit) -> None:
    data = sigstore_kit.trusted_root_json()
    await cluster.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cm", "namespace": "sig"},
            "data": {"root.json": data.decode()},
            "binaryData": {"bin.json": base64.b64encode(data).decode()},
        }
    )
    await cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "sec", "namespace": "sig"},
            "data": {"root.json": base64.b64encode(data).decode(), "bad": "!!!"},
        }
    )
    reader = KubernetesReader.for_url(cluster.url)

    def body(ref: str, name: str, key: str) -> dict[str, Any]:
        return {
            "apiVersion": "imprimatur.dev/v1alpha1",
            "kind": "TrustRoot",
            "metadata": {"name": "custom"},
            "spec": {ref: {"namespace": "sig", "name": name, "key": key}},
        }

    from_cm = await compile_trust_root_entry(body("configMapRef", "cm", "root.json"), reader, "sig")
    assert from_cm.ready, from_cm.detail
    assert from_cm.source == "ConfigMap sig/cm[root.json]"
    assert (await compile_trust_root_entry(body("configMapRef", "cm", "bin.json"), reader, "sig")).ready
    from_secret = await compile_trust_root_entry(body("secretRef", "sec", "root.json"), reader, "sig")
    assert from_secret.ready, from_secret.detail
    for ref, name, key, problem in [
        ("configMapRef", "cm", "absent", "has no key"),
        ("configMapRef", "nope", "root.json", "does not exist"),
        ("secretRef", "sec", "bad", "not base64"),
    ]:
        entry = await compile_trust_root_entry(body(ref, name, key), reader, "sig")
        assert not entry.ready
        assert entry.reason == Reason.TRUST_ROOT_INVALID
        assert problem in entry.detail


def test_status_of_an_invalid_object() -> None:
    entry = PolicyEntry(
        ObjectKey("ImagePolicy", "team", "p"), 7, None, Reason.POLICY_INVALID, "spec.images: empty"
    )
    status = desired_status({}, entry, NOW)
    assert status == {
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "PolicyInvalid",
                "message": "PolicyInvalid: spec.images: empty",
                "lastTransitionTime": "2026-01-02T03:04:05Z",
                "observedGeneration": 7,
            }
        ],
        "observedGeneration": 7,
    }


def test_transition_time_changes_only_with_the_status() -> None:
    good = compile_policy_entry(cluster_policy("good", ["ghcr.io/**"]))
    first = desired_status({}, good, NOW)
    body = {"status": first}
    later = datetime(2026, 2, 1, tzinfo=UTC)
    assert desired_status(body, good, later) == first
    assert not status_differs(body, desired_status(body, good, later))
    bad = PolicyEntry(good.key, None, None, Reason.POLICY_INVALID, "x")
    flipped = desired_status(body, bad, later)
    assert flipped["conditions"][0]["lastTransitionTime"] == "2026-02-01T00:00:00Z"  # type: ignore[index]
    assert status_differs(body, flipped)
    assert status_differs({}, first)


def _ref_body(field: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "imprimatur.dev/v1alpha1",
        "kind": "TrustRoot",
        "metadata": {"name": "custom"},
        "spec": {field: {"namespace": namespace, "name": "roots", "key": "root.json"}},
    }


class _Reader:
    """Records every read: a reference outside the controller's namespace must not even be read."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, str, str]] = []

    async def read(self, resource: Any, namespace: str, name: str) -> dict[str, object] | None:
        self.reads.append((resource, namespace, name))
        return None


@pytest.mark.parametrize("field", ["configMapRef", "secretRef"])
async def test_references_only_into_the_controller_namespace(field: str) -> None:
    reader = _Reader()
    elsewhere = await compile_trust_root_entry(_ref_body(field, "kube-system"), reader, "imprimatur")
    assert not elsewhere.ready
    assert elsewhere.reason == Reason.TRUST_ROOT_INVALID
    assert f"spec.{field}.namespace: 'kube-system' is not allowed" in elsewhere.detail
    assert "'imprimatur'" in elsewhere.detail
    unknown = await compile_trust_root_entry(_ref_body(field, "imprimatur"), reader, None)
    assert not unknown.ready
    assert unknown.reason == Reason.TRUST_ROOT_INVALID
    assert "IMPRIMATUR_NAMESPACE" in unknown.detail
    assert reader.reads == []  # neither was read
    missing = await compile_trust_root_entry(_ref_body(field, "imprimatur"), reader, "imprimatur")
    assert missing.ref_missing and not missing.ready
    assert reader.reads == [("configmaps" if field == "configMapRef" else "secrets", "imprimatur", "roots")]


async def test_refresh_picks_up_edits_of_the_referenced_data(
    cluster: Cluster, sigstore_kit: SigstoreKit
) -> None:
    data = sigstore_kit.trusted_root_json().decode()
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "roots", "namespace": "imprimatur"},
        "data": {"root.json": data},
    }
    await cluster.create(configmap)
    reader = KubernetesReader.for_url(cluster.url)
    entry = await compile_trust_root_entry(_ref_body("configMapRef", "imprimatur"), reader, "imprimatur")
    assert entry.ready and entry.ref == TrustRootRef("configmaps", "imprimatur", "roots", "root.json")
    assert await refresh_trust_root_entry(entry, reader) is entry  # unchanged: the very same entry

    await cluster.patch("ConfigMap", "roots", {"data": {"root.json": "{not json"}}, namespace="imprimatur")
    broken = await refresh_trust_root_entry(entry, reader)
    assert not broken.ready and broken.reason == Reason.TRUST_ROOT_INVALID
    assert await refresh_trust_root_entry(broken, reader) is broken  # still broken the same way

    await cluster.patch("ConfigMap", "roots", {"data": {"root.json": data}}, namespace="imprimatur")
    fixed = await refresh_trust_root_entry(broken, reader)
    assert fixed.ready and fixed.data_digest == entry.data_digest

    await cluster.delete("ConfigMap", "roots", namespace="imprimatur")
    gone = await refresh_trust_root_entry(fixed, reader)
    assert not gone.ready and gone.ref_missing
    assert gone.reason == Reason.TRUST_ROOT_INVALID


def test_a_policy_is_ready_only_with_its_trust_root() -> None:
    entry = compile_policy_entry(cluster_policy("p", ["ghcr.io/**"], trustRoot="custom"))
    assert entry.ready
    cases = [
        ({"public-good": True}, "False", "TrustRootUnknown", "'custom' does not exist"),
        ({"public-good": True, "custom": False}, "False", "TrustRootUnknown", "'custom' is not ready"),
        ({"public-good": True, "custom": True}, "True", "Compiled", "Compiled: ClusterImagePolicy p"),
    ]
    for roots, status, reason, text in cases:
        condition = desired_status({}, entry, NOW, trust_roots=roots)["conditions"][0]  # type: ignore[index]
        assert (condition["status"], condition["reason"]) == (status, reason)
        assert text in condition["message"]
    # without trust-root knowledge (files mode) only compilation counts
    assert desired_status({}, entry, NOW)["conditions"][0]["status"] == "True"  # type: ignore[index]
