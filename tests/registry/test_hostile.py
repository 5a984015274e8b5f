"""The registry client with a Budget against a hostile registry: every call ends by the deadline.

Each mode of :mod:`tests.fixtures.hostile` goes through the real :class:`RegistryClient` over TLS; the
test asserts the reason code and that the call returned within the budget's deadline + 0.5 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from controller.errors import FetchError, ImprimaturError, Reason
from controller.model import Digest, ImageRef
from controller.registry import Budget, BytePool, Limits, RegistryClient, RegistryConfig, parse_reference
from tests.fixtures.hostile import BOMB_BLOB_BYTES, BOMB_LAYERS, BOMB_MANIFESTS, HostileRegistry, Mode
from tests.fixtures.registry import TestPKI

DEADLINE_SECONDS = 1.5
SLACK_SECONDS = 0.5
MIB = 1024 * 1024


@pytest.fixture
def hostile(registry_pki: TestPKI) -> Iterator[HostileRegistry]:
    with HostileRegistry(tls=registry_pki) as server:
        yield server


def _client(server: HostileRegistry, limits: Limits | None = None) -> RegistryClient:
    return RegistryClient(RegistryConfig.from_yaml(server.registries_yaml()), limits=limits)


def _budget(max_bytes: int = 32 * MIB, pool: BytePool | None = None) -> Budget:
    return Budget(deadline=time.monotonic() + DEADLINE_SECONDS, max_bytes=max_bytes, pool=pool)


def _ref(server: HostileRegistry) -> ImageRef:
    return parse_reference(f"{server.host}/hostile/app:v1")


Call = Callable[[RegistryClient, ImageRef, Budget], object]

CALLS: dict[str, Call] = {
    "resolve": lambda c, r, b: c.resolve(r, budget=b),
    "get_manifest": lambda c, r, b: c.get_manifest(r, "v1", budget=b),
    "get_blob": lambda c, r, b: c.get_blob(r, Digest.of(b"blob"), 4 * MIB, budget=b),
    "fetch_signatures": lambda c, r, b: c.fetch_signatures(r, Digest.of(b"image"), budget=b),
    "fetch_referrer_bundles": lambda c, r, b: c.fetch_referrer_bundles(r, Digest.of(b"image"), budget=b),
}

EXPECTED: dict[Mode, Reason] = {
    "hang": Reason.LIMIT_EXCEEDED,
    "drip_headers": Reason.LIMIT_EXCEEDED,
    "redirect_loop": Reason.LIMIT_EXCEEDED,
    "status_500": Reason.REGISTRY_UNAVAILABLE,
    "status_429": Reason.REGISTRY_UNAVAILABLE,
}


def _timed(
    call: Call, client: RegistryClient, ref: ImageRef, budget: Budget
) -> tuple[ImprimaturError, float]:
    started = time.monotonic()
    with pytest.raises(ImprimaturError) as caught:
        call(client, ref, budget)
    return caught.value, time.monotonic() - started


@pytest.mark.parametrize("mode", sorted(EXPECTED))
@pytest.mark.parametrize("call", sorted(CALLS))
def test_every_call_ends_by_the_deadline(hostile: HostileRegistry, mode: Mode, call: str) -> None:
    hostile.mode = mode
    client = _client(hostile)
    budget = _budget()
    error, took = _timed(CALLS[call], client, _ref(hostile), budget)
    assert error.reason is EXPECTED[mode], error.message()
    assert took < DEADLINE_SECONDS + SLACK_SECONDS
    if mode in ("hang", "drip_headers"):
        assert "gave up after 1." in error.detail  # states the time actually taken
    client.close()


def test_dripped_headers_are_cut_although_each_byte_beats_the_read_timeout(hostile: HostileRegistry) -> None:
    hostile.mode = "drip_headers"
    client = _client(hostile, Limits(read_timeout=5.0, total_timeout=1.0))
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        client.resolve(_ref(hostile))  # no budget: total_timeout alone bounds the header wait
    assert caught.value.reason is Reason.LIMIT_EXCEEDED
    assert time.monotonic() - started < 1.0 + SLACK_SECONDS


@pytest.mark.parametrize("mode", ["drip_body", "oversize", "oversize_chunked", "huge_content_length"])
def test_bodies_are_bounded_in_time_and_bytes(hostile: HostileRegistry, mode: Mode) -> None:
    hostile.mode = mode
    client = _client(hostile)
    budget = _budget(max_bytes=8 * MIB)
    error, took = _timed(CALLS["get_manifest"], client, _ref(hostile), budget)
    assert error.reason is Reason.LIMIT_EXCEEDED, error.message()
    assert took < DEADLINE_SECONDS + SLACK_SECONDS
    assert budget.spent <= 8 * MIB


def test_a_body_past_the_decision_budget_names_the_limit(hostile: HostileRegistry) -> None:
    hostile.mode = "oversize_chunked"
    budget = _budget(max_bytes=MIB)
    error, _ = _timed(CALLS["get_manifest"], _client(hostile), _ref(hostile), budget)
    assert error.reason is Reason.LIMIT_EXCEEDED
    assert f"{MIB}-byte budget" in error.detail
    assert budget.spent <= MIB


def test_the_process_pool_bounds_concurrent_decisions(hostile: HostileRegistry) -> None:
    hostile.mode = "oversize_chunked"
    pool = BytePool(2 * MIB)
    holder = Budget(deadline=time.monotonic() + 10, max_bytes=8 * MIB, pool=pool)
    holder.charge(int(1.5 * MIB), "an earlier read")
    budget = _budget(pool=pool)
    error, _ = _timed(CALLS["get_manifest"], _client(hostile), _ref(hostile), budget)
    assert error.reason is Reason.LIMIT_EXCEEDED
    assert "pool" in error.detail
    budget.close()
    holder.close()
    assert pool.in_use == 0


def test_digest_mismatch(hostile: HostileRegistry) -> None:
    hostile.mode = "digest_mismatch"
    client = _client(hostile)
    ref = _ref(hostile)
    for call in (
        lambda: client.get_manifest(ref, str(Digest.of(b"wanted")), budget=_budget()),
        lambda: client.get_blob(ref, Digest.of(b"wanted"), MIB, budget=_budget()),
        lambda: client.get_manifest(ref, "v1", budget=_budget()),  # the digest header lies
    ):
        with pytest.raises(ImprimaturError) as caught:
            call()
        assert caught.value.reason is Reason.DIGEST_MISMATCH


def test_same_blob_in_many_layers_is_fetched_once_and_layers_are_bounded(hostile: HostileRegistry) -> None:
    hostile.mode = "same_blob_many_layers"
    bomb = hostile.bomb
    subject = Digest.parse(bomb.image_digest)
    budget = _budget(max_bytes=16 * MIB)
    with pytest.raises(FetchError) as caught:
        _client(hostile).fetch_referrer_bundles(_ref(hostile), subject, budget=budget)
    assert caught.value.reason is Reason.LIMIT_EXCEEDED  # 2 x 64 layers > 64 in one lookup
    assert hostile.count("/blobs/") == 1
    assert budget.spent < 16 * MIB


def test_same_blob_under_a_wider_layer_bound_costs_one_fetch(hostile: HostileRegistry) -> None:
    hostile.mode = "same_blob_many_layers"
    bomb = hostile.bomb
    limits = Limits(max_signature_layers=BOMB_MANIFESTS * BOMB_LAYERS)
    budget = _budget(max_bytes=8 * MIB)
    bundles = _client(hostile, limits).fetch_referrer_bundles(
        _ref(hostile), Digest.parse(bomb.image_digest), budget=budget
    )
    assert len(bundles) == BOMB_MANIFESTS * BOMB_LAYERS
    assert len({id(b.payload) for b in bundles}) == 1  # one copy in memory
    assert hostile.count("/blobs/") == 1
    assert BOMB_BLOB_BYTES <= budget.spent < BOMB_BLOB_BYTES + MIB
