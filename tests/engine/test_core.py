"""The engine against the real registry: what is cached, what is fetched, and who can change what.

Every registry request is counted (a counting ``requests.Session``), so these tests see exactly when
the engine goes to the network and when it answers from what it already verified.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from controller.config import Settings
from controller.engine import Engine, builtin_trust_roots
from controller.errors import Reason
from controller.policy import PolicySet, compile_policy_lenient
from controller.registry import RegistryClient, RegistryConfig
from controller.verify import TrustRoot
from tests.admission.harness import Images, cluster_policy, image_policy, publish_images
from tests.fixtures.registry import RegistryServer
from tests.kit.sigstore import SigstoreKit

KIT = "test-kit"


class CountingSession(requests.Session):
    """A session that counts every request it sends, by method and path."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.sent: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        with self._lock:
            self.sent[(str(request.method), urlsplit(str(request.url)).path)] += 1
        return super().send(request, **kwargs)

    def total(self) -> int:
        with self._lock:
            return sum(self.sent.values())


@pytest.fixture(scope="module")
def published(registry: RegistryServer, sigstore_kit: SigstoreKit) -> Images:
    return publish_images(registry, sigstore_kit)


def _policies(*docs: dict[str, object]) -> PolicySet:
    return PolicySet([compile_policy_lenient(doc) for doc in docs])


@pytest.fixture
def make(registry: RegistryServer, sigstore_kit: SigstoreKit) -> Iterator[Any]:
    engines: list[Engine] = []

    def build(policies: PolicySet, **settings: Any) -> tuple[Engine, CountingSession]:
        session = CountingSession()
        roots = builtin_trust_roots()
        roots[KIT] = TrustRoot.from_json(sigstore_kit.trusted_root_json(), KIT)
        engine = Engine(
            registry=RegistryClient(
                config=RegistryConfig.from_yaml(registry.registries_yaml()), session=session
            ),
            policies=policies,
            trust_roots=roots,
            settings=Settings(**settings),
        )
        engines.append(engine)
        return engine, session

    yield build
    for engine in engines:
        engine.close()


def test_a_decided_image_is_answered_from_the_cache_without_the_network(make: Any, published: Images) -> None:
    engine, session = make(_policies(cluster_policy("apps", [f"{published.host}/apps/**"])))
    assert engine.cached_decision([published.signed], "team-a") is None
    first = engine.decide_images([published.signed], namespace="team-a")
    assert first.allowed, first.message()
    sent = session.total()
    assert sent > 0
    cached = engine.cached_decision([published.signed], "team-a")
    assert cached is not None and cached.allowed
    assert cached.verdicts[0].reason is Reason.VERIFIED
    assert engine.decide_images([published.signed], namespace="team-a").allowed
    assert session.total() == sent
    # a verdict is per namespace: another namespace is decided anew, but from cached evidence
    assert engine.cached_decision([published.signed], "team-b") is None
    assert engine.decide_images([published.signed], namespace="team-b").allowed
    assert session.total() == sent


def test_a_namespace_policy_edit_keeps_evidence_and_other_namespaces_verdicts(
    make: Any, published: Images
) -> None:
    # compiled once, as the operator's index keeps an unchanged object's compiled entry
    cluster = compile_policy_lenient(cluster_policy("apps", [f"{published.host}/apps/**"]))
    engine, session = make(PolicySet([cluster]))
    for namespace in ("team-a", "team-b"):
        assert engine.decide_images([published.signed], namespace=namespace).allowed
    sent = session.total()
    stricter = image_policy("extra", "team-a", [f"{published.host}/apps/**"], subject="nobody@example.com")
    engine.update(policies=PolicySet([cluster, compile_policy_lenient(stricter)]))
    assert engine.cached_decision([published.signed], "team-b") is not None  # untouched
    assert engine.cached_decision([published.signed], "team-a") is None  # re-evaluated
    denied = engine.decide_images([published.signed], namespace="team-a")
    assert not denied.allowed
    assert denied.verdicts[0].reason is Reason.IDENTITY_MISMATCH
    assert session.total() == sent  # no registry request: the evidence was kept


def test_a_changed_trust_root_drops_only_its_own_evidence(
    make: Any, published: Images, sigstore_kit: SigstoreKit
) -> None:
    host = published.host
    other = "other-kit"
    engine, session = make(
        _policies(
            cluster_policy("apps", [f"{host}/apps/good"]),
            cluster_policy("bob", [f"{host}/apps/bob"], trustRoot=other),
        )
    )
    roots = builtin_trust_roots()
    roots[KIT] = TrustRoot.from_json(sigstore_kit.trusted_root_json(), KIT)
    roots[other] = TrustRoot.from_json(sigstore_kit.trusted_root_json(), other)
    engine.update(trust_roots=roots)
    assert engine.decide_images([published.signed, published.other_signed]).allowed
    sent = session.total()
    roots = dict(roots)
    roots[other] = TrustRoot.from_json(sigstore_kit.trusted_root_json(), other)  # edited: a new object
    engine.update(trust_roots=roots)
    assert engine.decide_images([published.signed]).allowed
    assert session.total() == sent  # the unchanged root's evidence is still there
    assert engine.decide_images([published.other_signed]).allowed
    assert session.total() > sent  # the changed root's evidence was dropped and fetched again


