"""The background loop's pacing: slices, the share of wall time, waits not counted; and the cycle's
report encoding, paced, is the same JSON as one ``json.dumps``."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time

import aiohttp.web
import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.admission.background_pace import (
    MAX_DEFER_SECONDS,
    MAX_PAUSE_SECONDS,
    NAP_SECONDS,
    WEBHOOK_THREAD,
    PaceLimits,
    Pacer,
    ThreadActivity,
)
from controller.admission.background_reports import encode
from controller.admission.serving import ServingLoop


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _pacer(t: FakeTime, **limits: float) -> Pacer:
    return Pacer(PaceLimits(**limits), clock=t.clock, sleep=t.sleep)


def test_no_pause_within_a_slice_then_a_pause_for_the_share() -> None:
    t = FakeTime()
    pace = _pacer(t, share=0.1, slice_seconds=0.002)

    async def work() -> None:
        for _ in range(10):  # 10 items of 0.5 ms: two slices of 2 ms, then 1 ms left
            t.now += 0.0005
            await pace.tick()

    asyncio.run(work())
    assert t.sleeps == pytest.approx([0.018, 0.018])  # 2 ms * (1 - 0.1) / 0.1
    assert pace.stats.slices == 2
    assert pace.stats.longest_slice == pytest.approx(0.002)


def test_a_wait_on_another_system_is_not_a_slice() -> None:
    t = FakeTime()
    pace = _pacer(t, share=0.5, slice_seconds=0.002)

    async def work() -> None:
        t.now += 0.001
        async with pace.away():
            t.now += 5.0  # the API server took 5 s
        t.now += 0.001
        await pace.tick()  # 1 ms since the wait: no pause

    asyncio.run(work())
    assert t.sleeps == pytest.approx([0.001])  # only the slice before the wait, at share 0.5
    assert pace.stats.busy_seconds == pytest.approx(0.001)


@given(
    st.floats(0.01, 1.0),
    st.lists(st.floats(0.0, 0.05), min_size=1, max_size=200),
)
def test_the_share_is_kept_and_every_pause_is_bounded(share: float, items: list[float]) -> None:
    t = FakeTime()
    pace = _pacer(t, share=share, slice_seconds=0.002)

    async def work() -> None:
        for cost in items:
            t.now += cost
            await pace.tick()

    asyncio.run(work())
    assert all(0 <= s <= MAX_PAUSE_SECONDS for s in t.sleeps)
    uncapped = all(s < MAX_PAUSE_SECONDS for s in t.sleeps)
    if uncapped and pace.stats.slices:
        closed = pace.stats.busy_seconds + pace.stats.paused_seconds
        assert pace.stats.busy_seconds <= share * closed + 1e-9


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="share"):
        PaceLimits(share=0.0)
    with pytest.raises(ValueError, match="slice"):
        PaceLimits(slice_seconds=5.0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.text(max_size=8).filter(lambda k: k != "results"), json_values, min_size=1, max_size=5
    ),
    st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=4), max_size=20),
)
def test_paced_encoding_is_the_same_json(head: dict[str, object], results: list[dict[str, object]]) -> None:
    document = {**head, "results": results}
    t = FakeTime()
    body = asyncio.run(encode(document, _pacer(t)))
    assert json.loads(body) == document


def test_the_cycle_steps_aside_while_admission_runs_and_not_forever() -> None:
    t = FakeTime()
    busy_answers = iter([True, True, False] + [True] * 1000)

    pace = Pacer(PaceLimits(share=0.5), clock=t.clock, sleep=t.sleep, busy=lambda: next(busy_answers))

    async def work() -> None:
        t.now += 0.001  # past LOOK_EVERY_SECONDS
        await pace.tick()  # busy, busy, quiet: two naps
        t.now += 0.001
        await pace.tick()  # busy from now on: naps up to MAX_DEFER_SECONDS, then goes on

    asyncio.run(work())
    assert t.sleeps[:2] == pytest.approx([NAP_SECONDS, NAP_SECONDS])
    assert pace.stats.deferrals == 2
    assert sum(t.sleeps[2:]) == pytest.approx(MAX_DEFER_SECONDS)


def test_thread_activity_sees_a_busy_thread_and_not_a_sleeping_one() -> None:
    stop = threading.Event()
    spin = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            if spin.is_set():
                sum(range(1000))
            else:
                stop.wait(0.001)

    thread = threading.Thread(target=worker, name="probe-target", daemon=True)
    thread.start()
    try:
        activity = ThreadActivity("probe-target")
        assert activity.watching
        spin.set()
        time.sleep(0.05)
        assert activity()
        spin.clear()
        time.sleep(0.01)
        activity()
        stop.set()
        thread.join(5)
        time.sleep(0.01)
        assert not activity()  # ended: quiet (and never an error)
    finally:
        stop.set()
    assert not ThreadActivity("no-such-thread")()  # nothing to watch: never busy


def test_the_webhook_thread_name_is_the_one_serving_uses() -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    loop = ServingLoop(aiohttp.web.Application(), addr="127.0.0.1", port=0, context=context)
    assert loop._thread.name == WEBHOOK_THREAD
