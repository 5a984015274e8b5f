"""How the background loop shares the interpreter with admission: short slices, and a small share.

The webhook's fast path runs on its own thread and loop (:mod:`controller.admission.serving`), but
every thread of the process shares one interpreter lock, and on a busy node one CPU. A cycle that
runs flat out (a few hundred microseconds per workload, tens of milliseconds per thousand) holds the
lock for most of that time: each review then waits for the lock at every step (TLS read, parse,
answer, write), and under CPU contention the OS splits the process's CPU between the two. Measured
with ``benchmarks.background_cycle --gap 0`` before this module: admission p99 6.8 ms alone, 396 ms
while cycles ran back to back.

So the loop's own work is *paced*:

* **Slices.** :meth:`Pacer.tick` is called between items; after ``slice_seconds`` of wall time since
  the last pause it yields. A slice is wall time, so time the thread lost to the OS or to the lock
  counts against the cycle, never against admission.
* **Share.** Each slice owes a pause of ``slice * (1 - share) / share`` (naps and API waits pay it
  too): the cycle's own stretches fill at most ``share`` of the wall time, whatever ``--gap`` or the
  period asks; while paused the loop's thread sleeps in ``epoll`` and holds no lock. 2% by default:
  against 5%, admission p99 during back-to-back cycles rose by 1.1x instead of 1.3x (median of ten
  rounds, ``benchmarks.background_cycle --share``). A cycle that needs 50 ms of CPU takes 2-4 s.
* **Admission first.** Between items the pacer looks (at most every 100 µs) at the webhook thread's
  CPU clock (:class:`ThreadActivity`, Linux ``pthread_getcpuclockid``): if that thread ran since the
  last look, a review is being answered, and the cycle steps aside at once, in 1 ms naps until the
  thread is quiet (at most 50 ms per item, so a cycle still ends under constant load). A review that
  arrives mid-slice then waits for the lock once (one switch interval), not at every step.
* **Away.** Waiting on the API server (:meth:`Pacer.away`) is not a slice: it holds no lock.

Pure bookkeeping plus ``asyncio.sleep``; the clock and the sleep are injected for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

DEFAULT_SHARE: Final = 0.02
DEFAULT_SLICE_SECONDS: Final = 0.002
MAX_PAUSE_SECONDS: Final = 1.0
WEBHOOK_THREAD: Final = "imprimatur-webhook"  # the name ServingLoop gives its thread
LOOK_EVERY_SECONDS: Final = 0.0001  # between two looks at the webhook thread's CPU clock
NAP_SECONDS: Final = 0.001
MAX_DEFER_SECONDS: Final = 0.05  # per item: under constant admission load the cycle still advances


class ThreadActivity:
    """Whether a thread (the webhook's, by name) used CPU since the last call. Never busy when the
    thread does not exist or its clock cannot be read (not Linux): pacing then falls back to the share."""

    def __init__(self, name: str = WEBHOOK_THREAD) -> None:
        self._clock_id: int | None = None
        self._last = 0.0
        for thread in threading.enumerate():
            if thread.name == name and thread.ident is not None and thread is not threading.current_thread():
                with contextlib.suppress(OSError, AttributeError):
                    self._clock_id = time.pthread_getcpuclockid(thread.ident)
                    self._last = time.clock_gettime(self._clock_id)
                break

    @property
    def watching(self) -> bool:
        return self._clock_id is not None

    def __call__(self) -> bool:
        if self._clock_id is None:
            return False
        try:
            now = time.clock_gettime(self._clock_id)
        except OSError:  # the thread ended
            self._clock_id = None
            return False
        busy, self._last = now != self._last, now
        return busy


@dataclass(frozen=True, slots=True)
class PaceLimits:
    """``share``: the most of the wall time the loop's own work may fill, in (0, 1];
    ``slice_seconds``: the longest stretch between two pauses (checked at each tick)."""

    share: float = DEFAULT_SHARE
    slice_seconds: float = DEFAULT_SLICE_SECONDS

    def __post_init__(self) -> None:
        if not 0.0 < self.share <= 1.0:
            raise ValueError(f"share {self.share} is not in (0, 1]")
        if not 0.0 < self.slice_seconds <= 1.0:
            raise ValueError(f"slice_seconds {self.slice_seconds} is not in (0, 1]")

    def pause_after(self, used: float) -> float:
        """The pause that keeps a slice of ``used`` seconds within the share (bounded)."""
        return min(MAX_PAUSE_SECONDS, used * (1.0 - self.share) / self.share)


@dataclass(slots=True)
class PaceStats:
    """What one cycle's pacing did (for logs, the benchmark and tests)."""

    slices: int = 0
    deferrals: int = 0  # times the cycle stepped aside for admission
    deferred_seconds: float = 0.0
    busy_seconds: float = 0.0  # in slices
    paused_seconds: float = 0.0
    longest_slice: float = 0.0  # the longest stretch between two ticks (wall: waits for the lock included)


class Pacer:
    """One per cycle: :meth:`tick` between items, :meth:`away` around waits on other systems."""

    def __init__(
        self,
        limits: PaceLimits | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self.limits = limits or PaceLimits()
        self._clock = clock
        self._sleep = sleep
        self._busy = busy
        self._start = clock()
        self._looked = self._start
        self._owed = 0.0  # pause owed to keep within the share (naps and waits pay it too)
        self.stats = PaceStats()

    def _close_slice(self) -> None:
        """End the running slice: count it, and owe the pause that keeps it within the share."""
        used = max(0.0, self._clock() - self._start)
        self.stats.slices += 1
        self.stats.busy_seconds += used
        self.stats.longest_slice = max(self.stats.longest_slice, used)
        self._owed = min(MAX_PAUSE_SECONDS, self._owed + self.limits.pause_after(used))

    async def _rest(self, seconds: float) -> None:
        if seconds > 0:
            await self._sleep(seconds)
            self.stats.paused_seconds += seconds
            self._owed = max(0.0, self._owed - seconds)

    async def _defer(self) -> None:
        """Admission is running: end the slice, nap until it is quiet (bounded), then pay what the
        share still asks."""
        self._close_slice()
        self.stats.deferrals += 1
        waited = 0.0
        while waited < MAX_DEFER_SECONDS:
            await self._rest(NAP_SECONDS)
            waited += NAP_SECONDS
            if self._busy is None or not self._busy():
                break
        self.stats.deferred_seconds += waited
        await self._rest(self._owed)
        self._start = self._looked = self._clock()

    async def tick(self) -> None:
        """Between two items: step aside if admission is running; pause if this slice has run
        ``slice_seconds`` or more."""
        now = self._clock()
        if self._busy is not None and now - self._looked >= LOOK_EVERY_SECONDS:
            self._looked = now
            if self._busy():
                await self._defer()
                return
        if now - self._start < self.limits.slice_seconds:
            return
        self._close_slice()
        await self._rest(self._owed)
        self._start = self._clock()

    @asynccontextmanager
    async def away(self) -> AsyncIterator[None]:
        """Around an await on another system (the API server): the slice ends here (paused for its
        share first), and the wait itself is not counted."""
        self._close_slice()
        await self._rest(self._owed)
        began = self._clock()
        try:
            yield
        finally:
            self._start = self._clock()
            self._owed = max(0.0, self._owed - (self._start - began))  # the wait held no lock either