def test_fifty_concurrent_reviews_of_a_cold_image_fetch_each_object_once(
    make: Any, published: Images
) -> None:
    engine, session = make(_policies(cluster_policy("apps", [f"{published.host}/apps/**"])))

    async def fifty() -> list[bool]:
        decisions = await asyncio.gather(
            *(engine.decide([published.signed], namespace=f"ns-{i % 5}") for i in range(50))
        )
        return [d.allowed for d in decisions]

    assert all(asyncio.run(fifty()))
    assert session.sent, "nothing was fetched"
    repeated = {request: n for request, n in session.sent.items() if n > 1}
    assert repeated == {}, f"fetched more than once: {repeated}"


def test_a_tag_is_resolved_again_only_after_its_ttl(make: Any, published: Images) -> None:
    engine, session = make(
        _policies(cluster_policy("apps", [f"{published.host}/apps/**"])), tag_ttl_seconds=30
    )
    assert engine.decide_images([published.signed_tag]).allowed
    heads = sum(n for (method, _), n in session.sent.items() if method == "HEAD")
    assert engine.decide_images([published.signed_tag]).allowed
    assert sum(n for (method, _), n in session.sent.items() if method == "HEAD") == heads
    assert engine.cached_decision([published.signed_tag]) is not None

    off, off_session = make(
        _policies(cluster_policy("apps", [f"{published.host}/apps/**"])), tag_ttl_seconds=0
    )
    assert off.decide_images([published.signed_tag]).allowed
    assert off.cached_decision([published.signed_tag]) is None  # a tag is never answered from cache
    before = off_session.total()
    assert off.decide_images([published.signed_tag]).allowed
    assert off_session.sent and off_session.total() == before + 1  # one HEAD, the evidence is cached


def test_the_tag_warning_comes_only_with_an_allow(make: Any, published: Images) -> None:
    engine, _ = make(
        _policies(cluster_policy("apps", [f"{published.host}/apps/**"], subject="nobody@example.com"))
    )
    decision = engine.decide_images([published.signed_tag])
    assert not decision.allowed
    assert decision.warnings == ()


def test_a_namespace_policy_cannot_admit_what_no_cluster_policy_covers(make: Any, published: Images) -> None:
    loose = image_policy("loose", "team-a", ["**"], subject="ignored")
    loose["spec"]["identities"] = [{"issuerRegExp": ".*", "subjectRegExp": ".*"}]  # type: ignore[index]
    engine, session = make(_policies(loose))
    decision = engine.decide_images([published.wrong_identity], namespace="team-a")
    assert not decision.allowed
    assert decision.verdicts[0].reason is Reason.NO_MATCHING_POLICY
    assert session.total() == 0  # decided without a fetch


def test_an_invalid_cluster_policy_denies_what_it_covers(make: Any, published: Images) -> None:
    broken = cluster_policy("broken", [f"{published.host}/apps/**"])
    broken["spec"]["identities"] = [{"issuer": "x", "subjectRegExp": "(a)\\1"}]  # type: ignore[index]
    engine, _ = make(_policies(broken), default_decision="allow")
    decision = engine.decide_images([published.signed])
    assert not decision.allowed
    assert decision.verdicts[0].reason is Reason.POLICY_INVALID
    assert "broken" in decision.verdicts[0].detail


def test_namespace_labels_scope_a_cluster_policy(make: Any, published: Images) -> None:
    scoped = cluster_policy("payments", [f"{published.host}/apps/**"])
    scoped["spec"]["namespaceSelector"] = {"matchLabels": {"team": "payments"}}  # type: ignore[index]
    engine, _ = make(_policies(scoped))
    assert (
        engine.decide_images([published.signed], namespace="pay").verdicts[0].reason
        is Reason.NO_MATCHING_POLICY
    )
    engine.set_namespace_labels({"pay": {"team": "payments"}})
    assert engine.cached_decision([published.signed], "pay") is None  # the labels changed the answer
    assert engine.decide_images([published.signed], namespace="pay").allowed


class _Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_tag_in_steady_use_is_refreshed_in_the_background_before_it_expires(
    registry: RegistryServer, sigstore_kit: SigstoreKit, published: Images
) -> None:
    clock = _Monotonic()
    session = CountingSession()
    roots = builtin_trust_roots()
    roots[KIT] = TrustRoot.from_json(sigstore_kit.trusted_root_json(), KIT)
    engine = Engine(
        registry=RegistryClient(config=RegistryConfig.from_yaml(registry.registries_yaml()), session=session),
        policies=_policies(cluster_policy("apps", [f"{published.host}/apps/**"])),
        trust_roots=roots,
        settings=Settings(tag_ttl_seconds=30),
        monotonic=clock,
    )

    def heads() -> int:
        return sum(n for (method, _), n in session.sent.items() if method == "HEAD")

    async def scenario() -> None:
        assert (await engine.decide([published.signed_tag])).allowed
        assert heads() == 1
        clock.now += 10  # early in its life: answered, nothing refreshed
        assert engine.cached_decision([published.signed_tag]) is not None
        await asyncio.sleep(0.2)
        assert heads() == 1
        clock.now += 15  # 25 s old: in the last fifth of its 30 s life
        assert engine.cached_decision([published.signed_tag]) is not None  # still answered at once
        for _ in range(100):
            await asyncio.sleep(0.02)
            if heads() == 2 and not engine._refreshing:
                break
        assert heads() == 2  # re-resolved once, in the background
        clock.now += 20  # past the first verdict's expiry: the refreshed one answers
        assert engine.cached_decision([published.signed_tag]) is not None

    try:
        asyncio.run(scenario())
    finally:
        engine.close()
