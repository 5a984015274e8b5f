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
* **Share.** Each pause lasts ``slice * (1 - share) / share``: the cycle's own stretches fill at most
  ``share`` of the wall time (5% by default), whatever ``--gap`` or the period asks. While paused, the
  loop's thread sleeps in ``epoll`` and holds no lock. A cycle that needs 50 ms of CPU takes about 1 s.
* **Away.** Waiting on the API server (:meth:`Pacer.away`) is not a slice: it holds no lock.

Pure bookkeeping plus ``asyncio.sleep``; the clock and the sleep are injected for tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

DEFAULT_SHARE: Final = 0.05
DEFAULT_SLICE_SECONDS: Final = 0.002
MAX_PAUSE_SECONDS: Final = 1.0


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
    busy_seconds: float = 0.0  # in slices
    paused_seconds: float = 0.0
    longest_slice: float = 0.0  # the longest stretch measured at a tick (wall)


class Pacer:
    """One per cycle: :meth:`tick` between items, :meth:`away` around waits on other systems."""

    def __init__(
        self,
        limits: PaceLimits | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limits = limits or PaceLimits()
        self._clock = clock
        self._sleep = sleep
        self._start = clock()
        self.stats = PaceStats()

    def _close_slice(self) -> float:
        used = max(0.0, self._clock() - self._start)
        self.stats.slices += 1
        self.stats.busy_seconds += used
        self.stats.longest_slice = max(self.stats.longest_slice, used)
        return used

    async def tick(self) -> None:
        """Between two items: pause if this slice has run ``slice_seconds`` or more."""
        if self._clock() - self._start < self.limits.slice_seconds:
            return
        pause = self.limits.pause_after(self._close_slice())
        await self._sleep(pause)
        self.stats.paused_seconds += pause
        self._start = self._clock()

    @asynccontextmanager
    async def away(self) -> AsyncIterator[None]:
        """Around an await on another system (the API server): the slice ends here (paused for its
        share first), and the wait itself is not counted."""
        pause = self.limits.pause_after(self._close_slice())
        await self._sleep(pause)
        self.stats.paused_seconds += pause
        try:
            yield
        finally:
            self._start = self._clock()
