"""The in-process cache that keeps verified API keys for a second."""

from __future__ import annotations

from payments.cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_exactly_its_time() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(1.0, 10, clock)
    cache.put("a", 1)
    clock.now += 0.999
    assert cache.get("a") == 1
    clock.now += 0.001
    assert cache.get("a") is None
    assert cache.get("never") is None


def test_a_full_cache_starts_again_empty_and_a_zero_time_keeps_nothing() -> None:
    cache: TtlCache[int, int] = TtlCache(1.0, 3, Clock())
    for n in range(3):
        cache.put(n, n)
    cache.put(3, 3)
    assert [cache.get(n) for n in range(4)] == [None, None, None, 3]
    off: TtlCache[int, int] = TtlCache(0.0, 3, Clock())
    off.put(1, 1)
    assert off.get(1) is None


def test_forget_drops_the_matching_values_only() -> None:
    cache: TtlCache[str, str] = TtlCache(1.0, 10, Clock())
    cache.put("x", "key_1")
    cache.put("y", "key_2")
    cache.forget(lambda value: value == "key_1")
    assert (cache.get("x"), cache.get("y")) == (None, "key_2")
