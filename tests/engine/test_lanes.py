"""The lanes: bulkheads per tenant and host, single flight, deadlines, honest slot accounting."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from controller.engine.lanes import LaneLimits, Lanes
from controller.errors import LimitError, Reason


def _blocker(gate: threading.Event, started: list[str], name: str, hold: float = 5.0) -> object:
    def run() -> str:
        started.append(name)
        gate.wait(hold)
        return name

    return run


async def test_a_tarpit_host_fills_only_its_own_slots() -> None:
    lanes = Lanes(LaneLimits(per_host=2, per_tenant=10, total=10))
    gate = threading.Event()
    started: list[str] = []
    deadline = time.monotonic() + 5
    try:
        stuck = [
            asyncio.ensure_future(
                lanes.registry(
                    _blocker(gate, started, f"t{i}"), host="tarpit", tenant="a", deadline=deadline, what="x"
                )  # type: ignore[arg-type]
            )
            for i in range(3)
        ]
        await asyncio.sleep(0.05)
        assert sorted(started) == ["t0", "t1"]  # the third waits for a slot of its host
        t0 = time.monotonic()
        result = await lanes.registry(lambda: "ok", host="good", tenant="b", deadline=deadline, what="y")
        assert result == "ok"
        assert time.monotonic() - t0 < 0.5
        assert lanes.in_use()["busiest_host"] == 2
        gate.set()
        assert sorted(await asyncio.gather(*stuck)) == ["t0", "t1", "t2"]
    finally:
        gate.set()
        lanes.close()


async def test_a_tenant_cannot_take_more_than_its_share_across_many_hosts() -> None:
    lanes = Lanes(LaneLimits(per_host=10, per_tenant=3, total=20))
    gate = threading.Event()
    started: list[str] = []
    deadline = time.monotonic() + 5
    try:
        mine = [
            asyncio.ensure_future(
                lanes.registry(
                    _blocker(gate, started, f"h{i}"), host=f"h{i}", tenant="evil", deadline=deadline, what="x"
                )  # type: ignore[arg-type]
            )
            for i in range(6)
        ]
        await asyncio.sleep(0.05)
        assert len(started) == 3
        assert await lanes.registry(lambda: 1, host="h0", tenant="good", deadline=deadline, what="y") == 1
        gate.set()
        await asyncio.gather(*mine)
    finally:
        gate.set()
        lanes.close()


async def test_waiting_for_a_slot_ends_at_the_deadline_and_says_how_long() -> None:
    lanes = Lanes(LaneLimits(per_host=1, per_tenant=10, total=10))
    gate = threading.Event()
    started: list[str] = []
    try:
        first = asyncio.ensure_future(
            lanes.registry(
                _blocker(gate, started, "a"), host="h", tenant="t", deadline=time.monotonic() + 5, what="x"
            )  # type: ignore[arg-type]
        )
        await asyncio.sleep(0.02)
        t0 = time.monotonic()
        with pytest.raises(LimitError) as caught:
            await lanes.registry(
                lambda: 1, host="h", tenant="t", deadline=time.monotonic() + 0.2, what="resolving x"
            )
        assert 0.15 < time.monotonic() - t0 < 0.6
        assert caught.value.reason is Reason.LIMIT_EXCEEDED
        assert "gave up after 0.2s" in caught.value.detail
        assert "registry h" in caught.value.detail
        gate.set()
        await first
    finally:
        gate.set()
        lanes.close()


async def test_a_slot_is_returned_when_the_worker_ends_not_when_its_caller_gives_up() -> None:
    lanes = Lanes(LaneLimits(per_host=1, per_tenant=10, total=10))
    gate = threading.Event()
    started: list[str] = []
    try:
        with pytest.raises(LimitError):
            await lanes.registry(
                _blocker(gate, started, "slow"),  # type: ignore[arg-type]
                host="h",
                tenant="t",
                deadline=time.monotonic() + 0.1,
                what="x",
            )
        assert lanes.in_use()["busiest_host"] == 1  # the thread still runs: its slot is still taken
        gate.set()
        await asyncio.sleep(0.1)
        assert lanes.in_use()["busiest_host"] == 0
    finally:
        gate.set()
        lanes.close()


async def test_fifty_callers_share_one_flight() -> None:
    lanes = Lanes()
    calls = 0

    async def work() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "evidence"

    try:
        results = await asyncio.gather(
            *(lanes.once("k", work, deadline=time.monotonic() + 2, what="x") for _ in range(50))
        )
        assert results == ["evidence"] * 50
        assert calls == 1
        assert lanes.in_use()["flights"] == 0
        # a later call runs again (flights are not a cache)
        await lanes.once("k", work, deadline=time.monotonic() + 2, what="x")
        assert calls == 2
    finally:
        lanes.close()


async def test_a_caller_giving_up_does_not_cancel_the_flight_for_others() -> None:
    lanes = Lanes()

    async def work() -> str:
        await asyncio.sleep(0.3)
        return "done"

    try:
        patient = asyncio.ensure_future(lanes.once("k", work, deadline=time.monotonic() + 2, what="x"))
        with pytest.raises(LimitError):
            await lanes.once("k", work, deadline=time.monotonic() + 0.05, what="x")
        assert await patient == "done"
    finally:
        lanes.close()


async def test_a_flight_error_reaches_every_caller() -> None:
    lanes = Lanes()

    async def work() -> str:
        await asyncio.sleep(0.01)
        raise LimitError("the registry sent too much")

    try:
        results = await asyncio.gather(
            *(lanes.once("k", work, deadline=time.monotonic() + 1, what="x") for _ in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(r, LimitError) for r in results)
    finally:
        lanes.close()


def test_each_event_loop_gets_fresh_primitives() -> None:
    lanes = Lanes(LaneLimits(per_host=1, per_tenant=1, total=1))

    async def one() -> int:
        return await lanes.registry(lambda: 7, host="h", tenant="t", deadline=time.monotonic() + 1, what="x")

    try:
        assert asyncio.run(one()) == 7
        assert asyncio.run(one()) == 7  # a second loop: no "bound to a different event loop"
    finally:
        lanes.close()


async def test_a_flight_nobody_waits_for_is_stopped_and_frees_its_slots() -> None:
    lanes = Lanes(LaneLimits(per_host=1, per_tenant=10, total=10))
    gate = threading.Event()
    started: list[str] = []

    async def fetch(name: str) -> object:
        return await lanes.registry(
            _blocker(gate, started, name),  # type: ignore[arg-type]
            host="tarpit",
            tenant="t",
            deadline=time.monotonic() + 30,
            what=name,
        )

    try:
        # the first flight takes the host's only slot; the second queues behind it
        with pytest.raises(LimitError):
            await asyncio.gather(
                lanes.once("a", lambda: fetch("a"), deadline=time.monotonic() + 0.1, what="a"),
                lanes.once("b", lambda: fetch("b"), deadline=time.monotonic() + 0.1, what="b"),
            )
        await asyncio.sleep(0.05)
        assert lanes.in_use()["flights"] == 0  # both abandoned: nobody waited any more
        assert started == ["a"]  # the queued one never started
        gate.set()  # the running thread ends; only then is its slot free
        await asyncio.sleep(0.1)
        assert lanes.in_use()["busiest_host"] == 0
    finally:
        gate.set()
        lanes.close()
