"""What one decision may spend on registries: a deadline and a byte budget, and the process-wide pool.

The engine makes one :class:`Budget` per decision and passes it down every registry call. Each wait is
clipped to what is left of the deadline (:meth:`Budget.clip`), and each body chunk is charged before it
is kept (:meth:`Budget.charge`). The bytes a budget holds are also reserved in a :class:`BytePool`, a
cap on the bytes held by all in-flight fetches of the process, so that many decisions at once cannot
add up to an out-of-memory. :meth:`Budget.close` hands those bytes back to the pool; a closed budget
refuses further waits and charges, so work that the engine has abandoned stops at its next read.

Both classes are thread-safe. Exhaustion raises :class:`~controller.errors.LimitError` (LimitExceeded)
whose detail says what was being done and, for time, how long the decision actually took.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from controller.errors import LimitError, PolicyError, Reason


class BytePool:
    """A process-wide cap on the bytes held by every in-flight fetch."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise PolicyError(Reason.CONFIG_INVALID, f"byte pool capacity must be positive, not {capacity!r}")
        self._capacity = capacity
        self._in_use = 0
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def in_use(self) -> int:
        """Bytes reserved and not yet released."""
        with self._lock:
            return self._in_use

    def reserve(self, n: int) -> bool:
        """Take ``n`` bytes from the pool; False (and nothing taken) when that would pass the cap."""
        if n < 0:
            raise ValueError(f"cannot reserve {n} bytes")
        with self._lock:
            if self._in_use + n > self._capacity:
                return False
            self._in_use += n
            return True

    def release(self, n: int) -> None:
        """Give ``n`` bytes back (never below zero)."""
        if n < 0:
            raise ValueError(f"cannot release {n} bytes")
        with self._lock:
            self._in_use = max(0, self._in_use - n)


class Budget:
    """One decision's deadline (on ``clock``'s time line) and byte budget.

    ``started`` is when the decision began (by default, now): the time a deadline error reports is
    measured from it, so queueing before the first registry call counts.
    """

    def __init__(
        self,
        *,
        deadline: float,
        max_bytes: int,
        pool: BytePool | None = None,
        clock: Callable[[], float] = time.monotonic,
        started: float | None = None,
    ) -> None:
        if max_bytes < 0:
            raise PolicyError(Reason.CONFIG_INVALID, f"byte budget must be >= 0, not {max_bytes!r}")
        self._clock = clock
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.started = clock() if started is None else started
        self._pool = pool
        self._spent = 0
        self._held = 0  # bytes reserved in the pool and not yet handed back
        self._closed = False
        self._lock = threading.Lock()

    @property
    def spent(self) -> int:
        """Bytes charged so far."""
        with self._lock:
            return self._spent

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    def remaining(self) -> float:
        """Seconds left before the deadline (0.0 once it has passed)."""
        return max(0.0, self.deadline - self._clock())

    def expired(self, what: str) -> LimitError:
        """The error for a deadline that passed while ``what`` was being done (stating the time taken)."""
        taken = self._clock() - self.started
        return LimitError(f"gave up after {taken:.1f}s: the decision's deadline passed while {what}")

    def clip(self, timeout: float, what: str) -> float:
        """``min(timeout, remaining())``; a LimitError when nothing is left (or the budget is closed)."""
        if self.closed:
            raise LimitError(f"the decision was abandoned before {what}")
        left = self.deadline - self._clock()
        if left <= 0:
            raise self.expired(what)
        return min(timeout, left)

    def charge(self, n: int, what: str) -> None:
        """Count ``n`` bytes read for ``what``; a LimitError when this budget or the pool is spent."""
        if n < 0:
            raise ValueError(f"cannot charge {n} bytes")
        with self._lock:
            if self._closed:
                raise LimitError(f"{what}: the decision was abandoned")
            if self._spent + n > self.max_bytes:
                raise LimitError(
                    f"{what}: over the decision's {self.max_bytes}-byte budget "
                    f"({self._spent} bytes already read)"
                )
            if self._pool is not None:
                if not self._pool.reserve(n):
                    raise LimitError(
                        f"{what}: the controller's {self._pool.capacity}-byte pool for in-flight "
                        "registry reads is full"
                    )
                self._held += n
            self._spent += n

    def close(self) -> None:
        """Hand this budget's bytes back to the pool and refuse further charges. Idempotent."""
        with self._lock:
            self._closed = True
            held, self._held = self._held, 0
        if self._pool is not None and held:
            self._pool.release(held)

    def __enter__(self) -> Budget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
