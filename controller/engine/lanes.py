"""Where the engine's slow work runs: bulkheads, single flight and deadlines, in one place.

Registry reads block (``requests``), so they run in worker threads. Which thread work gets, and
whether it waits, is decided here, on the event loop, before a thread is taken:

* **Bulkheads.** A registry call holds one slot of its **tenant** (the namespace under review), one of
  its **registry host**, and one of the process. A tarpit host, or a namespace that names many of
  them, fills only its own slots; other hosts and other namespaces keep theirs. A slot is returned
  when the worker thread really finishes, not when its caller gives up, so the count is honest.
* **Single flight.** Concurrent requests for the same work (the same tag, the same signatures, the
  same verification) share one run: 50 reviews of one cold image make one set of registry reads.
* **Deadlines.** Waiting for a slot and for the worker are both clipped to the caller's deadline;
  past it the caller gets :class:`LimitError` saying how long it waited, and moves on. The worker
  itself stops at the deadline too, because every registry wait is clipped to the same budget.

Cached answers never come here: the engine answers them on the event loop without a worker.
The primitives bind to the running event loop; a new loop (the CLI's ``asyncio.run`` per command)
gets fresh ones, while the caches above them are shared.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from controller.errors import LimitError

T = TypeVar("T")

MAX_TRACKED_KEYS = 4096
"""Distinct hosts / tenants whose slot counters are kept; idle counters are dropped beyond it."""


@dataclass(frozen=True, slots=True)
class LaneLimits:
    """How much blocking work may run at once: per registry host, per tenant, and in all."""

    per_host: int = 8
    per_tenant: int = 8
    total: int = 64
    cpu: int = 4  # verification (pure CPU) in worker threads at once


class _Slots:
    """A counting limit whose waiters queue in order (FIFO) on one event loop."""

    __slots__ = ("_capacity", "_loop", "_used", "_waiters")

    def __init__(self, capacity: int, loop: asyncio.AbstractEventLoop) -> None:
        self._capacity = capacity
        self._loop = loop
        self._used = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def used(self) -> int:
        return self._used

    @property
    def idle(self) -> bool:
        return self._used == 0 and not self._waiters

    def try_acquire(self) -> bool:
        if self._used < self._capacity and not self._waiters:
            self._used += 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as we gave up: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter: _used is unchanged
                return
        self._used = max(0, self._used - 1)


class _LoopState:
    """The loop-bound part of :class:`Lanes`: slot counters and flights in progress."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: LaneLimits) -> None:
        self.loop = loop
        self.limits = limits
        self.total = _Slots(limits.total, loop)
        self.cpu = _Slots(limits.cpu, loop)
        self.hosts: dict[str, _Slots] = {}
        self.tenants: dict[str, _Slots] = {}
        self.flights: dict[Hashable, asyncio.Future[Any]] = {}
        self.waiters: dict[Hashable, int] = {}  # callers still waiting on each flight

    def slots(self, table: dict[str, _Slots], key: str, capacity: int) -> _Slots:
        found = table.get(key)
        if found is None:
            if len(table) >= MAX_TRACKED_KEYS:
                for idle in [k for k, v in table.items() if v.idle]:
                    del table[idle]
            found = table[key] = _Slots(capacity, self.loop)
        return found


