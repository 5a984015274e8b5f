"""Budget and BytePool: deadlines clip waits, bytes are charged, the pool is shared and handed back."""

from __future__ import annotations

import contextlib
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.errors import LimitError, Reason
from controller.registry import Budget, BytePool


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_clip_is_the_smaller_of_timeout_and_time_left() -> None:
    clock = Clock()
    budget = Budget(deadline=109.0, max_bytes=10, clock=clock)
    assert budget.clip(5.0, "x") == 5.0
    clock.now = 107.5
    assert budget.clip(5.0, "x") == pytest.approx(1.5)
    assert budget.remaining() == pytest.approx(1.5)
    clock.now = 109.0
    with pytest.raises(LimitError) as caught:
        budget.clip(5.0, "GET host/v2/app/manifests/v1")
    assert caught.value.reason is Reason.LIMIT_EXCEEDED
    assert caught.value.detail == (
        "gave up after 9.0s: the decision's deadline passed while GET host/v2/app/manifests/v1"
    )
    assert budget.remaining() == 0.0


def test_the_time_taken_counts_from_the_decision_start() -> None:
    clock = Clock()
    budget = Budget(deadline=110.0, max_bytes=1, clock=clock, started=95.0)
    clock.now = 111.0
    assert "gave up after 16.0s" in budget.expired("queued").detail


def test_charge_names_the_limit_and_what_was_read() -> None:
    budget = Budget(deadline=1e18, max_bytes=100)
    budget.charge(60, "a")
    with pytest.raises(LimitError) as caught:
        budget.charge(41, "GET host/v2/app/blobs/sha256:x")
    assert "100-byte budget" in caught.value.detail
    assert "GET host/v2/app/blobs/sha256:x" in caught.value.detail
    assert budget.spent == 60
    budget.charge(40, "b")
    assert budget.spent == 100


def test_pool_is_shared_and_close_hands_bytes_back_once() -> None:
    pool = BytePool(100)
    first = Budget(deadline=1e18, max_bytes=1000, pool=pool)
    second = Budget(deadline=1e18, max_bytes=1000, pool=pool)
    first.charge(70, "a")
    with pytest.raises(LimitError) as caught:
        second.charge(31, "b")
    assert "100-byte pool" in caught.value.detail
    second.charge(30, "b")
    assert pool.in_use == 100
    first.close()
    first.close()
    assert pool.in_use == 30
    with pytest.raises(LimitError):
        first.charge(1, "after close")  # abandoned work stops at its next read
    with pytest.raises(LimitError):
        first.clip(1.0, "after close")
    with second:
        pass
    assert pool.in_use == 0


def test_pool_reserve_is_atomic_under_threads() -> None:
    pool = BytePool(1000)
    granted: list[bool] = []
    lock = threading.Lock()

    def grab() -> None:
        for _ in range(100):
            ok = pool.reserve(3)
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 1000 // 3
    assert pool.in_use == 3 * (1000 // 3)


@given(st.lists(st.integers(min_value=0, max_value=50), max_size=40), st.integers(min_value=0, max_value=500))
def test_spent_never_passes_max_bytes(charges: list[int], max_bytes: int) -> None:
    pool = BytePool(10_000)
    budget = Budget(deadline=1e18, max_bytes=max_bytes, pool=pool)
    for n in charges:
        with contextlib.suppress(LimitError):
            budget.charge(n, "x")
        assert budget.spent <= max_bytes
        assert pool.in_use == budget.spent
    budget.close()
    assert pool.in_use == 0


@pytest.mark.parametrize("bad", [0, -1])
def test_pool_capacity_must_be_positive(bad: int) -> None:
    with pytest.raises(Exception) as caught:
        BytePool(bad)
    assert getattr(caught.value, "reason", None) is Reason.CONFIG_INVALID
