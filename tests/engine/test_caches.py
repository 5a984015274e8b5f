"""The engine's TTL LRU: expiry per entry, the bound, and targeted dropping; the evaluation memo."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controller.engine.caches import EvaluationMemo, TTLCache


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_each_at_their_own_time() -> None:
    clock = _Clock()
    cache: TTLCache[str, int] = TTLCache(10, clock)
    cache.put("short", 1, expires=101.0)
    cache.put("long", 2, expires=200.0)
    assert cache.get("short") == 1
    clock.now = 101.0
    assert cache.get("short") is None
    assert cache.get_with_expiry("long") == (2, 200.0)
    cache.put("past", 3, expires=50.0)  # already expired: not kept
    assert cache.get("past") is None


def test_the_least_recently_used_go_first() -> None:
    cache: TTLCache[int, int] = TTLCache(2, _Clock())
    cache.put(1, 1, expires=1e9)
    cache.put(2, 2, expires=1e9)
    assert cache.get(1) == 1  # 1 is now the most recent
    cache.put(3, 3, expires=1e9)
    assert cache.get(2) is None
    assert cache.get(1) == 1
    assert cache.get(3) == 3


def test_discard_where_drops_only_matching_keys() -> None:
    cache: TTLCache[tuple[str, str], int] = TTLCache(10, _Clock())
    cache.put(("a", "root1"), 1, expires=1e9)
    cache.put(("b", "root2"), 2, expires=1e9)
    assert cache.discard_where(lambda key: key[1] == "root2") == 1
    assert cache.get(("a", "root1")) == 1
    assert cache.get(("b", "root2")) is None


def test_a_zero_sized_cache_keeps_nothing() -> None:
    cache: TTLCache[str, int] = TTLCache(0, _Clock())
    cache.put("x", 1, expires=1e9)
    assert cache.get("x") is None
    assert len(cache) == 0


@given(st.lists(st.tuples(st.integers(0, 20), st.floats(0, 300)), max_size=200), st.integers(1, 8))
def test_never_holds_more_than_its_bound_or_an_expired_entry(
    ops: list[tuple[int, float]], bound: int
) -> None:
    clock = _Clock()
    cache: TTLCache[int, float] = TTLCache(bound, clock)
    for key, ttl in ops:
        cache.put(key, ttl, expires=clock.now + ttl)
        clock.now += 1
        assert len(cache) <= bound
    for key, _ in ops:
        hit = cache.get_with_expiry(key)
        assert hit is None or hit[1] > clock.now


def test_evaluation_memo_is_keyed_by_the_very_objects() -> None:
    memo: EvaluationMemo[str] = EvaluationMemo(2)
    policy, evidence = object(), object()
    memo.put(policy, evidence, "img", "result")
    assert memo.get(policy, evidence, "img") == "result"
    assert memo.get(policy, evidence, "other image") is None
    assert memo.get(object(), evidence, "img") is None  # an edited policy is a new object
    assert memo.get(policy, object(), "img") is None  # fresh evidence is a new object
    memo.put(object(), evidence, "a", "x")
    memo.put(object(), evidence, "b", "y")  # past the bound: the oldest goes
    assert memo.get(policy, evidence, "img") is None
    off: EvaluationMemo[str] = EvaluationMemo(0)
    off.put(policy, evidence, "img", "result")
    assert off.get(policy, evidence, "img") is None
