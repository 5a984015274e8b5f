"""Secret-held policy keys: read from the controller's namespace only, re-read, and recompiled on change."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping

import kopf
import pytest

from controller.admission.objects import PolicyEntry, compile_policy_entry
from controller.admission.policy_keys import PolicyKeys, key_secret_refs
from controller.admission.policy_review import PolicyReview
from controller.errors import FetchError, Reason
from controller.model import TrustedKey
from tests.kit.attest import public_key_pem
from tests.kit.sigstore import KeyType, generate_key

NAMESPACE = "imprimatur-system"


class FakeReader:
    """A KubeReader over a dict of Secrets; records every read and can be told to fail."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.reads: list[tuple[str, str, str]] = []
        self.fail = False

    async def read(self, resource: str, namespace: str, name: str) -> Mapping[str, object] | None:
        self.reads.append((resource, namespace, name))
        if self.fail:
            raise FetchError(Reason.REGISTRY_UNAVAILABLE, "apiserver down")
        data = self.secrets.get((namespace, name))
        return None if data is None else {"data": dict(data)}

    def put(self, namespace: str, name: str, key: str, value: bytes) -> None:
        self.secrets.setdefault((namespace, name), {})[key] = base64.b64encode(value).decode()


def _policy(name: str, *refs: tuple[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "imprimatur.dev/v1alpha1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": name, "generation": 1},
        "spec": {
            "images": [{"glob": "registry.example/**"}],
            "identities": [{"key": {"secretRef": {"name": n, "key": k}}} for n, k in refs],
        },
    }


def _pem() -> bytes:
    return public_key_pem(generate_key(KeyType.ECDSA_P256)).encode()


def _keys(entry: PolicyEntry) -> tuple[TrustedKey, ...]:
    assert entry.policy is not None, entry.detail
    return entry.policy.trusted_keys


def test_refs_are_found_in_identities_and_attestations() -> None:
    body = _policy("p", ("a", "k1"), ("a", "k1"))
    spec = body["spec"]
    assert isinstance(spec, dict)
    spec["attestations"] = [
        {
            "name": "prov",
            "predicateType": "https://slsa.dev/provenance/v1",
            "identities": [
                {"key": {"secretRef": {"name": "b", "key": "k2"}}},
                {"issuer": "https://issuer", "subject": "x@example.com"},
            ],
        },
        "not a mapping",
    ]
    assert key_secret_refs(body) == (("a", "k1"), ("b", "k2"))
    assert key_secret_refs({"spec": "nonsense"}) == ()
    assert key_secret_refs({"spec": {"identities": [{"key": {"secretRef": {"name": 3}}}]}}) == ()


def test_a_secret_key_is_read_in_the_controllers_namespace_and_compiled() -> None:
    reader = FakeReader()
    pem = _pem()
    reader.put(NAMESPACE, "signing", "cosign.pub", pem)
    reader.put("elsewhere", "signing", "cosign.pub", _pem())
    keys = PolicyKeys(reader, NAMESPACE, compile_policy_entry)
    entry = asyncio.run(keys.compile(_policy("p", ("signing", "cosign.pub"))))
    assert entry.ready
    assert [k.pem.strip() for k in _keys(entry)] == [pem.strip()]
    assert {ns for _, ns, _ in reader.reads} == {NAMESPACE}
    assert {resource for resource, _, _ in reader.reads} == {"secrets"}


@pytest.mark.parametrize("state", ["no secret", "no key", "not base64", "no namespace"])
def test_an_unresolved_key_makes_the_policy_invalid(state: str) -> None:
    reader = FakeReader()
    if state == "no key":
        reader.put(NAMESPACE, "signing", "other", _pem())
    if state == "not base64":
        reader.secrets[(NAMESPACE, "signing")] = {"cosign.pub": "%%%"}
    keys = PolicyKeys(reader, None if state == "no namespace" else NAMESPACE, compile_policy_entry)
    body = _policy("p", ("signing", "cosign.pub"))
    entry = asyncio.run(keys.compile(body))
    assert not entry.ready
    assert entry.reason is Reason.POLICY_INVALID
    assert keys.unresolved(body) == (("signing", "cosign.pub"),)


