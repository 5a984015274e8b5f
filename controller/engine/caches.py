"""The engine's caches: bounded, thread-safe LRUs whose entries each carry their own expiry.

Three of them, each keyed by exactly what its value depends on:

* **evidence** (what verification made of an image's signatures): the digest, the repository the
  signatures were read from, the trust root (by name and identity: a changed root drops only its own
  entries) and the tlog setting. Never the policy set: a policy edit re-evaluates, it does not refetch.
* **tags** (which digest a tag pointed to): registry, repository and tag, for a bounded staleness
  (``Settings.tag_ttl_seconds``; 0 turns it off).
* **verdicts** (the compiled outcome for one image reference in one namespace): the reference as
  written, the namespace, and the generations of everything that could change the answer (cluster
  policies, that namespace's policies and labels, trust roots). A hit is answered on the event loop.

Beside them, :class:`EvaluationMemo` keeps what one compiled policy made of one cached evidence for one
image (CEL conditions included), so a verdict missed for another reason (the same image in another
namespace, a label change) does not evaluate it again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """An LRU of at most ``entries`` items, each valid until its own monotonic expiry time."""

    def __init__(self, entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries = max(0, entries)
        self._clock = clock
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value, or None when absent or expired (an expired entry is dropped)."""
        hit = self.get_with_expiry(key)
        return None if hit is None else hit[0]

    def get_with_expiry(self, key: K) -> tuple[V, float] | None:
        """``(value, expires)``, or None when absent or expired."""
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            expires, value = hit
            if self._clock() >= expires:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value, expires

    def put(self, key: K, value: V, *, expires: float) -> None:
        """Keep ``value`` until the monotonic time ``expires``; past the bound the oldest go first."""
        if self._entries == 0 or expires <= self._clock():
            return
        with self._lock:
            self._data[key] = (expires, value)
            self._data.move_to_end(key)
            while len(self._data) > self._entries:
                self._data.popitem(last=False)

    def discard_where(self, predicate: Callable[[K], bool]) -> int:
        """Drop every entry whose key satisfies ``predicate``; how many were dropped."""
        with self._lock:
            doomed = [key for key in self._data if predicate(key)]
            for key in doomed:
                del self._data[key]
        return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class EvaluationMemo(Generic[V]):
    """Results of a pure evaluation of immutable objects (a compiled policy over cached evidence, for
    one image), kept by the objects' identities. Each entry holds its objects, so no id is reused while
    it lives; a policy edit or fresh evidence are new objects, hence new entries. Bounded, LRU."""

    def __init__(self, entries: int) -> None:
        self._entries = max(0, entries)
        self._data: OrderedDict[tuple[int, int, str], tuple[object, object, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, policy: object, evidence: object, image: str) -> V | None:
        with self._lock:
            hit = self._data.get((id(policy), id(evidence), image))
            if hit is None or hit[0] is not policy or hit[1] is not evidence:
                return None
            self._data.move_to_end((id(policy), id(evidence), image))
            return hit[2]

    def put(self, policy: object, evidence: object, image: str, value: V) -> None:
        if self._entries == 0:
            return
        with self._lock:
            key = (id(policy), id(evidence), image)
            self._data[key] = (policy, evidence, value)
            self._data.move_to_end(key)
            while len(self._data) > self._entries:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
