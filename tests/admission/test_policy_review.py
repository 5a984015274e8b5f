"""``validate-policies``: what ``kubectl apply`` refuses, with which reason and code, and that it is the
very error the controller's status would show (one compiler, nothing written twice)."""

from __future__ import annotations

import copy
import logging
from typing import Any

import kopf
import pytest

from controller.admission.log_filters import DenialFilter
from controller.admission.objects import compile_policy_entry, compile_trust_root_entry
from controller.admission.policy_review import PolicyReview
from controller.admission.status import readiness
from tests.admission.harness import cluster_policy, image_policy, trust_root
from tests.kit.sigstore import SigstoreKit

KNOWN_ROOTS = {"public-good": True, "test-kit": True, "broken": False}


class _Reader:
    """A Kubernetes API holding a few ConfigMaps (by namespace, name)."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, object]] | None = None) -> None:
        self.objects = objects or {}
        self.reads: list[tuple[str, str, str]] = []

    async def read(self, resource: Any, namespace: str, name: str) -> dict[str, object] | None:
        self.reads.append((resource, namespace, name))
        return self.objects.get((namespace, name))


def _review(reader: _Reader | None = None) -> PolicyReview:
    return PolicyReview(reader or _Reader(), "imprimatur", lambda: KNOWN_ROOTS)


async def _validate(
    review: PolicyReview, body: dict[str, Any], operation: str = "CREATE", old: dict[str, Any] | None = None
) -> list[str]:
    warnings: list[str] = []
    await review.validate(body=body, operation=operation, old=old, warnings=warnings)
    return warnings


def _bad_policies() -> list[dict[str, Any]]:
    regex = cluster_policy("regex", ["ghcr.io/**"])
    regex["spec"]["identities"] = [{"issuer": "https://x", "subjectRegExp": "(unclosed"}]  # type: ignore[index]
    mode = image_policy("mode", "team-a", ["ghcr.io/**"], subject="a@example.com")
    mode["spec"]["mode"] = "sometimes"  # type: ignore[index]
    glob = cluster_policy("glob", ["ghcr.io/[a"])
    empty = cluster_policy("empty", [])
    unknown = cluster_policy("unknown", ["ghcr.io/**"])
    unknown["spec"]["surprise"] = True  # type: ignore[index]
    return [regex, mode, glob, empty, unknown]


@pytest.mark.parametrize("body", _bad_policies(), ids=lambda b: b["metadata"]["name"])
async def test_invalid_policies_are_refused_with_the_controllers_error(body: dict[str, Any]) -> None:
    with pytest.raises(kopf.AdmissionError) as raised:
        await _validate(_review(), body)
    message = str(raised.value)
    assert message.split(":", 1)[0] == "PolicyInvalid"
    kind, name = body["kind"], body["metadata"]["name"]
    namespace = body["metadata"].get("namespace")
    label = f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
    assert message.startswith(f"PolicyInvalid: {label}: spec")
    assert raised.value.code == 422
    # the same text the object's Ready condition carries: one compiler, one message
    entry = compile_policy_entry(body)
    assert readiness(entry) == (False, "PolicyInvalid", message)


async def test_valid_policies_are_admitted_and_a_missing_trust_root_is_a_warning() -> None:
    review = _review()
    assert await _validate(review, cluster_policy("ok", ["ghcr.io/**"])) == []
    missing = await _validate(review, cluster_policy("later", ["ghcr.io/**"], trustRoot="not-yet"))
    assert len(missing) == 1
    assert missing[0].startswith("TrustRootUnknown: ClusterImagePolicy later: spec.trustRoot:")
    broken = await _validate(review, cluster_policy("b", ["ghcr.io/**"], trustRoot="broken"))
    assert broken[0].startswith("TrustRootUnknown:") and "is not ready" in broken[0]


async def test_an_unchanged_invalid_spec_may_still_be_relabelled() -> None:
    """Refusing a metadata-only UPDATE of an object that is already invalid would wedge it."""
    bad = _bad_policies()[0]
    relabelled = copy.deepcopy(bad)
    relabelled["metadata"]["labels"] = {"team": "a"}
    warnings = await _validate(_review(), relabelled, "UPDATE", old=bad)
    assert warnings[0].startswith("PolicyInvalid:")
    # but an UPDATE that changes the spec to something invalid is refused
    good = cluster_policy("regex", ["ghcr.io/**"])
    with pytest.raises(kopf.AdmissionError) as raised:
        await _validate(_review(), bad, "UPDATE", old=good)
    assert str(raised.value).startswith("PolicyInvalid:")


async def test_trust_roots(sigstore_kit: SigstoreKit) -> None:
    review = _review()
    assert await _validate(review, trust_root(sigstore_kit.trusted_root_json(), "custom")) == []
    for body, detail in [
        (trust_root(b"{not json", "custom"), "TrustRootInvalid: TrustRoot custom: "),
        (
            trust_root(sigstore_kit.trusted_root_json(), "public-good"),
            "TrustRootInvalid: TrustRoot public-good: ",
        ),
    ]:
        with pytest.raises(kopf.AdmissionError) as raised:
            await _validate(review, body)
        assert str(raised.value).startswith(detail)
        assert raised.value.code == 422
        entry = await compile_trust_root_entry(body, None, "imprimatur")
        assert str(raised.value) == f"{entry.reason}: {entry.key}: {entry.detail}"


def _ref_root(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "imprimatur.dev/v1alpha1",
        "kind": "TrustRoot",
        "metadata": {"name": "custom"},
        "spec": {"configMapRef": {"namespace": namespace, "name": "roots", "key": "root.json"}},
    }


async def test_trust_root_references(sigstore_kit: SigstoreKit) -> None:
    data = sigstore_kit.trusted_root_json().decode()
    reader = _Reader({("imprimatur", "roots"): {"data": {"root.json": data}}})
    review = _review(reader)
    assert await _validate(review, _ref_root("imprimatur")) == []
    assert reader.reads == [("configmaps", "imprimatur", "roots")]  # the data itself was compiled

    with pytest.raises(kopf.AdmissionError) as raised:
        await _validate(review, _ref_root("kube-system"))
    assert str(raised.value).startswith(
        "TrustRootInvalid: TrustRoot custom: spec.configMapRef.namespace: 'kube-system' is not allowed"
    )
    assert raised.value.code == 422
    assert len(reader.reads) == 1  # kube-system was never read

    reader.objects[("imprimatur", "roots")] = {"data": {"root.json": "{not json"}}
    with pytest.raises(kopf.AdmissionError) as raised:
        await _validate(review, _ref_root("imprimatur"))
    assert str(raised.value).startswith("TrustRootInvalid: TrustRoot custom: ")

    # a ConfigMap that does not exist yet (kubectl apply -f dir/ in file order): admitted, with a warning
    del reader.objects[("imprimatur", "roots")]
    warnings = await _validate(review, _ref_root("imprimatur"))
    assert warnings[0].startswith(
        "TrustRootInvalid: TrustRoot custom: ConfigMap imprimatur/roots does not exist"
    )


async def test_without_a_known_namespace_no_reference_is_admitted() -> None:
    review = PolicyReview(_Reader(), None)
    with pytest.raises(kopf.AdmissionError) as raised:
        await _validate(review, _ref_root("imprimatur"))
    assert str(raised.value).startswith("TrustRootInvalid: TrustRoot custom: spec.configMapRef.namespace:")
    assert "IMPRIMATUR_NAMESPACE" in str(raised.value)


async def test_other_kinds_and_operations() -> None:
    review = _review()
    bad = _bad_policies()[0]
    assert await _validate(review, bad, "DELETE") == []  # deleting an invalid policy is always fine
    with pytest.raises(kopf.AdmissionError) as raised:
        await _validate(review, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert str(raised.value).startswith("ReviewInvalid:")
    assert raised.value.code == 400


def _record(message: str, level: int = logging.ERROR, name: str = "kopf.objects") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_denials_are_not_logged_as_errors_but_failures_are() -> None:
    denial_filter = DenialFilter(["validate-pods", "validate-policies"])
    assert not denial_filter.filter(
        _record("Webhook 'validate-pods' failed permanently: IdentityMismatch: x")
    )
    assert not denial_filter.filter(
        _record("Webhook 'validate-policies' failed permanently: PolicyInvalid: y")
    )
    # anything else still gets through: other handlers, other failures, other levels
    for kept in [
        _record("Webhook 'other' failed permanently: boom"),
        _record("Webhook 'validate-pods' failed with an exception and will stop now: boom"),
        _record("Handler 'cluster-policy-status' failed permanently: boom"),
        _record("Webhook 'validate-pods' failed permanently: x", level=logging.WARNING),
    ]:
        assert denial_filter.filter(kept)