def test_a_changed_secret_recompiles_only_the_policies_that_use_it() -> None:
    reader = FakeReader()
    first, second, other = _pem(), _pem(), _pem()
    reader.put(NAMESPACE, "signing", "cosign.pub", first)
    reader.put(NAMESPACE, "team", "cosign.pub", other)
    keys = PolicyKeys(reader, NAMESPACE, compile_policy_entry)
    uses = asyncio.run(keys.compile(_policy("uses", ("signing", "cosign.pub"))))
    unrelated = asyncio.run(keys.compile(_policy("unrelated", ("team", "cosign.pub"))))

    assert asyncio.run(keys.refresh()) is False  # nothing changed: nothing recompiled
    assert keys.current(uses) is uses

    reader.put(NAMESPACE, "signing", "cosign.pub", second)
    assert asyncio.run(keys.refresh()) is True
    fresh = keys.current(uses)
    assert fresh is not uses
    assert [k.pem.strip() for k in _keys(fresh)] == [second.strip()]
    assert keys.current(unrelated) is unrelated

    # the Secret deleted: the policy becomes invalid (fail closed), not stale
    del reader.secrets[(NAMESPACE, "signing")]
    assert asyncio.run(keys.refresh()) is True
    gone = keys.current(uses)
    assert not gone.ready
    assert gone.reason is Reason.POLICY_INVALID


def test_a_failed_read_keeps_the_known_key_and_a_new_object_replaces_the_recompiled_one() -> None:
    reader = FakeReader()
    pem = _pem()
    reader.put(NAMESPACE, "signing", "cosign.pub", pem)
    keys = PolicyKeys(reader, NAMESPACE, compile_policy_entry)
    body = _policy("p", ("signing", "cosign.pub"))
    entry = asyncio.run(keys.compile(body))
    reader.fail = True
    assert asyncio.run(keys.refresh()) is False
    assert keys.current(entry) is entry
    reader.fail = False

    reader.put(NAMESPACE, "signing", "cosign.pub", _pem())
    assert asyncio.run(keys.refresh()) is True
    newer = asyncio.run(keys.compile(body))  # the object itself changed: kopf re-indexed it
    assert keys.current(newer) is newer
    assert keys.current(entry) is entry  # an entry kopf no longer holds is not mapped
    keys.forget_missing([])
    assert asyncio.run(keys.refresh()) is False


def test_validate_policies_reads_the_secret_and_only_warns_while_it_is_missing() -> None:
    reader = FakeReader()
    review = PolicyReview(reader, NAMESPACE)
    body = _policy("p", ("signing", "cosign.pub"))

    warnings: list[str] = []
    asyncio.run(review.validate(body=body, operation="CREATE", warnings=warnings))
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{Reason.POLICY_INVALID}: ")
    assert f"Secret {NAMESPACE}/signing[cosign.pub] missing yet" in warnings[0]

    broken = _policy("broken", ("signing", "cosign.pub"))
    spec = broken["spec"]
    assert isinstance(spec, dict)
    spec["images"] = [{"glob": ""}]  # wrong on its own account: refused, Secret or not
    with pytest.raises(kopf.AdmissionError) as refused:
        asyncio.run(review.validate(body=broken, operation="CREATE", warnings=[]))
    assert str(refused.value).startswith(f"{Reason.POLICY_INVALID}: ")

    reader.secrets[(NAMESPACE, "signing")] = {"cosign.pub": base64.b64encode(b"not a key").decode()}
    with pytest.raises(kopf.AdmissionError):  # present, but not a key: refused
        asyncio.run(review.validate(body=body, operation="CREATE", warnings=[]))

    reader.put(NAMESPACE, "signing", "cosign.pub", _pem())
    quiet: list[str] = []
    asyncio.run(review.validate(body=body, operation="CREATE", warnings=quiet))
    assert quiet == []


def test_a_changed_secret_reaches_the_entry_kopf_kept_after_an_equal_reindex() -> None:
    """kopf's index replaces a value only when the new one differs (``!=``): after a re-index of an
    unchanged object (a status patch's event), it still holds the first entry, an equal twin of the one
    PolicyKeys tracked last. A changed Secret must reach that entry too, or the old key stays trusted."""
    reader = FakeReader()
    first_pem, second_pem = _pem(), _pem()
    reader.put(NAMESPACE, "signing", "cosign.pub", first_pem)
    keys = PolicyKeys(reader, NAMESPACE, compile_policy_entry)
    body = _policy("p", ("signing", "cosign.pub"))
    held = asyncio.run(keys.compile(body))  # what kopf's index holds
    twin = asyncio.run(keys.compile(body))  # the re-index: equal, so kopf keeps ``held``
    assert twin == held and twin is not held

    reader.put(NAMESPACE, "signing", "cosign.pub", second_pem)
    assert asyncio.run(keys.refresh()) is True
    fresh = keys.current(held)
    assert fresh is not held
    assert [k.pem.strip() for k in _keys(fresh)] == [second_pem.strip()]