class Lanes:
    """Runs blocking work behind bulkheads, once per key, within deadlines. Thread-safe to share."""

    def __init__(
        self, limits: LaneLimits | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or LaneLimits()
        self._clock = clock
        self._pool = ThreadPoolExecutor(
            max_workers=self.limits.total + self.limits.cpu, thread_name_prefix="imprimatur-work"
        )
        self._state: _LoopState | None = None
        self._state_lock = threading.Lock()

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._state
        if state is None or state.loop is not loop:
            with self._state_lock:
                state = self._state
                if state is None or state.loop is not loop:
                    state = self._state = _LoopState(loop, self.limits)
        return state

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- what readiness and metrics read

    def in_use(self) -> dict[str, int]:
        """Slots held now: ``total``, ``cpu``, and the busiest host and tenant."""
        state = self._state
        if state is None:
            return {"total": 0, "cpu": 0, "busiest_host": 0, "busiest_tenant": 0, "flights": 0}
        return {
            "total": state.total.used,
            "cpu": state.cpu.used,
            "busiest_host": max((s.used for s in state.hosts.values()), default=0),
            "busiest_tenant": max((s.used for s in state.tenants.values()), default=0),
            "flights": len(state.flights),
        }

    # --- running work

    async def registry(self, fn: Callable[[], T], *, host: str, tenant: str, deadline: float, what: str) -> T:
        """Run the blocking ``fn`` holding a slot of ``tenant``, of ``host`` and of the process."""
        state = self._loop_state()
        chain = [
            (state.slots(state.tenants, tenant, self.limits.per_tenant), f"namespace {tenant}"),
            (state.slots(state.hosts, host, self.limits.per_host), f"registry {host}"),
            (state.total, "the controller"),
        ]
        return await self._run(fn, chain, deadline=deadline, what=what)

    async def cpu(self, fn: Callable[[], T], *, deadline: float, what: str) -> T:
        """Run the blocking, CPU-bound ``fn`` (verification) holding a CPU slot."""
        state = self._loop_state()
        return await self._run(fn, [(state.cpu, "verification")], deadline=deadline, what=what)

    async def _run(
        self, fn: Callable[[], T], chain: list[tuple[_Slots, str]], *, deadline: float, what: str
    ) -> T:
        started = self._clock()
        held: list[_Slots] = []
        try:
            for slots, owner in chain:
                remaining = deadline - self._clock()
                if remaining <= 0 or not slots.try_acquire():
                    try:
                        async with asyncio.timeout(max(0.0, remaining)):
                            await slots.acquire()
                    except TimeoutError:
                        raise LimitError(
                            f"gave up after {self._clock() - started:.1f}s waiting for a free slot of "
                            f"{owner} ({what})"
                        ) from None
                held.append(slots)
        except BaseException:
            for slots in held:
                slots.release()
            raise
        try:
            future = self._pool.submit(fn)
        except RuntimeError as e:  # the pool was shut down
            for slots in held:
                slots.release()
            raise LimitError(f"the controller is shutting down ({what})") from e
        wrapped = asyncio.wrap_future(future)

        def finished(done: asyncio.Future[T]) -> None:
            # The worker is done (this runs on the loop once it is): only now are its slots free.
            # Hung on the wrapped future, not the thread's, so a hop wakes the loop once, not twice.
            for slots in held:
                slots.release()
            if not done.cancelled():
                done.exception()  # retrieved: a worker that ends after its caller gave up logs nothing

        wrapped.add_done_callback(finished)
        # asyncio.wait never cancels what it waits for: a caller giving up leaves the worker be.
        done, _ = await asyncio.wait((wrapped,), timeout=max(0.0, deadline - self._clock()))
        if not done:
            raise LimitError(f"gave up after {self._clock() - started:.1f}s ({what})")
        return wrapped.result()

    async def once(self, key: Hashable, work: Callable[[], Awaitable[T]], *, deadline: float, what: str) -> T:
        """The result of ``work()``, run once for all concurrent callers with the same ``key``.

        The run is a task of its own: a caller that gives up at its deadline does not cancel it for
        the others. Its exception, if any, reaches every caller.
        """
        state = self._loop_state()
        flight = state.flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(work())
            state.flights[key] = flight

            def landed(done: asyncio.Future[Any], key: Hashable = key) -> None:
                if state.flights.get(key) is done:
                    del state.flights[key]
                    state.waiters.pop(key, None)
                if not done.cancelled():
                    done.exception()  # retrieved: a flight nobody waits for any more logs nothing

            flight.add_done_callback(landed)
        state.waiters[key] = state.waiters.get(key, 0) + 1
        started = self._clock()
        remaining = deadline - started
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                result: T = await asyncio.shield(flight)
                return result
        except TimeoutError:
            raise LimitError(f"gave up after {self._clock() - started:.1f}s ({what})") from None
        finally:
            left = state.waiters.get(key, 0) - 1
            if state.flights.get(key) is flight:
                state.waiters[key] = left
                if left <= 0 and not flight.done():
                    # Nobody waits any more: stop it (queued work never starts, running work's
                    # budget is closed so its thread stops at its next read).
                    flight.cancel()
